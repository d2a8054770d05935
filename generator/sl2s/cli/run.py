"""`sl2s run DIR FLOW [FIELD=VALUE | FIELD:=JSON ...]`: run one flow of a generated system in this
process (local transport) and print its story, one line per step."""

from __future__ import annotations

import logging
import os
import traceback

import orjson
import typer

from sl2s.cli.app import app, report
from sl2s.diagnostics import Sl2sError
from sl2s.runtime import HopFailed, StepFailed, hooks
from sl2s.runtime.launch import check_fields, load_entry, parse_values
from sl2s.runtime.system import log_dir


def _user_traceback(error: BaseException) -> str:
    """The traceback without the frames of sl2s and of the import machinery."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if "importlib" not in frame.filename
        and os.sep + "sl2s" + os.sep not in frame.filename
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines).rstrip("\n")


class _Story:
    """Prints each event of the run as it is written (secrets are already `***` in events)."""

    def __init__(self) -> None:
        self.steps = 0

    def event(self, evt: dict) -> None:
        attributes = evt.get("attributes", {})
        name = evt.get("event_name")
        machine = attributes.get("sl2s.machine", "?")
        if name == "sl2s.step":
            self.steps += 1
            where = ", ".join(
                x
                for x in (attributes.get("sl2s.step"), attributes.get("sl2s.plan"))
                if x
            )
            failed = "  FAILED" if evt.get("severity_text") == "ERROR" else ""
            typer.echo(f"{machine}: {evt.get('body', '')}  ({where}){failed}")
        elif name == "sl2s.log":
            typer.echo(
                f"{machine}:   {evt.get('severity_text', '')} {evt.get('body', '')}"
            )


@app.command("run")
def run(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
    flow: str = typer.Argument(..., help="The flow (request) to run."),
    values: list[str] = typer.Argument(
        None,
        metavar="[FIELD=VALUE | FIELD:=JSON]...",
        help="Context fields: FIELD=VALUE sets a string, FIELD:=JSON any JSON value.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print only the final context."
    ),
    remote: bool = typer.Option(
        False,
        "--remote",
        help="Hop over HTTP to machines already running (sl2s up / sl2s serve); addresses from "
        "DIR/sl2s.toml, DIR/.sl2s/up.toml or SL2S_URL_<MACHINE>. Only this machine's steps print.",
    ),
) -> None:
    """Run FLOW of the system in DIR in this process, printing one line per step.

    Every machine runs here (local transport); the context still crosses each machine boundary as
    JSON. Events go to SL2S_LOG_DIR (default DIR/.sl2s/logs), one JSON-lines file per machine.
    Exit status 1 when a step fails: the plan line of the failing step is named, and the traceback of
    your own code is shown once.
    """
    try:
        # --remote: see sl2s.runtime.http_transport.use_http (owned by the HTTP work)
        if remote:
            from sl2s.runtime.http_transport import use_http

            use_http(directory)
        fields = parse_values(values or [])
        entry = load_entry(directory, flow)
        check_fields(entry, fields)
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    except (
        Exception
    ) as error:  # noqa: BLE001 - the user's code failed to import: show it once
        typer.echo(_user_traceback(error), err=True)
        typer.echo(f"sl2s: {directory}: importing the system failed: {error}", err=True)
        raise typer.Exit(1) from None
    root = logging.getLogger()
    if not root.handlers and root.level == logging.WARNING:
        # let the steps' INFO records be captured (stderr still shows warnings and above only)
        root.setLevel(logging.INFO)
    story = _Story()
    if not quiet:
        hooks.subscribe(story)
    try:
        result = entry.function(**fields)
    except StepFailed as failure:
        if failure.kind == "exception" and failure.traceback:
            typer.echo(failure.traceback.rstrip("\n"), err=True)
        report(failure)
        raise typer.Exit(1) from None
    except HopFailed as failure:
        cause = failure.__cause__
        if cause is not None:  # the target machine's own code failed to import
            typer.echo(_user_traceback(cause), err=True)
        report(failure)
        raise typer.Exit(1) from None
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    finally:
        hooks.unsubscribe(story)
    secrets = entry.machine.secret_names(entry.flow)
    shown = {k: ("***" if k in secrets else v) for k, v in result.items()}
    context = orjson.dumps(shown, option=orjson.OPT_SORT_KEYS, default=repr).decode()
    if quiet:
        typer.echo(context)
        return
    typer.echo(f"flow '{entry.flow}' done ({story.steps} steps); context: {context}")
    typer.echo(f"events: {log_dir(entry.machine.info)}")
