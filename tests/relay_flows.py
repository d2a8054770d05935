"""The relay system with counting user code, shared by tests/test_durable.py and
tests/test_flows_cli.py (a real generated tree, the real SQLite flow store).

The plan is tests/data/http/relay.csv (front -> middle -> back -> middle -> front, `#token` secret).
Its step functions append their name and `step_key()` to the file `$COUNTS` (the side effect
counted) and obey marker files next to it: `<COUNTS>.boom` makes back raise, `<COUNTS>.crash` makes
back's process exit right after its effect, `<COUNTS>.slow` makes back sleep a few seconds,
`<COUNTS>.slowmiddle` makes middle's first step sleep.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import SL2S, base_env, read_events, sl2s, wait_healthy  # noqa: E402

from sl2s.runtime.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RELAY = ROOT / "tests" / "data" / "http" / "relay.csv"
SECRET = "tok-Zq8sW3-never-stored"
STEPS = [
    "front_got_job_and_token",
    "middle_passes_job",
    "back_works_on_job",
    "middle_saw_back_finish_job",
    "front_done_with_job",
]

COUNT = """
import os
import time

from sl2s.runtime import step, step_key


def count(name):
    with open(os.environ["COUNTS"], "a") as handle:
        handle.write(name + " " + step_key() + "\\n")


def marker(kind):
    return os.path.exists(os.environ["COUNTS"] + "." + kind)
"""

USER_CODE = {
    "front": COUNT
    + """

@step("relay", "Front got :job and #token")
def front_got_job_and_token(job, token):
    count("front_got_job_and_token")
    return {"ticket": "t-" + job}


@step("relay", "Front done with :job")
def front_done_with_job(job, token, done_by):
    count("front_done_with_job")
    return {"finished": True}
""",
    "middle": COUNT
    + """

@step("relay", "Middle passes :job")
def middle_passes_job(job):
    count("middle_passes_job")
    if marker("slowmiddle"):
        time.sleep(3)
    return {"passed": 1}


@step("relay", "Middle saw back finish :job")
def middle_saw_back_finish_job(job, passed):
    count("middle_saw_back_finish_job")
    return {"passed": passed + 1}
""",
    "back": COUNT
    + """

@step("relay", "Back works on :job")
def back_works_on_job(job):
    count("back_works_on_job")
    if marker("crash"):
        os._exit(9)  # after the effect, before the checkpoint
    if marker("slow"):
        time.sleep(4)
    if marker("boom"):
        raise ValueError("back is broken today")
    return {"done_by": "back"}
""",
}


@pytest.fixture
def relay(tmp_path):
    """A generated relay system with the counting user code; returns (tree, env, counts file)."""
    tree = tmp_path / "svc_durable"
    done = sl2s("generate", str(RELAY), "--out", str(tree))
    assert done.returncode == 0, done.stderr
    for machine, code in USER_CODE.items():
        (tree / machine / "relay.py").write_text(code, encoding="utf-8")
    counts = tmp_path / "counts"
    counts.write_text("")
    env = base_env(SL2S_LOG_DIR=str(tmp_path / "logs"), COUNTS=str(counts))
    return tree, env, counts


def counted(counts: Path) -> Counter:
    return Counter(line.split()[0] for line in counts.read_text().splitlines())


def store_of(env: dict):
    return open_store(f"sqlite:///{env['SL2S_LOG_DIR'].lstrip('/')}/flows.sqlite3")


def the_flow(env: dict):
    store = store_of(env)
    try:
        (rec,) = store.flows()
        return (
            rec,
            store.steps_of(rec.correlation_id),
            store.hops_of(rec.correlation_id),
        )
    finally:
        store.close()


def completions(env: dict) -> Counter:
    """(correlation id, step) -> number of completion (INFO sl2s.step) events in the logs."""
    return Counter(
        (e["attributes"]["sl2s.correlation_id"], e["attributes"]["sl2s.step"])
        for e in read_events(env["SL2S_LOG_DIR"])
        if e["event_name"] == "sl2s.step" and e["severity_text"] == "INFO"
    )


def assert_logs_agree_with_store(env: dict, cid: str, steps: dict) -> None:
    """Every step recorded in the store has exactly one completion event, the one whose id the
    store recorded; no step completed in the logs is missing from the store."""
    events = [
        e
        for e in read_events(env["SL2S_LOG_DIR"])
        if e["event_name"] == "sl2s.step"
        and e["severity_text"] == "INFO"
        and e["attributes"]["sl2s.correlation_id"] == cid
    ]
    by_step = Counter(e["attributes"]["sl2s.step"] for e in events)
    assert by_step == Counter(list(steps)), (by_step, sorted(steps))
    assert {
        e["attributes"]["sl2s.step"]: e["attributes"]["sl2s.event_id"] for e in events
    } == {s: r.event_id for s, r in steps.items()}


def assert_no_secret_in_store(env: dict) -> None:
    logs = Path(env["SL2S_LOG_DIR"])
    files = [p for p in logs.glob("flows.sqlite3*") if p.is_file()]
    assert files and any(p.name == "flows.sqlite3" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path.name


# -- servers on sockets the test keeps (a restarted server takes the same port) ---------------------


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_on(
    tree: Path, machine: str, sock: socket.socket, env: dict
) -> subprocess.Popen:
    """`sl2s serve` on a socket this test keeps open: a restarted server takes the same port, and
    connections made while no process serves it wait in its backlog."""
    proc = subprocess.Popen(
        [*SL2S, "serve", str(tree), machine, "--fd", str(sock.fileno())],
        env=env,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_healthy(f"http://127.0.0.1:{sock.getsockname()[1]}", proc)
    return proc


def wait_for(predicate, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
