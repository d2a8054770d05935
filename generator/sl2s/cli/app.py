"""The Typer application every command module registers on. Commands only parse and delegate.

Besides the app this module holds what every command shares: upper-case metavars in usage lines
and help (`Sl2sTyper`), usage errors (`usage`, exit 2), colour on a terminal only (`paint`,
honouring `NO_COLOR` and `--no-color`) and a progress display for work that lasts more than a
second on a terminal (`working`). Off a terminal the output is exactly the plain text.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from typer import (
    _click as click,
)  # Typer's own click: its exceptions are the ones it handles
from typer._click.exceptions import BadParameter, UsageError
from typer.core import TyperArgument, TyperCommand, TyperOption

from sl2s import __version__
from sl2s.diagnostics import Sl2sError

# option name -> metavar, where the name alone would say less than this
_METAVARS = {
    "out": "DIR",
    "directory": "DIR",
    "new_since": "STATE",
    "mask_regex": "REGEX",
    "prefix": "REGEX",
    "logs": "LOG_DIR",
    "older_than": "AGE",
    "refresh": "SECONDS",
    "settle": "SECONDS",
    "duration": "SECONDS",
    "rate": "PER_MINUTE",
    "index": "FILE",
    "plan": "PLAN",
    "command": "CMD",
    "webhook": "URL",
    "revision": "REVISION",
    "correlation_id": "ID",
    "event": "ID",
    "fd": "FD",
    "since": "SINCE",
}


def _metavar_of(param: click.Parameter, command: str) -> str:
    desc = getattr(param, "type_descriptor", None)
    choices = getattr(desc, "choices", None) if desc is not None else None
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    name = param.name or "value"
    if name == "directory":
        return "DIR"
    if isinstance(param, TyperOption) and name in _METAVARS:
        if not (name == "logs" and command in ("story", "console", "watch")):
            return _METAVARS[name]
    return name.upper()


class Sl2sCommand(TyperCommand):
    """A command whose usage line and help name every value in upper case (`PLAN`, `[LOG_DIR]`,
    `--out DIR`, `--format [text|markdown]`), never a Python type."""

    def __init__(self, name: str | None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for param in self.params:
            if isinstance(param, TyperOption) and (param.is_flag or param.count):
                continue
            if param.metavar is None:
                param.metavar = _metavar_of(param, name or "")
            elif isinstance(param, TyperArgument) and param.metavar.islower():
                param.metavar = param.metavar.upper()
            if isinstance(
                param, TyperArgument
            ):  # its help row: the metavar, no Python type
                param.display_type_rich = _no_type  # type: ignore[method-assign]

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.params:
            if isinstance(param, TyperArgument) and not param.hidden:
                pieces.append(_usage_name(param))
        return pieces


def _no_type(ctx: click.Context) -> None:
    return None


def _usage_name(param: TyperArgument) -> str:
    """click's convention: NAME when required, [NAME] when optional, ... when repeatable."""
    name = param.metavar or (param.name or "").upper()
    if name.startswith("["):  # the metavar already says it is optional and repeatable
        return name
    if not param.required:
        name = f"[{name}]"
    if param.nargs != 1 and not name.endswith(("...", "…")):
        name += "..."
    return name


class Sl2sTyper(typer.Typer):
    """A Typer app whose commands are `Sl2sCommand`s unless told otherwise."""

    def command(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        kwargs.setdefault("cls", Sl2sCommand)
        return super().command(*args, **kwargs)


def sub_app(name: str, help: str) -> Sl2sTyper:
    """A command group (`sl2s incidents ...`) with the app's settings."""
    return Sl2sTyper(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
    )


app = Sl2sTyper(
    name="sl2s",
    help="Turn a plan of log lines into per-machine Python services, and keep them in step.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# --------------------------------------------------------------------------------------------
# colour: on a terminal only; NO_COLOR (any non-empty value) or --no-color turn it off

_colour_off = False


def colour(err: bool = False) -> bool:
    """Whether to colour what goes to stdout (or stderr when `err`)."""
    if _colour_off or os.environ.get("NO_COLOR"):
        return False
    stream = sys.stderr if err else sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, err: bool = False, **style: Any) -> str:
    """`text` styled (typer.style keywords) when that stream gets colour, else unchanged."""
    return typer.style(text, **style) if colour(err) else text


# --------------------------------------------------------------------------------------------
# progress: a transient display on stderr, only on a terminal and only after a second


@contextmanager
def working(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """Yield an `update(done, total)` callable for the work to report its progress (in any unit:
    bytes read, machines rendered). After 1 s of work on a terminal, show a rich progress bar on
    stderr (pulsing until a total is known, then with the share done and the time left), gone when
    the work ends. Off a terminal it yields None: the work counts nothing."""
    if not _progress_forced():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=Console(
            file=sys.stderr, force_terminal=True, no_color=not colour(err=True)
        ),
        transient=True,
    )
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=max(total, done, 1))

    timer = threading.Timer(1.0, progress.start)
    timer.daemon = True
    timer.start()
    try:
        yield update
    finally:
        timer.cancel()
        timer.join()
        if progress.live.is_started:
            progress.stop()


def _progress_forced() -> bool:
    """Progress is shown on a terminal (without colour under NO_COLOR or --no-color)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------


def checked(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A Typer callback: `parse(value)` must accept the value (None passes); its Sl2sError or
    ValueError becomes a usage error on that option or argument (exit 2)."""

    def callback(value: Any) -> Any:
        if value is None or value == [] or value == ():
            return value
        try:
            parse(value)
        except (Sl2sError, ValueError) as error:
            raise BadParameter(str(error).removeprefix("sl2s: ")) from None
        return value

    return callback


def usage(message: str) -> NoReturn:
    """A usage mistake (a wrong combination of arguments): click's message, exit 2."""
    raise UsageError(message)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sl2s {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    no_color: bool = typer.Option(
        False,
        "--no-color",
        help="No colour, even on a terminal (as NO_COLOR=1 does). Off a terminal there is none.",
    ),
) -> None:
    """sl2s: structured logging to system."""
    from sl2s.rebalance import journal  # finish an interrupted rebalance first

    global _colour_off
    _colour_off = no_color
    for done in journal.recover_from_argv(sys.argv[1:]):
        typer.echo(done, err=True)


def report(error: Sl2sError) -> None:
    """Print every diagnostic of a user-facing error to stderr (its location bold on a terminal)."""
    for diagnostic in error.diagnostics:
        text = str(diagnostic)
        if colour(err=True):
            where, sep, what = text.partition(": ")
            text = (
                typer.style(where + sep, bold=True) + typer.style(what, fg="red")
                if sep
                else typer.style(text, fg="red")
            )
        typer.echo(text, err=True)


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
