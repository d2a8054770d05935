"""`sl2s flows list|show|resume|cancel|prune DIR ...`: flow runs recorded in the flow store of a
generated system (docs/durability.md). The work is in sl2s.runtime.flows; this module parses and
prints."""

from __future__ import annotations

from enum import Enum

import typer

from sl2s.cli.app import app, checked, report, sub_app
from sl2s.diagnostics import Sl2sError

flows_app = sub_app(
    "flows",
    "Flow runs in the flow store: list, show, resume, cancel or prune them.",
)
app.add_typer(flows_app, name="flows")


class State(str, Enum):
    pending = "pending"
    failed = "failed"
    completed = "completed"
    cancelled = "cancelled"


def _age(text: str) -> float:
    from sl2s.runtime.flows import parse_age

    return parse_age(text)


_DIR = typer.Argument(..., help="The generated system package, e.g. services.")
_ID = typer.Argument(
    ...,
    help="A flow run's correlation id (or a unique prefix or suffix of 6+ characters).",
)


@flows_app.command("list")
def list_(
    directory: str = _DIR,
    state: State = typer.Option(
        None,
        "--state",
        help="Only flows in this state.",
    ),
    flow: str = typer.Option(None, "--flow", help="Only runs of this flow."),
    machine: str = typer.Option(
        None, "--machine", help="Only flows that started on this machine."
    ),
    older_than: str = typer.Option(
        None,
        "--older-than",
        callback=checked(_age),
        help="Only flows with no progress for this long: 90s, 10m, 2h, 3d.",
    ),
    limit: int = typer.Option(
        100, "--limit", min=1, help="At most this many, newest first."
    ),
) -> None:
    """List flow runs, newest first: id, state, flow, entry machine, age, last step."""
    from sl2s.runtime import flows

    try:
        records = flows.list_flows(
            directory,
            state=state.value if state else None,
            flow=flow,
            machine=machine,
            older_than=older_than,
            limit=limit,
        )
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    if not records:
        typer.echo("no flow runs")
        return
    for line in flows.list_lines(records):
        typer.echo(line)


@flows_app.command("show")
def show(directory: str = _DIR, flow_id: str = _ID) -> None:
    """One flow run: its steps done (machines, times), its hops and their states, its error."""
    from sl2s.runtime import flows

    try:
        lines = flows.show_lines(directory, flow_id)
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    for line in lines:
        typer.echo(line)


@flows_app.command("resume")
def resume(
    directory: str = _DIR,
    flow_id: str = _ID,
    secrets: list[str] = typer.Argument(
        None,
        metavar="[SECRET=VALUE]...",
        help="The run's secret fields (never stored), when a step still to run needs them.",
    ),
    remote: bool = typer.Option(
        False,
        "--remote",
        help="Hop over HTTP to machines already running (sl2s up / sl2s serve), as sl2s run "
        "--remote does; by default every machine runs in this process.",
    ),
) -> None:
    """Run a failed or interrupted flow again from its entry, under the same id: steps whose
    completion was recorded are not run again; the others run (the failed one first)."""
    from sl2s.runtime import flows
    from sl2s.runtime.story_print import shown_context

    try:
        if remote:
            from sl2s.runtime.transport.http.sender import use_http

            use_http(directory)
        resumed = flows.prepare_resume(directory, flow_id, secrets or [])
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    except Exception as error:  # noqa: BLE001 - the user's code failed to import
        typer.echo(
            f"sl2s: {directory}: importing the system failed: {type(error).__name__}: {error}",
            err=True,
        )
        raise typer.Exit(1) from None
    from sl2s.runtime import hooks
    from sl2s.runtime.core.stdmask import masked_std_streams
    from sl2s.runtime.story_print import StoryPrinter

    story = StoryPrinter(
        typer.echo
    )  # the steps that run now (replayed ones write nothing)
    hooks.subscribe(story)
    try:
        with masked_std_streams():  # what steps print: their run's secrets masked
            result = flows.run_resumed(resumed)
    except Sl2sError as error:  # StepFailed, HopFailed, WiringError: it failed again
        report(error)
        raise typer.Exit(1) from None
    finally:
        hooks.unsubscribe(story)
    entry = resumed.entry
    context = shown_context(
        result, entry.machine.secret_names(entry.flow), resumed.fields
    )
    typer.echo(
        f"flow run {resumed.record.correlation_id} ('{entry.flow}') done "
        f"({resumed.replayable} recorded step(s) replayed); context: {context}"
    )


@flows_app.command("cancel")
def cancel(directory: str = _DIR, flow_id: str = _ID) -> None:
    """Mark a flow run cancelled: its further hops are refused, it cannot be resumed."""
    from sl2s.runtime import flows

    try:
        record = flows.cancel(directory, flow_id)
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    typer.echo(f"flow run {record.correlation_id} ('{record.flow}') cancelled")


@flows_app.command("prune")
def prune(
    directory: str = _DIR,
    older_than: str = typer.Option(
        ...,
        "--older-than",
        callback=checked(_age),
        help="Flows with no progress for this long: 90s, 10m, 2h, 7d.",
    ),
    states: list[State] = typer.Option(
        None,
        "--state",
        help="Only flows in this state (repeatable); default: completed and cancelled.",
    ),
) -> None:
    """Delete old flow runs and their steps from the store (the store also expires completed
    and cancelled ones by itself, 7 days after they ended)."""
    from sl2s.runtime import flows

    try:
        count = flows.prune(directory, older_than, [s.value for s in states or ()])
    except Sl2sError as error:
        report(error)
        raise typer.Exit(1) from None
    typer.echo(f"{count} flow run(s) deleted")
