"""Test harness for the HTTP transport: real uvicorn servers on 127.0.0.1, in threads or processes.

Imported by tests/test_http*.py (they put this directory on sys.path).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def loopback_socket() -> socket.socket:
    """A listening TCP socket on a free 127.0.0.1 port (no race: it stays bound)."""
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # proto: asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class ThreadServer:
    """uvicorn serving `app` in a background thread; `url` is ready once the context is entered."""

    def __init__(self, app, **config) -> None:
        self.sock = loopback_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options = {
            "log_level": "warning",
            "lifespan": "off",
            "timeout_keep_alive": 5,
            **config,
        }
        cfg = uvicorn.Config(app, **options)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def raw_post(
    url: str, path: str, body: bytes, headers: dict
) -> tuple[int, dict, bytes]:
    """One POST on a fresh connection: what an attacker or a foreign client would send."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get(url: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# -- processes -------------------------------------------------------------------------------

SL2S = [sys.executable, "-c", "from sl2s.cli import main; main()"]


def sl2s(
    *args: str, env: dict | None = None, timeout: float = 60, cwd=None
) -> subprocess.CompletedProcess:
    """Run the sl2s CLI in a subprocess (bounded in time)."""
    return subprocess.run(
        [*SL2S, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def wait_healthy(
    url: str, proc: subprocess.Popen | None = None, seconds: float = 20
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if get(url, "/sl2s/v1/health")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


def serve_process(directory, machine: str, env: dict) -> tuple[subprocess.Popen, str]:
    """`sl2s serve DIR MACHINE` in a subprocess on a socket bound here (free port, no race)."""
    sock = loopback_socket()
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [*SL2S, "serve", str(directory), machine, "--fd", str(sock.fileno())],
        env=env,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sock.close()
    wait_healthy(url, proc)
    return proc, url


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def start_up(directory, env: dict) -> tuple[subprocess.Popen, dict[str, str]]:
    """`sl2s up DIR` in a subprocess; returns it and the machine -> URL map it printed."""
    proc = subprocess.Popen(
        [*SL2S, "up", str(directory)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sl2s up ended early: {proc.stderr.read()}")
        if line.startswith("run a flow:"):
            return proc, urls
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("http://"):
            urls[parts[0]] = parts[1]
    proc.kill()
    raise RuntimeError("sl2s up did not report its machines")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(x) for x in text)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def base_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(extra)
    return env


# -- events ----------------------------------------------------------------------------------


def read_events(log_dir) -> list[dict]:
    import orjson

    events = []
    for path in sorted(Path(log_dir).glob("*.jsonl")):
        if path.name.startswith("incident-"):  # flight-recorder files live here too
            continue
        for line in path.read_bytes().splitlines():
            if line.strip():
                events.append(orjson.loads(line))
    return events


def causal_chain(events: list[dict]) -> list[dict]:
    """Events of one flow run in causal order: from the one without a cause, each next event is
    the one caused by the previous. Fails if the events do not form a single chain."""
    by_cause: dict = {}
    for event in events:
        cause = event["attributes"]["sl2s.causation_id"]
        assert cause not in by_cause, f"two events caused by {cause}"
        by_cause[cause] = event
    chain = []
    cause = None
    while cause in by_cause:
        event = by_cause.pop(cause)
        chain.append(event)
        cause = event["attributes"]["sl2s.event_id"]
    assert not by_cause, f"events outside the causal chain: {list(by_cause.values())}"
    return chain
