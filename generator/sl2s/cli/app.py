"""The Typer application every command module registers on. Commands only parse and delegate."""

from __future__ import annotations

import sys

import typer

from sl2s import __version__
from sl2s.diagnostics import Sl2sError

app = typer.Typer(
    name="sl2s",
    help="Turn a plan of log lines into per-machine Python services, and keep them in step.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sl2s {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """sl2s: structured logging to system."""
    from sl2s.rebalance import journal  # finish an interrupted rebalance first

    for done in journal.recover_from_argv(sys.argv[1:]):
        typer.echo(done, err=True)


def report(error: Sl2sError) -> None:
    """Print every diagnostic of a user-facing error to stderr."""
    for diagnostic in error.diagnostics:
        typer.echo(str(diagnostic), err=True)


def main(prog_name: str | None = None) -> None:
    """Console-script entry: user mistakes become `FILE:LINE: message` and exit 1, never a traceback.

    Typer runs in standalone mode, so usage errors print click's message and exit 2 and Ctrl-C
    exits 1 with "Aborted!"; an Sl2sError raised by any command arrives here.
    """
    try:
        app(prog_name=prog_name)
    except Sl2sError as error:
        report(error)
        sys.exit(1)
