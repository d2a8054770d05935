"""`sl2s up` supervises its machines (issue 9), with real processes: generated sample trees,
`sl2s up` in a subprocess, machines killed with SIGKILL, flows run over HTTP (`sl2s run
--remote`, SL2S_TRANSPORT=http) against the restarted machines. The schedule itself is unit-tested
in tests/test_up_core.py. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import (  # noqa: E402
    alive,
    base_env,
    children,
    get,
    sl2s,
    start_up,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = "test-up-key-" + "0123456789abcdef" * 2
SHOP_SERVED = ["inventory", "mailer", "payments", "web"]
CHECKOUT = [
    "customer_id=c1", "cart_id=k1", "item_count=2", "reservation_id=r1", "amount_cents=900",
    "card_number=4111111111111111", "payment_id=p1", "order_id=o1", "email=a@example.com",
]  # fmt: skip
WAIT = 30.0  # seconds: the longest any single wait below may take


def generate(plan: str, out: Path) -> Path:
    done = sl2s("generate", str(ROOT / "sample_plans" / plan), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def machine_pids(up_pid: int) -> dict[str, int]:
    """Machine name -> pid of the live children of `sl2s up` (from their command lines:
    `python -c ... DIR MACHINE --fd N`)."""
    found = {}
    for pid in children(up_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        except FileNotFoundError:
            continue
        if alive(pid) and len(argv) >= 3 and argv[-2] == b"--fd":
            found[argv[-3].decode()] = pid
    return found


class Lines:
    """What a process writes to a pipe, read in a thread so it never blocks on a full pipe."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, seconds: float = WAIT) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.05)
        pytest.fail(f"no line with {text!r} within {seconds} s:\n" + self.text())

    def text(self) -> str:
        return "\n".join(self.lines)


def wait_new_pid(up: subprocess.Popen, machine: str, old: int) -> int:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert up.poll() is None, f"sl2s up exited ({up.returncode})"
        pid = machine_pids(up.pid).get(machine)
        if pid not in (None, old):
            return pid
        time.sleep(0.05)
    pytest.fail(f"no new process for '{machine}' within {WAIT} s")


def kill_and_see_the_restart(
    up: subprocess.Popen, said: Lines, machine: str, attempt: int
) -> int:
    old = machine_pids(up.pid)[machine]
    os.kill(old, signal.SIGKILL)
    line = said.wait_for(f"machine '{machine}' (pid {old}) stopped")
    assert "killed by SIGKILL" in line and f"; restart {attempt} in " in line, line
    new = wait_new_pid(up, machine, old)
    said.wait_for(f"machine '{machine}' is back (pid {new}) on ")
    return new


def run_remote(tree: Path, flow: str, fields: list[str], env: dict):
    return sl2s("run", str(tree), flow, *fields, "--remote", env=env, timeout=90)


def test_up_restarts_a_killed_machine_on_its_address_and_keeps_the_others(tmp_path):
    tree = generate("shop.csv", tmp_path / "shop")
    env = base_env(SL2S_LOG_DIR=str(tmp_path / "logs"), SL2S_HOP_KEY=KEY)
    up, urls = start_up(tree, env)
    said = Lines(up.stderr)
    seen: set[int] = set()
    try:
        before = machine_pids(up.pid)
        assert sorted(before) == sorted(urls) == SHOP_SERVED
        seen.update(before.values())

        new = kill_and_see_the_restart(up, said, "payments", attempt=1)
        seen.add(new)
        after = machine_pids(up.pid)
        assert after == {**before, "payments": new}  # the others kept their processes
        assert get(urls["payments"], "/sl2s/v1/health")[0] == 200  # the same address
        done = run_remote(tree, "checkout", CHECKOUT, env)
        assert done.returncode == 0, done.stderr

        # a flow started while a machine is down: its hop waits for the restart, then succeeds
        old = after["inventory"]
        os.kill(old, signal.SIGKILL)
        done = run_remote(tree, "checkout", CHECKOUT, env)
        assert done.returncode == 0, done.stderr
        said.wait_for(f"machine 'inventory' (pid {old}) stopped: killed by SIGKILL")
        seen.add(wait_new_pid(up, "inventory", old))

        # a second crash of the same machine soon after: the next step of the back-off
        seen.add(kill_and_see_the_restart(up, said, "payments", attempt=2))
        assert sorted(machine_pids(up.pid)) == SHOP_SERVED
        seen.update(machine_pids(up.pid).values())
    finally:
        code = stop(up)
    said._thread.join(10)
    assert code == 0, said.text()
    assert said.lines[-1] == "all machines stopped"
    assert not [pid for pid in seen if alive(pid)], "sl2s up left machines behind"
    assert not (tree / ".sl2s" / "up.toml").exists()


GIVE_UP = """
import sys
from sl2s.serve.supervise import RestartPolicy
from sl2s.serve.up import run_up
policy = RestartPolicy(base=0.1, cap=0.2, give_up_after=3)
say = lambda line: print(line, flush=True)
warn = lambda line: print(line, file=sys.stderr, flush=True)
sys.exit(run_up(sys.argv[1], say=say, warn=warn, policy=policy))
"""

CRASH_AT_IMPORT = """
import os as _os

if _os.path.exists(_os.path.join(_os.path.dirname(__file__), "..", "CRASH")):
    _os._exit(3)  # this machine's code is broken now: it exits as it starts
"""


def test_up_gives_up_on_a_machine_that_keeps_crashing_and_stops_all(tmp_path):
    tree = generate("login.csv", tmp_path / "login")
    user = tree / "server" / "login.py"
    user.write_text(
        CRASH_AT_IMPORT + user.read_text(encoding="utf-8"), encoding="utf-8"
    )
    env = base_env(SL2S_LOG_DIR=str(tmp_path / "logs"), SL2S_HOP_KEY=KEY)
    up = subprocess.Popen(
        [sys.executable, "-c", GIVE_UP, str(tree)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said = Lines(up.stderr)
    try:
        deadline = time.monotonic() + WAIT
        while "server" not in machine_pids(up.pid):
            assert up.poll() is None and time.monotonic() < deadline, said.text()
            time.sleep(0.05)
        first = machine_pids(up.pid)["server"]
        assert up.stdout.readline().startswith("server ")  # the banner: it started
        (tree / "CRASH").write_text("", encoding="utf-8")
        os.kill(first, signal.SIGKILL)
        code = up.wait(WAIT)
    finally:
        if up.poll() is None:
            stop(up)
    said._thread.join(10)
    # up's own lines (the machines' processes write to the same stream)
    lines = [x for x in said.lines if x.startswith("machine '") or x.startswith("all ")]
    assert code == 1, said.text()
    assert lines[0].startswith(
        f"machine 'server' (pid {first}) stopped: killed by SIGKILL"
    )
    assert "restart 1 in 0.1 s" in lines[0]
    assert "stopped: exit status 3 after " in lines[1], lines
    assert lines[1].endswith("; restart 2 in 0.2 s"), lines
    assert "exit status 3; 3 crashes in a row" in lines[2] and lines[2].endswith(
        "giving up, stopping all"
    ), lines
    assert lines[3:] == ["all machines stopped"]
    assert not alive(first) and not (tree / ".sl2s" / "up.toml").exists()


SLOW_STEP = """

import os as _os
import time as _time


@step("login", "Testing password for :username")
def testing_password_for_username(username):
    marker = _os.path.join(_os.path.dirname(__file__), "..", "IN-STEP")
    with open(marker, "a", encoding="utf-8") as handle:
        handle.write(f"{_os.getpid()}\\n")
    _time.sleep(3)
"""


def test_a_flow_whose_machine_is_killed_mid_step_finishes_after_the_restart(tmp_path):
    tree = generate("login.csv", tmp_path / "login")
    user = tree / "server" / "login.py"
    text = user.read_text(encoding="utf-8")
    start = text.index('@step("login", "Testing password for :username")')
    end = text.index("@step(", start + 1)
    user.write_text(text[:start] + text[end:] + SLOW_STEP, encoding="utf-8")
    logs = tmp_path / "logs"
    env = base_env(SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY)
    up, urls = start_up(tree, env)
    said = Lines(up.stderr)
    try:
        first = machine_pids(up.pid)["server"]
        run = subprocess.Popen(
            [sys.executable, "-c", "from sl2s.cli import main; main()", "run",
             str(tree), "login", "username=ann", "password=hunter2", "--remote"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        marker = tree / "IN-STEP"
        deadline = time.monotonic() + WAIT
        while not marker.exists():
            assert run.poll() is None and time.monotonic() < deadline, run.stderr
            time.sleep(0.02)
        os.kill(first, signal.SIGKILL)  # inside the 3-second step
        out, err = run.communicate(timeout=90)
        said.wait_for(f"machine 'server' (pid {first}) stopped: killed by SIGKILL")
    finally:
        code = stop(up)
    assert run.returncode == 0, err
    assert "flow 'login' done" in out
    ran = marker.read_text().split()
    assert ran[0] == str(first) and len(ran) == 2 and ran[1] != ran[0]  # again, once
    assert code == 0
