"""`sl2s serve`, `sl2s up`, `sl2s deploy`: run or deploy a generated system's machines over HTTP.

The work is in sl2s.runtime.http_* (protocol, server, client, config, deploy); these commands parse
arguments, start processes, print and set the exit status. docs/hop-protocol.md and docs/deploy.md
describe what they do.
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
from pathlib import Path

import typer

from sl2s.cli.app import app
from sl2s.diagnostics import Sl2sError
from sl2s.runtime import http_config
from sl2s.runtime.http_protocol import HEALTH_PATH


def _served(directory: str) -> tuple[list[str], list[str]]:
    """(machines that other machines hop to, all machines) of the tree at `directory`."""
    from sl2s.runtime.http_server import load_machine, machine_names, serves_inbound

    names = machine_names(directory)
    served = []
    for name in names:
        try:
            machine = load_machine(directory, name)
        except Sl2sError:
            raise
        except Exception as error:  # noqa: BLE001 - user code that does not import
            raise Sl2sError(
                f"{directory}: machine '{name}' cannot be imported: "
                f"{type(error).__name__}: {error}"
            ) from None
        if serves_inbound(machine):
            served.append(name)
    return served, names


@app.command("serve")
def serve(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
    machine: str = typer.Argument(..., help="The machine to serve."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(
        8000, "--port", help="Port to listen on (0: any free port)."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address without SL2S_HOP_KEY."
    ),
    fd: int = typer.Option(
        -1, "--fd", hidden=True, help="Serve on this inherited socket (sl2s up)."
    ),
) -> None:
    """Serve MACHINE of the system in DIR: hops from other machines arrive as HTTP POSTs.

    Hops are signed with SL2S_HOP_KEY (the same on every machine). Without a key this refuses any
    address other than loopback unless --insecure is given. Other machines' addresses come from
    DIR/sl2s.toml and SL2S_URL_<MACHINE>.
    """
    from sl2s.runtime.http_server import run_server

    warn = lambda text: typer.echo(text, err=True)  # noqa: E731
    if not run_server(
        directory, machine, host=host, port=port, insecure=insecure, fd=fd, warn=warn
    ):
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# sl2s up


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


def _stop(procs: dict[str, subprocess.Popen], grace: float = 10.0) -> None:
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


_SERVE = "from sl2s.runtime.http_server import serve_main; serve_main()"


@app.command("up")
def up(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
) -> None:
    """Start every machine of DIR that other machines hop to, each in its own process on a free
    127.0.0.1 port; print their addresses; stop them all on Ctrl-C or SIGTERM.

    The address map is written to DIR/.sl2s/up.toml (and a fresh hop key to DIR/.sl2s/hop.key when
    SL2S_HOP_KEY is not set) so that `sl2s run DIR FLOW --remote` finds them; both files are
    removed when `up` stops.
    """
    root = Path(directory)
    config = http_config.load_config(directory)
    served, _ = _served(directory)
    if not served:
        raise Sl2sError(f"{directory}: no machine receives hops; nothing to serve")
    state = root / ".sl2s"
    state.mkdir(parents=True, exist_ok=True)
    key_file = root / http_config.KEY_FILE
    up_file = root / http_config.UP_FILE
    made_key = False
    if config.keys and config.key_source != f"{root.name}/{http_config.KEY_FILE}":
        key = os.environ[http_config.ENV_KEY]
    else:
        key = secrets.token_hex(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
        made_key = True
    sockets: dict[str, socket.socket] = {}
    urls: dict[str, str] = {}
    for name in served:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sock.set_inheritable(True)
        sockets[name] = sock
        urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    up_file.write_text(
        http_config.render_machines_toml(
            urls, f"Written by `sl2s up` (pid {os.getpid()}); removed when it stops."
        ),
        encoding="utf-8",
    )
    env = dict(os.environ)
    env.update({http_config.env_name(n): u for n, u in urls.items()})
    env[http_config.ENV_KEY] = key
    env["SL2S_TRANSPORT"] = "http"
    env["SL2S_SERVICES"] = str(root)
    procs: dict[str, subprocess.Popen] = {}

    def on_term(signum, frame):
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        for name in served:
            fileno = sockets[name].fileno()
            procs[name] = subprocess.Popen(
                [sys.executable, "-c", _SERVE, str(root), name, "--fd", str(fileno)],
                env=env,
                pass_fds=(fileno,),
                preexec_fn=_pdeathsig if sys.platform.startswith("linux") else None,
            )
        for sock in sockets.values():
            sock.close()
        deadline = time.monotonic() + 30
        for name, proc in procs.items():
            if not _wait_healthy(urls[name], proc, deadline):
                raise Sl2sError(
                    f"machine '{name}' did not start (see its messages above)"
                )
        width = max(len(n) for n in served)
        for name in served:
            typer.echo(f"{name:<{width}}  {urls[name]}")
        typer.echo(f"addresses: {up_file}")
        if made_key:
            typer.echo(f"hop key: generated for this session in {key_file}")
        typer.echo(f"run a flow: sl2s run {directory} FLOW --remote    stop: Ctrl-C")
        sys.stdout.flush()
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    typer.echo(
                        f"machine '{name}' stopped (exit {proc.returncode}); stopping all",
                        err=True,
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
    typer.echo("all machines stopped", err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# sl2s deploy


@app.command("deploy")
def deploy(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
    target: str = typer.Option(..., "--target", help="kubernetes or compose."),
    image: str = typer.Option(
        "sl2s-services:latest",
        "--image",
        help="Image holding sl2s and DIR at /app/<DIR name>.",
    ),
    port: int = typer.Option(
        8000, "--port", help="Port each machine listens on in its container."
    ),
    out: str = typer.Option(
        "-", "--out", "-o", help="File to write (default: standard output)."
    ),
) -> None:
    """Write deployment manifests for the machines of DIR that other machines hop to:
    kubernetes (ConfigMap address map, Deployment + Service per machine, hop key from the Secret
    sl2s-hop-key, probes on the health endpoint) or compose."""
    from sl2s.runtime.http_deploy import DeploySpec, render

    if target not in ("kubernetes", "compose"):
        raise Sl2sError(f"--target {target}: expected kubernetes or compose")
    served, _ = _served(directory)
    if not served:
        raise Sl2sError(f"{directory}: no machine receives hops; nothing to deploy")
    spec = DeploySpec(
        system=Path(directory).resolve().name,
        served=tuple(served),
        image=image,
        port=port,
    )
    text = render(spec, target)
    if out == "-":
        typer.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out} ({', '.join(served)})", err=True)
