"""The `sl2s` command of the slim runtime distribution, `sl2s-runtime`: `sl2s serve` only.

A deployed machine runs `sl2s serve DIR MACHINE` (the manifests of `sl2s deploy` say exactly that)
and nothing else, so the runtime distribution ships this small parser instead of the full command
line, whose Typer, Jinja, libcst and black it does not install. It takes the same arguments as the
full `sl2s serve` (a test compares the two), prints user mistakes as one line with exit 1 and
usage mistakes with exit 2, and names the full distribution for every other command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sl2s import __version__
from sl2s.diagnostics import Sl2sError

FULL_ONLY = (
    "sl2s {command}: this is sl2s-runtime, which serves generated machines only "
    "(`sl2s serve DIR MACHINE`); install the full sl2s for `{command}`"
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="sl2s",
        description="sl2s-runtime: serve one machine of a generated system over HTTP.",
    )
    top.add_argument(
        "--version", action="version", version=f"sl2s {__version__} (runtime)"
    )
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="Serve MACHINE of the system in DIR: hops from other machines arrive as HTTP POSTs.",
        description="Serve MACHINE of the system in DIR: hops from other machines arrive as "
        "HTTP POSTs, signed with SL2S_HOP_KEY (the same on every machine). Without a key this "
        "refuses any address other than loopback unless both --insecure and "
        "--expose-unauthenticated are given.",
    )
    serve.add_argument("directory", metavar="DIR", help="The generated system package.")
    serve.add_argument("machine", metavar="MACHINE", help="The machine to serve.")
    serve.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="Address to listen on."
    )
    serve.add_argument(
        "--port",
        type=int,
        default=8000,
        metavar="PORT",
        help="Port to listen on (0: any).",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="Serve without SL2S_HOP_KEY on a non-loopback address (needs "
        "--expose-unauthenticated too).",
    )
    serve.add_argument(
        "--expose-unauthenticated",
        dest="exposed",
        action="store_true",
        help="With --insecure: confirm that anyone who can reach the address may run this "
        "machine's steps.",
    )
    serve.add_argument("--fd", type=int, default=-1, help=argparse.SUPPRESS)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if first is not None and first != "serve":
        print(FULL_ONLY.format(command=first), file=sys.stderr)
        sys.exit(2)
    options = parser().parse_args(args)

    from sl2s.runtime.transport.http.server import run_server

    try:
        started = run_server(
            options.directory,
            options.machine,
            host=options.host,
            port=options.port,
            insecure=options.insecure,
            exposed=options.exposed,
            fd=options.fd,
        )
    except Sl2sError as error:
        for diagnostic in error.diagnostics:
            print(diagnostic, file=sys.stderr)
        sys.exit(1)
    if not started:
        sys.exit(1)
