"""`sl2s up DIR` as a function: `run_up(directory, say=..., warn=...)` -> exit status.

Starts each served machine of DIR (sl2s.serve.machines) in its own process on a free 127.0.0.1
port. The ports are bound here and the sockets handed to the children, so nothing can take them in
between. Without SL2S_HOP_KEY a fresh key for the session goes to DIR/.sl2s/hop.key (mode 0600);
the address map goes to DIR/.sl2s/up.toml. Ctrl-C or SIGTERM stops every machine (SIGTERM, then
SIGKILL after 10 s) and removes both files, status 0.

`up` supervises: a machine that exits is started again on the same socket (kept open here for
the whole session, so callers' retries reach the new process) after a back-off, while the others
keep running; each restart is one line on `warn`. The schedule and when to give up are
sl2s.serve.supervise; a machine given up on stops them all, status 1. Lines for standard output go
to `say`, lines for standard error to `warn`. User mistakes (no served machine, a machine that does
not start the first time) raise `Sl2sError` after cleaning up.

The pure parts (`uses_env_key`, `child_env`, `child_argv`, `banner`, `up_file_text`, and
sl2s.serve.supervise) are separate so they can be tested without processes.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from sl2s.diagnostics import Sl2sError
from sl2s.runtime.transport.http import config as http_config
from sl2s.runtime.transport.http.protocol import HEALTH_PATH
from sl2s.serve import supervise
from sl2s.serve.machines import served_machines

Say = Callable[[str], None]

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for every machine to answer its health check
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
POLL = 0.2  # seconds between looks at the machines
SERVE_CODE = "from sl2s.runtime.transport.http.server import serve_main; serve_main()"


# ---------------------------------------------------------------------------------------------
# pure parts


def uses_env_key(config: http_config.HttpConfig, root: Path) -> bool:
    """True when the hop key comes from SL2S_HOP_KEY; False when `up` makes a fresh one (no key,
    or only the key file an earlier `up` left behind)."""
    return (
        bool(config.keys) and config.key_source != f"{root.name}/{http_config.KEY_FILE}"
    )


def up_file_text(urls: Mapping[str, str], pid: int) -> str:
    """The contents of DIR/.sl2s/up.toml: the address map of this session."""
    return http_config.render_machines_toml(
        urls, f"Written by `sl2s up` (pid {pid}); removed when it stops."
    )


def child_env(
    base: Mapping[str, str], urls: Mapping[str, str], key: str, root: Path
) -> dict[str, str]:
    """The environment of every machine process: every address, the key, HTTP transport."""
    env = dict(base)
    env.update({http_config.env_name(n): u for n, u in urls.items()})
    env[http_config.ENV_KEY] = key
    env["SL2S_TRANSPORT"] = "http"
    env["SL2S_SERVICES"] = str(root)
    return env


def child_argv(executable: str, root: Path, name: str, fileno: int) -> list[str]:
    """The command serving machine `name` on the inherited socket `fileno`."""
    return [executable, "-c", SERVE_CODE, str(root), name, "--fd", str(fileno)]


def banner(
    directory: str,
    served: list[str],
    urls: Mapping[str, str],
    up_file: Path,
    key_file: Path,
    made_key: bool,
    pids: Mapping[str, int],
) -> list[str]:
    """The lines `up` prints once every machine answers: each machine's address and process id
    (what to `kill` to see `up` restart it)."""
    width = max(len(n) for n in served)
    lines = [f"{name:<{width}}  {urls[name]}  pid {pids[name]}" for name in served]
    lines.append(f"addresses: {up_file}")
    if made_key:
        lines.append(f"hop key: generated for this session in {key_file}")
    lines.append(f"run a flow: sl2s run {directory} FLOW --remote    stop: Ctrl-C")
    return lines


# ---------------------------------------------------------------------------------------------
# processes, sockets, files


def _write_key(path: Path, key: str) -> None:
    """The key file holds exactly the key: no trailing newline, so a client that signs with the
    file's bytes as they are signs with the same key as the servers (which strip whitespace).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)


def _bind_loopback() -> socket.socket:
    """A listening socket on a free loopback port that a child process can inherit; a failure is
    a one-line Sl2sError."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(1024)
    except OSError as error:
        sock.close()
        raise Sl2sError(
            f"cannot listen on {HOST} (a free port): {error.strerror or error}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _load_prctl():
    """libc's prctl, looked up here in the parent: the child, between fork and exec, only calls
    it (importing there could wait forever on a lock another thread held at the fork).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:  # noqa: BLE001 - best effort elsewhere
        return None


_PRCTL = _load_prctl()


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if `sl2s up` dies without stopping it (no orphans)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _healthy(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url + HEALTH_PATH, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_healthy(url: str, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _healthy(url, 1.0):
            return True
        time.sleep(0.05)
    return False


def _stop(procs: list[subprocess.Popen], grace: float = STOP_GRACE) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Stop(Exception):
    """SIGTERM (or Ctrl-C, as KeyboardInterrupt): stop every machine, status 0."""


class _GiveUp(Exception):
    """A machine kept crashing (sl2s.serve.supervise): stop every machine, status 1."""


class _Served:
    """One machine under supervision: its socket (kept open by `up` for the whole session, so
    a restarted process listens on the same address and connections made meanwhile wait in its
    backlog), its current process, and where it is in a series of crashes."""

    def __init__(self, name: str, sock: socket.socket, url: str) -> None:
        self.name, self.sock, self.url = name, sock, url
        self.proc: subprocess.Popen | None = None
        self.started = 0.0  # time.monotonic() of the current process's start
        self.attempt = 0  # place in the current series of crashes (supervise.decide)
        self.restart_at: float | None = None  # while waiting out a back-off
        self.announce = False  # a restarted process: say when it answers

    def start(self, root: Path, env: Mapping[str, str]) -> None:
        fileno = self.sock.fileno()
        self.proc = subprocess.Popen(
            child_argv(sys.executable, root, self.name, fileno),
            env=env,
            pass_fds=(fileno,),
            preexec_fn=_pdeathsig if _PRCTL is not None else None,
        )
        self.started = time.monotonic()
        self.restart_at = None


def _supervise(
    machines: list[_Served],
    root: Path,
    env: Mapping[str, str],
    warn: Say,
    policy: supervise.RestartPolicy,
) -> None:
    """Restart machines that exit, as `policy` says, until a signal stops `up` (`_Stop`,
    KeyboardInterrupt) or a machine is given up on (`_GiveUp`)."""
    while True:
        now = time.monotonic()
        for machine in machines:
            proc = machine.proc
            if proc is not None and proc.poll() is not None:
                decision = supervise.decide(
                    machine.attempt, now - machine.started, policy
                )
                if decision.delay is None:
                    warn(
                        supervise.give_up_line(
                            machine.name, proc.pid, proc.returncode, decision, policy
                        )
                    )
                    raise _GiveUp()
                warn(
                    supervise.restart_line(
                        machine.name, proc.pid, proc.returncode, now - machine.started,
                        decision,
                    )
                )  # fmt: skip
                machine.proc, machine.attempt = None, decision.attempt
                machine.restart_at = now + decision.delay
            elif (
                proc is None
                and machine.restart_at is not None
                and now >= machine.restart_at
            ):
                machine.start(root, env)
                machine.announce = True
            elif proc is not None and machine.announce and _healthy(machine.url, 0.3):
                machine.announce = False
                warn(supervise.back_line(machine.name, proc.pid, machine.url))
        time.sleep(POLL)


DEFAULT_POLICY = supervise.RestartPolicy()  # frozen: one instance serves every call


def run_up(
    directory: str,
    *,
    say: Say,
    warn: Say,
    policy: supervise.RestartPolicy = DEFAULT_POLICY,
) -> int:
    """Run `sl2s up DIR` until Ctrl-C or SIGTERM (status 0), or until a machine keeps crashing
    (`policy`: then every machine is stopped and the status is 1); return the exit status.
    """
    root = Path(directory)
    config = http_config.load_config(directory)
    served, _ = served_machines(directory)
    if not served:
        raise Sl2sError(f"{directory}: no machine receives hops; nothing to serve")
    (root / ".sl2s").mkdir(parents=True, exist_ok=True)
    key_file = root / http_config.KEY_FILE
    up_file = root / http_config.UP_FILE
    made_key = False
    if uses_env_key(config, root):
        key = os.environ[http_config.ENV_KEY]
    else:
        key = secrets.token_hex(32)
        _write_key(key_file, key)
        made_key = True
    sockets: dict[str, socket.socket] = {}
    urls: dict[str, str] = {}
    try:
        for name in served:
            sockets[name] = sock = _bind_loopback()
            urls[name] = f"http://{HOST}:{sock.getsockname()[1]}"
    except Sl2sError:
        for sock in sockets.values():
            sock.close()
        if made_key:
            key_file.unlink(missing_ok=True)
        raise
    up_file.write_text(up_file_text(urls, os.getpid()), encoding="utf-8")
    env = child_env(os.environ, urls, key, root)
    machines = [_Served(name, sockets[name], urls[name]) for name in served]

    def on_term(signum, frame):
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        for machine in machines:
            machine.start(root, env)
        deadline = time.monotonic() + START_TIMEOUT
        # a machine that never started is not restarted: its code is broken
        for machine in machines:
            if machine.proc is None or not _wait_healthy(
                machine.url, machine.proc, deadline
            ):
                raise Sl2sError(
                    f"machine '{machine.name}' did not start (see its messages above)"
                )
        pids = {m.name: m.proc.pid for m in machines if m.proc is not None}
        for line in banner(directory, served, urls, up_file, key_file, made_key, pids):
            say(line)
        sys.stdout.flush()
        _supervise(machines, root, env, warn, policy)
    except _GiveUp:
        code = 1
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop([m.proc for m in machines if m.proc is not None])
        for sock in sockets.values():
            sock.close()
        up_file.unlink(missing_ok=True)
        if made_key:
            key_file.unlink(missing_ok=True)
    warn("all machines stopped")
    return code
