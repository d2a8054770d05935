"""Generated systems over HTTP, end to end: `sl2s generate`, `sl2s up`, `sl2s serve`,
`sl2s run --remote`, each machine its own process on 127.0.0.1; events read back from the logs.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from sl2s.template import parse

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import (  # noqa: E402
    alive,
    base_env,
    causal_chain,
    children,
    read_events,
    serve_process,
    sl2s,
    start_up,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_plans").glob("*.csv"))
RELAY = ROOT / "tests" / "data" / "http" / "relay.csv"
KEY = "test-hop-key-" + "0123456789abcdef" * 2

BACK_STEPS = '''"""Steps of flow 'relay' that run on machine 'back' (test behaviour)."""

import time

from sl2s.runtime import step


@step("relay", "Back works on :job")
def back_works_on_job(job):
    if job.startswith("slow-"):
        time.sleep(float(job[len("slow-"):]))
    if job == "boom":
        raise ValueError(f"back cannot do {job}")
    return {"done_by": "back"}
'''


def generate(plan: Path, out: Path) -> Path:
    result = sl2s("generate", str(plan), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def flows_and_fields(tree: Path) -> dict[str, list[str]]:
    lock = orjson.loads((tree / "sl2s.lock.json").read_bytes())
    found: dict[str, list[str]] = {}
    for flow, steps in lock["steps"].items():
        names: dict[str, None] = {}
        for entry in steps.values():
            for part in parse(entry["template"]):
                if not isinstance(part, str):
                    names.setdefault(part.name)
        found[flow] = list(names)
    return found


def step_events(log_dir: Path) -> list[dict]:
    return [e for e in read_events(log_dir) if e["event_name"] == "sl2s.step"]


def by_run(events: list[dict]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for event in events:
        runs.setdefault(event["attributes"]["sl2s.correlation_id"], []).append(event)
    return runs


def shape(chain: list[dict]) -> list[tuple]:
    return [
        (
            e["resource"]["service.name"],
            e["attributes"]["sl2s.flow"],
            e["attributes"]["sl2s.step"],
            e["attributes"].get("sl2s.plan"),
            e["body"],
            e["severity_text"],
        )
        for e in chain
    ]


@pytest.fixture(scope="module")
def relay_tree(tmp_path_factory) -> Path:
    tree = generate(RELAY, tmp_path_factory.mktemp("relay") / "svc_relay")
    (tree / "back" / "relay.py").write_text(BACK_STEPS, encoding="utf-8")
    return tree


@pytest.mark.parametrize("plan", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_flow_over_http_tells_the_same_story_as_in_process(plan, tmp_path):
    tree = generate(plan, tmp_path / f"svc_{plan.stem}")
    flows = flows_and_fields(tree)
    local_logs, http_logs = tmp_path / "local", tmp_path / "http"
    for flow, fields in flows.items():
        values = [f"{name}=value-of-{name}" for name in fields]
        done = sl2s(
            "run", str(tree), flow, *values, env=base_env(SL2S_LOG_DIR=str(local_logs))
        )
        assert done.returncode == 0, done.stderr
    up, urls = start_up(tree, base_env(SL2S_LOG_DIR=str(http_logs), SL2S_HOP_KEY=KEY))
    try:
        assert urls and all(u.startswith("http://127.0.0.1:") for u in urls.values())
        for flow, fields in flows.items():
            values = [f"{name}=value-of-{name}" for name in fields]
            env = base_env(SL2S_LOG_DIR=str(http_logs), SL2S_HOP_KEY=KEY)
            done = sl2s("run", str(tree), flow, *values, "--remote", env=env)
            assert done.returncode == 0, done.stderr
    finally:
        assert stop(up) == 0
    local, remote = by_run(step_events(local_logs)), by_run(step_events(http_logs))
    assert len(local) == len(remote) == len(flows)  # one correlation id per flow run
    local_stories = sorted(shape(causal_chain(events)) for events in local.values())
    remote_stories = sorted(shape(causal_chain(events)) for events in remote.values())
    assert remote_stories == local_stories
    for events in remote.values():
        assert (
            len({e["trace_id"] for e in events}) == 1
        )  # traceparent carried across hops
        processes = {
            e["resource"]["service.name"]: e["attributes"]["sl2s.event_id"][:16]
            for e in events
        }
        # event ids start with a per-process prefix: each machine wrote from its own process
        assert len(set(processes.values())) == len(processes) >= 2


def test_secrets_reach_only_the_machines_that_use_them(relay_tree, tmp_path):
    """`#token` is used by 'front' only: no other machine's process ever sees its value."""
    logs = tmp_path / "logs"
    up, _ = start_up(relay_tree, base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY))
    try:
        env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
        done = sl2s(
            "run",
            str(relay_tree),
            "relay",
            "job=j1",
            "token=TOPSECRET-42",
            "--remote",
            env=env,
        )
        assert done.returncode == 0, done.stderr
    finally:
        stop(up)
    assert "TOPSECRET-42" not in "".join(p.read_text() for p in logs.glob("*.jsonl"))
    assert "TOPSECRET-42" not in done.stdout


def test_run_remote_tells_the_whole_story_across_machines(relay_tree, tmp_path):
    """`sl2s run --remote` prints every machine's steps, in causal order, as in-process runs do,
    though the machines ran in other processes (their events read back from each machine).
    """
    logs = tmp_path / "logs"
    up, _ = start_up(relay_tree, base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY))
    try:
        env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
        local = sl2s(
            "run", str(relay_tree), "relay", "job=j1", "token=t0k3n-1", env=env
        )
        remote = sl2s(
            "run",
            str(relay_tree),
            "relay",
            "job=j1",
            "token=t0k3n-1",
            "--remote",
            env=env,
        )
    finally:
        stop(up)
    assert local.returncode == remote.returncode == 0, remote.stderr
    lines = remote.stdout.splitlines()
    story = lines[: next(i for i, line in enumerate(lines) if line.startswith("flow "))]
    assert [line.split(":")[0] for line in story] == [
        "front", "middle", "back", "middle", "front"
    ]  # fmt: skip
    assert story == local.stdout.splitlines()[: len(story)]
    assert "done (5 steps)" in remote.stdout and "t0k3n-1" not in remote.stdout


def test_run_metadata_travels_with_every_hop_masked(relay_tree, tmp_path):
    """`sl2s run --actor/--reason` over HTTP: every event of the run, in every machine's process,
    carries the metadata; a secret typed into it is masked before it leaves the entry.
    """
    logs = tmp_path / "logs"
    up, _ = start_up(relay_tree, base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY))
    try:
        env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
        done = sl2s(
            "run", str(relay_tree), "relay", "job=j1", "token=TOPSECRET-42", "--remote",
            "--actor", "bob", "--reason", "retry: token TOPSECRET-42 expired", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        stop(up)
    evts = read_events(logs)
    assert len({e["resource"]["service.name"] for e in evts}) >= 3
    assert {
        json.dumps(e["attributes"]["sl2s.run_meta"], sort_keys=True) for e in evts
    } == {
        json.dumps(
            {"actor": "bob", "reason": "retry: token *** expired"}, sort_keys=True
        )
    }
    assert "TOPSECRET-42" not in "".join(p.read_text() for p in logs.glob("*.jsonl"))


def test_a_failure_on_the_third_machine_reaches_the_entry_with_its_details(
    relay_tree, tmp_path
):
    logs = tmp_path / "logs"
    up, _ = start_up(relay_tree, base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY))
    try:
        env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
        done = sl2s(
            "run", str(relay_tree), "relay", "job=boom", "token=t", "--remote", env=env
        )
    finally:
        stop(up)
    assert done.returncode == 1
    (error_event,) = [e for e in read_events(logs) if e["severity_text"] == "ERROR"]
    assert error_event["resource"]["service.name"] == "back"
    assert error_event["attributes"]["exception.type"] == "ValueError"
    message = done.stderr.strip().splitlines()[-1]
    assert message.endswith(
        "relay.csv:4: step 'back_works_on_job' of flow 'relay' failed on machine 'back': "
        "ValueError: back cannot do boom (step function at svc_relay/back/relay.py:8)"
    )
    assert (
        "raise ValueError" in done.stderr
    )  # the user's traceback, from the remote machine


def test_the_remote_step_failure_is_the_runtime_exception_with_the_remote_event_id(
    relay_tree, tmp_path
):
    """In the entry's own process: `StepFailed` names machine, step, plan line, exception and the
    id of the ERROR event written by the machine where the step failed."""
    logs = tmp_path / "logs"
    env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
    back, back_url = serve_process(relay_tree, "back", env)
    middle, middle_url = serve_process(
        relay_tree, "middle", {**env, "SL2S_URL_BACK": back_url}
    )
    try:
        script = (
            "import sys; sys.path.insert(0, sys.argv[1])\n"
            "from sl2s.runtime import StepFailed\n"
            "import svc_relay.front as front\n"
            "try:\n"
            "    front.relay(job='boom', token='t')\n"
            "except StepFailed as f:\n"
            "    import orjson; print(orjson.dumps(f.to_dict()).decode())\n"
        )
        import subprocess

        env_front = {
            **env,
            "SL2S_TRANSPORT": "http",
            "SL2S_URL_MIDDLE": middle_url,
            "SL2S_URL_BACK": back_url,
        }
        done = subprocess.run(
            [sys.executable, "-c", script, str(relay_tree.parent)],
            env=env_front,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop(middle)
        stop(back)
    assert done.stdout.strip(), done.stderr
    failure = orjson.loads(done.stdout.strip().splitlines()[-1])
    back_errors = [
        e
        for e in read_events(logs)
        if e["resource"]["service.name"] == "back" and e["severity_text"] == "ERROR"
    ]
    assert failure["class"] == "StepFailed"
    assert (failure["machine"], failure["flow"], failure["step"]) == (
        "back",
        "relay",
        "back_works_on_job",
    )
    assert failure["plan"].endswith("relay.csv:4")
    assert (failure["exc_type"], failure["exc_message"]) == (
        "ValueError",
        "back cannot do boom",
    )
    assert failure["event_id"] == back_errors[0]["attributes"]["sl2s.event_id"]


def test_killing_a_machine_mid_flow_fails_the_hop_clearly_and_runs_no_step_twice(
    relay_tree, tmp_path
):
    logs = tmp_path / "logs"
    env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY, SL2S_HOP_ATTEMPTS="3")
    back, back_url = serve_process(relay_tree, "back", env)
    middle, middle_url = serve_process(
        relay_tree, "middle", {**env, "SL2S_URL_BACK": back_url}
    )
    try:
        import subprocess

        run = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from sl2s.cli import main; main()",
                "run",
                str(relay_tree),
                "relay",
                "job=slow-30",
                "token=t",
                "--remote",
            ],
            env={**env, "SL2S_URL_MIDDLE": middle_url, "SL2S_URL_BACK": back_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)  # the back machine is inside its 30 s step now
        back.kill()
        back.wait(10)
        out, err = run.communicate(timeout=60)
    finally:
        stop(middle)
        stop(back)
    assert run.returncode == 1
    assert "hop middle -> back (flow 'relay', at 'back_works_on_job')" in err
    assert "machine 'back' at " + back_url in err and "relay.csv:4" in err
    events = read_events(logs)
    (hop_failed,) = [e for e in events if e["event_name"] == "sl2s.hop_failed"]
    assert (
        hop_failed["resource"]["service.name"] == "middle"
        and hop_failed["severity_text"] == "ERROR"
    )
    assert "idempotency key" in hop_failed["body"]
    assert hop_failed["attributes"]["sl2s.plan"].endswith("relay.csv:4")
    steps = Counter(
        (e["resource"]["service.name"], e["attributes"]["sl2s.step"])
        for e in events
        if e["event_name"] == "sl2s.step"
    )
    assert steps and max(steps.values()) == 1
    assert ("back", "back_works_on_job") not in steps  # killed inside the step


def test_a_hop_that_times_out_is_retried_and_its_step_runs_once(relay_tree, tmp_path):
    logs = tmp_path / "logs"
    env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
    back, back_url = serve_process(relay_tree, "back", env)
    # middle gives each attempt 0.4 s: the 1.5 s step outlives several attempts
    middle, middle_url = serve_process(
        relay_tree,
        "middle",
        {
            **env,
            "SL2S_URL_BACK": back_url,
            "SL2S_HOP_TIMEOUT": "0.4",
            "SL2S_HOP_ATTEMPTS": "8",
        },
    )
    try:
        done = sl2s(
            "run",
            str(relay_tree),
            "relay",
            "job=slow-1.5",
            "token=t",
            "--remote",
            env={**env, "SL2S_URL_MIDDLE": middle_url, "SL2S_URL_BACK": back_url},
        )
    finally:
        stop(middle)
        stop(back)
    assert done.returncode == 0, done.stderr
    steps = Counter(e["attributes"]["sl2s.step"] for e in step_events(logs))
    assert (
        steps["back_works_on_job"] == 1
        and set(steps.values()) == {1}
        and len(steps) == 5
    )


def test_a_machine_with_no_address_is_named_with_flow_step_and_plan_line(
    relay_tree, tmp_path
):
    env = base_env(
        SL2S_LOG_DIR=str(tmp_path), SL2S_HOP_KEY=KEY, SL2S_URL_BACK="http://127.0.0.1:9"
    )
    done = sl2s(
        "run", str(relay_tree), "relay", "job=x", "token=t", "--remote", env=env
    )
    assert done.returncode == 1
    assert "hop front -> middle (flow 'relay', at 'middle_passes_job')" in done.stderr
    assert (
        "no address for machine 'middle'" in done.stderr
        and "SL2S_URL_MIDDLE" in done.stderr
    )
    assert "relay.csv:3" in done.stderr


def test_a_wrong_key_is_refused_and_explained(relay_tree, tmp_path):
    env = base_env(SL2S_LOG_DIR=str(tmp_path), SL2S_HOP_KEY=KEY)
    middle, url = serve_process(relay_tree, "middle", env)
    try:
        other = {
            **env,
            "SL2S_HOP_KEY": "another-key-" + "f" * 32,
            "SL2S_URL_MIDDLE": url,
        }
        done = sl2s(
            "run", str(relay_tree), "relay", "job=x", "token=t", "--remote", env=other
        )
    finally:
        stop(middle)
    assert done.returncode == 1
    assert "HTTP 401 bad_signature" in done.stderr and "SL2S_HOP_KEY" in done.stderr


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"]
)
def test_up_stops_every_machine_on_sigterm_and_cleans_up(relay_tree, tmp_path, sig):
    up, urls = start_up(relay_tree, base_env(SL2S_LOG_DIR=str(tmp_path)))
    kids = children(up.pid)
    assert sorted(urls) == ["back", "middle"] and len(kids) == 2
    assert (relay_tree / ".sl2s" / "up.toml").is_file() and (
        relay_tree / ".sl2s" / "hop.key"
    ).is_file()
    assert oct((relay_tree / ".sl2s" / "hop.key").stat().st_mode & 0o777) == "0o600"
    assert stop(up, sig) == 0
    assert not any(alive(pid) for pid in kids)
    assert (
        not (relay_tree / ".sl2s" / "up.toml").exists()
        and not (relay_tree / ".sl2s" / "hop.key").exists()
    )


def test_up_killed_outright_takes_its_machines_with_it(relay_tree, tmp_path):
    up, _ = start_up(relay_tree, base_env(SL2S_LOG_DIR=str(tmp_path), SL2S_HOP_KEY=KEY))
    kids = children(up.pid)
    up.kill()
    up.wait(10)
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in kids)
    (relay_tree / ".sl2s" / "up.toml").unlink(missing_ok=True)


def test_serve_refuses_a_public_address_without_a_key(relay_tree):
    done = sl2s(
        "serve",
        str(relay_tree),
        "middle",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        env=base_env(),
    )
    assert done.returncode == 1
    assert (
        "refusing to serve machine 'middle' on 0.0.0.0 without SL2S_HOP_KEY"
        in done.stderr
    )


def test_serve_warns_when_hops_are_unauthenticated(relay_tree, tmp_path):
    proc, url = serve_process(
        relay_tree, "middle", base_env(SL2S_LOG_DIR=str(tmp_path))
    )
    stop(proc)
    assert "no SL2S_HOP_KEY" in proc.stderr.read()


def test_uvicorn_serves_the_module_level_app_configured_by_environment(
    relay_tree, tmp_path
):
    import subprocess

    sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
    from harness import loopback_socket, wait_healthy

    sock = loopback_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = base_env(
        SL2S_SERVICES=str(relay_tree),
        SL2S_MACHINE="back",
        SL2S_HOP_KEY=KEY,
        SL2S_LOG_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "sl2s.runtime.transport.http.server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        done = sl2s(
            "run",
            str(relay_tree),
            "relay",
            "job=j",
            "token=t",
            "--remote",
            env={
                **env,
                "SL2S_URL_BACK": f"http://127.0.0.1:{port}",
                "SL2S_URL_MIDDLE": "http://127.0.0.1:9",
                "SL2S_DEADLINE": "2",  # a machine that is down is retried until the deadline
            },
        )
        # middle is not running: the point here is that uvicorn started the app from environment
        assert "machine 'middle'" in done.stderr
    finally:
        stop(proc)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "sl2s.runtime.transport.http.server:app",
            "--port",
            "0",
        ],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "SL2S_SERVICES" in bad.stderr + bad.stdout


# A machine that dies under `sl2s up` is restarted: tests/test_up_supervise.py.
