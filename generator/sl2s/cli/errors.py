"""`sl2s errors list|show|resolve|ignore|ack|reopen` and `sl2s deploys record|list`: parse,
delegate to sl2s.observe.errorreport, print, exit."""

from __future__ import annotations

from enum import Enum

import typer

from sl2s.cli.app import app, sub_app

errors_app = sub_app(
    "errors",
    "Error groups and their states (open, acknowledged, ignored, resolved; reactivated).",
)
deploys_app = sub_app(
    "deploys",
    "Deploys: record one from any pipeline, list them.",
)


class ErrorState(str, Enum):
    open = "open"
    acknowledged = "acknowledged"
    ignored = "ignored"
    resolved = "resolved"
    reactivated = "reactivated"


app.add_typer(errors_app, name="errors")
app.add_typer(deploys_app, name="deploys")

_LOG_DIR = typer.Option(
    None,
    "--logs",
    help="The log directory (default: $SL2S_LOG_DIR, else services/.sl2s/logs); the error "
    "store is its errors.sqlite.",
)


@errors_app.command("list")
def errors_list(
    logs: str | None = _LOG_DIR,
    since: str | None = typer.Option(
        None,
        "--since",
        help="Only groups that appeared or came back after this: a time, a deploy id or a "
        "deployed revision. Exit 1 when there are any.",
    ),
    state: ErrorState | None = typer.Option(
        None, "--state", help="Only groups in this state."
    ),
) -> None:
    """Error groups, most recent first, with state, count, where, and suspected deploy."""
    from sl2s.observe.errorreport import list_errors

    text, new = list_errors(logs, since, state.value if state else None)
    typer.echo(text, nl=False)
    raise typer.Exit(1 if new else 0)


@errors_app.command("show")
def errors_show(
    fingerprint: str = typer.Argument(
        ..., help="The group's fingerprint (or its start)."
    ),
    logs: str | None = _LOG_DIR,
) -> None:
    """One group: state, first/last seen, counts by machine, host, revision and environment,
    suspected deploy, frames."""
    from sl2s.observe.errorreport import show_error

    typer.echo(show_error(logs, fingerprint), nl=False)


def _set(fingerprint: str, logs: str | None, state: str, revision: str | None = None):
    from sl2s.observe.errorreport import set_error_state

    typer.echo(set_error_state(logs, fingerprint, state, revision), nl=False)


@errors_app.command("resolve")
def errors_resolve(
    fingerprint: str = typer.Argument(
        ..., help="The group's fingerprint (or its start)."
    ),
    revision: str | None = typer.Option(
        None,
        "--in",
        help="The revision that fixes it (its recurrence there is a regression).",
    ),
    logs: str | None = _LOG_DIR,
) -> None:
    """Mark a group resolved; it reactivates when it occurs again after that."""
    _set(fingerprint, logs, "resolved", revision)


@errors_app.command("ignore")
def errors_ignore(
    fingerprint: str = typer.Argument(
        ..., help="The group's fingerprint (or its start)."
    ),
    logs: str | None = _LOG_DIR,
) -> None:
    """Ignore a group: still counted, never announced."""
    _set(fingerprint, logs, "ignored")


@errors_app.command("ack")
def errors_ack(
    fingerprint: str = typer.Argument(
        ..., help="The group's fingerprint (or its start)."
    ),
    logs: str | None = _LOG_DIR,
) -> None:
    """Acknowledge a group: someone is on it; counted, not announced again."""
    _set(fingerprint, logs, "acknowledged")


@errors_app.command("reopen")
def errors_reopen(
    fingerprint: str = typer.Argument(
        ..., help="The group's fingerprint (or its start)."
    ),
    logs: str | None = _LOG_DIR,
) -> None:
    """Set a group back to open."""
    _set(fingerprint, logs, "open")


@deploys_app.command("record")
def deploys_record(
    directory: str | None = typer.Argument(
        None, help="The generated tree deployed (its sl2s.revision is written)."
    ),
    revision: str | None = typer.Option(
        None,
        "--revision",
        help="The revision deployed (default: SL2S_REVISION, else git).",
    ),
    target: str = typer.Option(
        "", "--target", help="Where it went (a cluster, a host)."
    ),
    environment: str = typer.Option(
        "", "--environment", help="production, staging… (default: $SL2S_ENVIRONMENT)."
    ),
    logs: str | None = _LOG_DIR,
) -> None:
    """Record a deploy made by another pipeline (kept next to the logs, in errors.sqlite)."""
    from sl2s.diagnostics import Sl2sError
    from sl2s.observe.errorreport import record_deploy

    deploy, message = record_deploy(
        directory,
        revision=revision,
        target=target,
        environment=environment,
        log_dir=logs,
    )
    if deploy is None:
        raise Sl2sError(message)
    typer.echo(message)


@deploys_app.command("list")
def deploys_list(logs: str | None = _LOG_DIR) -> None:
    """Recorded deploys, oldest first."""
    from sl2s.observe.errorreport import list_deploys

    typer.echo(list_deploys(logs), nl=False)
