"""`sl2s up DIR` as a function: `run_up(directory, say=..., warn=...)` -> exit status.

Starts each served machine of DIR (sl2s.serve.machines) in its own process on a free 127.0.0.1
port. The ports are bound here and the sockets handed to the children, so nothing can take them in
between. Without SL2S_HOP_KEY a fresh key for the session goes to DIR/.sl2s/hop.key (mode 0600);
the address map goes to DIR/.sl2s/up.toml. Ctrl-C or SIGTERM stops every machine (SIGTERM, then
SIGKILL after 10 s) and removes both files; if one machine exits, the others are stopped and the
status is 1. Lines for standard output go to `say`, lines for standard error to `warn`. User
mistakes (no served machine, a machine that does not start) raise `Sl2sError` after cleaning up.

The pure parts (`uses_env_key`, `child_env`, `child_argv`, `banner`, `up_file_text`) are separate
so they can be tested without processes.
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
from sl2s.runtime import http_config
from sl2s.runtime.http_protocol import HEALTH_PATH
from sl2s.serve.machines import served_machines

Say = Callable[[str], None]

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for every machine to answer its health check
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
SERVE_CODE = "from sl2s.runtime.http_server import serve_main; serve_main()"


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
) -> list[str]:
    """The lines `up` prints once every machine answers."""
    width = max(len(n) for n in served)
    lines = [f"{name:<{width}}  {urls[name]}" for name in served]
    lines.append(f"addresses: {up_file}")
    if made_key:
        lines.append(f"hop key: generated for this session in {key_file}")
    lines.append(f"run a flow: sl2s run {directory} FLOW --remote    stop: Ctrl-C")
    return lines


# ---------------------------------------------------------------------------------------------
# processes, sockets, files


def _write_key(path: Path, key: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")


def _bind_loopback() -> socket.socket:
    """A listening socket on a free loopback port that a child process can inherit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if `sl2s up` dies without stopping it (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort elsewhere
        pass


def _wait_healthy(url: str, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + HEALTH_PATH, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(procs: dict[str, subprocess.Popen], grace: float = STOP_GRACE) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Stop(Exception):
    pass


def run_up(directory: str, *, say: Say, warn: Say) -> int:
    """Run `sl2s up DIR` until Ctrl-C, SIGTERM or a machine exits; return the exit status."""
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
    for name in served:
        sockets[name] = sock = _bind_loopback()
        urls[name] = f"http://{HOST}:{sock.getsockname()[1]}"
    up_file.write_text(up_file_text(urls, os.getpid()), encoding="utf-8")
    env = child_env(os.environ, urls, key, root)
    procs: dict[str, subprocess.Popen] = {}

    def on_term(signum, frame):
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        for name in served:
            fileno = sockets[name].fileno()
            procs[name] = subprocess.Popen(
                child_argv(sys.executable, root, name, fileno),
                env=env,
                pass_fds=(fileno,),
                preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
            )
        for sock in sockets.values():
            sock.close()
        deadline = time.monotonic() + START_TIMEOUT
        for name, proc in procs.items():
            if not _wait_healthy(urls[name], proc, deadline):
                raise Sl2sError(
                    f"machine '{name}' did not start (see its messages above)"
                )
        for line in banner(directory, served, urls, up_file, key_file, made_key):
            say(line)
        sys.stdout.flush()
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    warn(
                        f"machine '{name}' stopped (exit {proc.returncode}); stopping all"
                    )
                    code = 1
                    raise _Stop()
            time.sleep(0.2)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for sock in sockets.values():
            sock.close()
        _stop(procs)
        up_file.unlink(missing_ok=True)
        if made_key:
            key_file.unlink(missing_ok=True)
    warn("all machines stopped")
    return code
