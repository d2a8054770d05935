"""`sl2s run DIR FLOW [FIELD=VALUE | FIELD:=JSON ...]`: run one flow of a generated system in this
process (local transport) and print its story, one line per step."""

from __future__ import annotations

import typer

from sl2s.cli.app import app, checked, colour, report
from sl2s.diagnostics import Sl2sError

# The runtime is imported when `run` runs, not with the command line: other commands (a no-op
# `sl2s generate` above all) start without it.


def _parse_values(values: list[str]) -> dict:
    from sl2s.runtime.launch import parse_values

    return parse_values(values)


@app.command("run")
def run(
    directory: str = typer.Argument(
        ..., help="The generated system package, e.g. services."
    ),
    flow: str = typer.Argument(..., help="The flow (request) to run."),
    values: list[str] = typer.Argument(
        None,
        metavar="[FIELD=VALUE | FIELD:=JSON]...",
        callback=checked(_parse_values),
        help="Context fields: FIELD=VALUE sets a string, FIELD:=JSON any JSON value.",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print only the final context."
    ),
    remote: bool = typer.Option(
        False,
        "--remote",
        help="Hop over HTTP to machines already running (sl2s up / sl2s serve); addresses from "
        "DIR/sl2s.toml, DIR/.sl2s/up.toml or SL2S_URL_<MACHINE>. The story, every machine's "
        "steps, prints when the run is over.",
    ),
    actor: str = typer.Option(
        None,
        "--actor",
        metavar="NAME",
        help="Who runs the flow, recorded on every event of the run (default: your user name).",
    ),
    ticket: str = typer.Option(
        None,
        "--ticket",
        metavar="ID",
        help="The ticket this run is for (recorded likewise).",
    ),
    reason: str = typer.Option(
        None,
        "--reason",
        metavar="TEXT",
        help="Why the flow is run (recorded likewise).",
    ),
    meta: list[str] = typer.Option(
        None,
        "--meta",
        metavar="NAME=VALUE",
        help="Other run metadata, recorded likewise (repeatable).",
    ),
) -> None:
    """Run FLOW of the system in DIR in this process, printing one line per step.

    Every machine runs here (local transport); the context still crosses each machine boundary as
    JSON. Events go to SL2S_LOG_DIR (default DIR/.sl2s/logs), one JSON-lines file per machine.
    Exit status 1 when a step fails: the plan line of the failing step is named, and the traceback of
    your own code is shown once.
    """
    from sl2s.runtime import HopFailed, StepFailed, hooks, run_metadata
    from sl2s.runtime.core.stdmask import masked_std_streams
    from sl2s.runtime.core.system import log_dir
    from sl2s.runtime.launch import (
        capture_info_records,
        check_fields,
        load_entry,
        parse_values,
        run_metadata_of,
    )
    from sl2s.runtime.story_print import StoryPrinter, shown_context, user_traceback

    remote_logs = None
    try:
        if remote:
            from sl2s.observe.remote_story import RemoteLogs
            from sl2s.runtime.transport.http.sender import use_http

            config = use_http(directory)
            urls = [*config.urls.values()]
            urls += [url for many in config.replicas.values() for url in many]
            remote_logs = RemoteLogs(urls, config.keys)
        fields = parse_values(values or [])
        run_meta = run_metadata_of(actor, ticket, reason, meta or [])
        entry = load_entry(directory, flow)
        check_fields(entry, fields)
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    except (
        Exception
    ) as error:  # noqa: BLE001 - the user's code failed to import: show it once
        typer.echo(user_traceback(error), err=True)
        typer.echo(f"sl2s: {directory}: importing the system failed: {error}", err=True)
        raise typer.Exit(1) from None
    capture_info_records()
    # --remote: the story is told once the run is over, with the served machines' events read
    # back from them (only what they wrote during the run); in-process: as it happens
    story = _Collector() if remote_logs is not None else StoryPrinter(_say)
    if remote_logs is not None:
        remote_logs.mark()
    if not quiet:
        hooks.subscribe(story)

    def tell() -> None:  # --remote: the whole story, once the run is over
        hooks.unsubscribe(story)
        if isinstance(story, _Collector) and remote_logs is not None and not quiet:
            story.tell(remote_logs, _say)

    try:
        # what steps print: their run's secrets masked
        with masked_std_streams(), run_metadata(**run_meta):
            result = entry.function(**fields)
    except StepFailed as failure:
        tell()
        if failure.kind == "exception" and failure.traceback:
            typer.echo(failure.traceback.rstrip("\n"), err=True)
        report(failure)
        raise typer.Exit(1) from None
    except HopFailed as failure:
        tell()
        cause = failure.__cause__
        if cause is not None:  # the target machine's own code failed to import
            typer.echo(user_traceback(cause), err=True)
        report(failure)
        raise typer.Exit(1) from None
    except Sl2sError as error:
        tell()
        report(error)
        raise typer.Exit(1) from None
    finally:
        hooks.unsubscribe(story)
    tell()
    context = shown_context(result, entry.machine.secret_names(entry.flow), fields)
    if quiet:
        typer.echo(context)
        return
    done = f"flow '{entry.flow}' done ({story.steps} steps)"
    typer.echo(
        (typer.style(done, fg="green", bold=True) if colour() else done)
        + f"; context: {context}"
    )
    typer.echo(f"events: {log_dir(entry.machine.info)}")


def _say(line: str) -> None:
    """A story line; on a terminal the machine in bold and a failure in red."""
    if colour():
        machine, sep, rest = line.partition(": ")
        if sep and " " not in machine:
            failed = rest.endswith("  FAILED")
            if failed:
                rest = rest[: -len("  FAILED")] + typer.style(
                    "  FAILED", fg="red", bold=True
                )
            line = typer.style(machine + sep, bold=True) + rest
    typer.echo(line)


class _Collector:
    """`sl2s run --remote`: keeps this process's events of the run; `tell` prints the whole run,
    every machine's events merged and in causal order, like the in-process story."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.steps = 0

    def event(self, evt) -> None:
        self.events.append(dict(evt))

    def tell(self, remote_logs, echo) -> None:
        from sl2s.observe.remote_story import merged
        from sl2s.observe.story import causal_order
        from sl2s.runtime.story_print import story_line

        events, self.events = self.events, []  # told once
        if not events:
            return
        cid = events[0].get("attributes", {}).get("sl2s.correlation_id")
        remote = remote_logs.events_of(cid) if cid else []
        for url, error in sorted(remote_logs.errors.items()):
            echo(f"sl2s: {url}: its events could not be read: {error}")
        for event, _cause in causal_order(merged(events, remote)):
            if event.get("event_name") == "sl2s.step":
                self.steps += 1
            line = story_line(event)
            if line is not None:
                echo(line)
