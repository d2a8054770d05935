"""`sl2s serve`, `sl2s up`, `sl2s deploy`: run or deploy a generated system's machines over HTTP.

These commands parse arguments, call sl2s.serve (which machines are served, `up`'s processes,
deploy manifests) or sl2s.runtime.transport.http.server (one machine), print and set the exit status.
docs/hop-protocol.md and docs/deploy.md describe what they do.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from sl2s.cli.app import app


class Target(str, Enum):
    kubernetes = "kubernetes"
    compose = "compose"


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
        False,
        "--insecure",
        help="Serve without SL2S_HOP_KEY on a non-loopback address (needs "
        "--expose-unauthenticated too).",
    ),
    exposed: bool = typer.Option(
        False,
        "--expose-unauthenticated",
        help="With --insecure: confirm that anyone who can reach the address may run this "
        "machine's steps.",
    ),
    fd: int = typer.Option(
        -1, "--fd", hidden=True, help="Serve on this inherited socket (sl2s up)."
    ),
) -> None:
    """Serve MACHINE of the system in DIR: hops from other machines arrive as HTTP POSTs.

    Hops are signed with SL2S_HOP_KEY (the same on every machine). Without a key this refuses any
    address other than loopback unless both --insecure and --expose-unauthenticated are given.
    Other machines' addresses come from DIR/sl2s.toml and SL2S_URL_<MACHINE>.
    """
    from sl2s.runtime.transport.http.server import run_server

    warn = lambda text: typer.echo(text, err=True)  # noqa: E731
    if not run_server(
        directory,
        machine,
        host=host,
        port=port,
        insecure=insecure,
        exposed=exposed,
        fd=fd,
        warn=warn,
    ):
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# sl2s up


@app.command("up")
def up(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
) -> None:
    """Start every machine of DIR that other machines hop to, each in its own process on a free
    127.0.0.1 port; print their addresses; stop them all on Ctrl-C or SIGTERM.

    A machine that exits is restarted on the same address after a back-off (0.5 s doubling to
    10 s), the others keep running, and each restart is printed; after 8 crashes in a row within
    30 s of starting, `up` stops every machine and exits 1 (docs/deploy.md).

    The address map is written to DIR/.sl2s/up.toml (and a fresh hop key to DIR/.sl2s/hop.key when
    SL2S_HOP_KEY is not set) so that `sl2s run DIR FLOW --remote` finds them; both files are
    removed when `up` stops.
    """
    from sl2s.serve.up import run_up

    code = run_up(
        directory, say=typer.echo, warn=lambda text: typer.echo(text, err=True)
    )
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# sl2s deploy


@app.command("deploy")
def deploy(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
    target: Target = typer.Option(..., "--target", help="kubernetes or compose."),
    image: str = typer.Option(
        "sl2s-services:latest",
        "--image",
        help="Image holding sl2s and DIR at /app/<DIR name>.",
    ),
    port: int = typer.Option(
        8000, "--port", help="Port each machine listens on in its container."
    ),
    out: str = typer.Option(
        "-",
        "--out",
        "-o",
        metavar="FILE",
        help="File to write (default: standard output).",
    ),
    revision: str | None = typer.Option(
        None,
        "--revision",
        help="The revision deployed (default: SL2S_REVISION, else the git work tree's). "
        "Recorded as a deploy and written to DIR/sl2s.revision.",
    ),
) -> None:
    """Write deployment manifests for the machines of DIR that other machines hop to:
    kubernetes (ConfigMap address map, Deployment + Service per machine, hop key from the Secret
    sl2s-hop-key, probes on the health endpoint) or compose. `[machines.<name>] replicas = N` in
    DIR/sl2s.toml runs N of a machine; more than one needs the PostgreSQL flow store."""
    from sl2s.observe.errorreport import record_deploy
    from sl2s.serve.machines import deploy_manifests

    text, served = deploy_manifests(directory, target.value, image=image, port=port)
    if out == "-":
        typer.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out} ({', '.join(served)})", err=True)
    _deploy, said = record_deploy(
        directory, revision=revision, target=target.value, how="sl2s deploy"
    )
    typer.echo(said if _deploy else f"warning: {said}", err=True)
