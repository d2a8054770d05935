"""`sl2s story`, `sl2s patterns`, `sl2s incidents list|show|errors`: parse, delegate, print, exit."""

from __future__ import annotations

from enum import Enum

import typer

from sl2s.cli.app import app, checked, sub_app, usage, working

# (sl2s.observe.mining's defaults written out: importing it here would load sl2s.observe, ~12 ms,
# on every command's start; tests/test_cli_terminal.py checks that they agree)
MINING_DEFAULTS = {
    "similarity": "0.8",
    "depth": "5",
    "masks": "url,date,uuid,ip,hex,hexid,hostport,host,number,digits",
    "mask names": "date, url, uuid, ip, hex, hexid, host, path, hostport, number, digits",
}

incidents_app = sub_app(
    "incidents",
    "Incidents written by the flight recorder (from a log dir, or a running machine's URL).",
)
app.add_typer(incidents_app, name="incidents")


class StoryFormat(str, Enum):
    text = "text"
    markdown = "markdown"


class PatternsFormat(str, Enum):
    text = "text"
    markdown = "markdown"
    json = "json"


@app.command("story")
def story_command(
    logs: list[str] = typer.Argument(
        ..., help="Event files (.jsonl/.jsonl.gz) or log directories of any machines."
    ),
    correlation_id: str | None = typer.Option(
        None, "--correlation-id", help="The run to tell."
    ),
    last: bool = typer.Option(
        False, "--last", help="The most recent run (the default)."
    ),
    failed: bool = typer.Option(
        False, "--failed", help="The most recent run that failed."
    ),
    event: str | None = typer.Option(
        None, "--event", help="The run that contains this event id."
    ),
    fmt: StoryFormat = typer.Option(
        StoryFormat.text,
        "--format",
        "-f",
        case_sensitive=False,
        help="text or markdown.",
    ),
) -> None:
    """Tell one flow run across all machines, in causal order: steps, hops, durations, the fields
    each step saw, where it stopped; event ids, or console links when its URL is configured
    (SL2S_CONSOLE_URL or [console] url in sl2s.toml)."""
    from sl2s.console.settings import load
    from sl2s.observe.story import Selection, tell

    chosen = sum(bool(x) for x in (correlation_id, last, failed, event))
    if chosen > 1:
        usage("choose one of --correlation-id, --last, --failed, --event")
    with working("reading the events") as update:
        text, _failed = tell(
            logs,
            Selection(
                correlation_id=correlation_id,
                last=last or not chosen,
                failed=failed,
                event_id=event,
            ),
            fmt.value,
            load(logs).url,
            progress=update,
        )
    typer.echo(text, nl=False)


def _similarity(value: float) -> None:
    from sl2s.observe.mining import MiningOptions

    MiningOptions(similarity=value).check()


def _depth(value: int) -> None:
    from sl2s.observe.mining import MiningOptions

    MiningOptions(depth=value).check()


def _masks(value: str) -> None:
    from sl2s.observe.mining import MiningOptions, parse_masks

    MiningOptions(masks=parse_masks(value)).check()


def _mask_regex(values: list[str]) -> None:
    from sl2s.observe.mining import MiningOptions

    MiningOptions(extra_masks=tuple(values)).check()


@app.command("patterns")
def patterns_command(
    args: list[str] = typer.Argument(
        ...,
        metavar="PLAN LOGS… | --text FILE…",
        help="The plan file, then event files or log directories; with --text, plain-text "
        "log files (or directories of *.log, *.txt).",
    ),
    text: bool = typer.Option(
        False,
        "--text",
        help="The files are plain-text logs (one message per line; timestamps, levels and "
        "logger names in front are stripped); no plan.",
    ),
    prefix: str | None = typer.Option(
        None,
        "--prefix",
        help="With --text: a regex matched at the start of each line and stripped (its group "
        "'message', when it has one, is the message; its group 'level' the level).",
    ),
    new_since: str | None = typer.Option(
        None,
        "--new-since",
        help="State file: report only patterns new since the run that wrote it (updated).",
    ),
    fmt: PatternsFormat = typer.Option(
        PatternsFormat.text,
        "--format",
        "-f",
        case_sensitive=False,
        help="text, markdown, or json (one object per pattern: template, count, member "
        "lines as FILE:LINE).",
    ),
    similarity: float | None = typer.Option(
        None,
        "--similarity",
        callback=checked(_similarity),
        help=f"Template similarity threshold, (0, 1] (default {MINING_DEFAULTS['similarity']}).",
    ),
    depth: int | None = typer.Option(
        None,
        "--depth",
        callback=checked(_depth),
        help=f"Parse tree depth, 3-12 (default {MINING_DEFAULTS['depth']}).",
    ),
    masks: str | None = typer.Option(
        None,
        "--masks",
        callback=checked(_masks),
        help="Comma-separated masks applied before mining: "
        f"{MINING_DEFAULTS['mask names']} (default: {MINING_DEFAULTS['masks']}; "
        "'none' for none).",
    ),
    mask_regex: list[str] = typer.Option(
        [],
        "--mask-regex",
        callback=checked(_mask_regex),
        help="A regex whose matches are masked too (repeatable).",
    ),
) -> None:
    """Report events the plan does not predict, or the patterns of plain-text logs (--text),
    grouped and counted. Exit 1 when anything is new."""
    from sl2s.observe.mining import MiningOptions, parse_masks
    from sl2s.observe.patterns import run_patterns

    if text:
        plan, logs = None, args
    elif len(args) < 2:
        usage(
            "name a plan and event files or log directories (or: sl2s patterns --text FILE…)"
        )
    else:
        plan, logs = args[0], args[1:]
    if prefix is not None and not text:
        usage("--prefix applies to plain-text logs: add --text")
    options = None
    if similarity is not None or depth is not None or masks is not None or mask_regex:
        defaults = MiningOptions()
        options = MiningOptions(
            similarity=defaults.similarity if similarity is None else similarity,
            depth=defaults.depth if depth is None else depth,
            masks=parse_masks(masks),
            extra_masks=tuple(mask_regex),
        )
    with working("finding the patterns") as update:
        report, new = run_patterns(
            plan,
            logs,
            new_since,
            fmt.value,
            text=text,
            prefix=prefix,
            options=options,
            progress=update,
        )
    typer.echo(report, nl=False)
    raise typer.Exit(1 if new else 0)


_URL_HELP = (
    "A running machine: its base URL (http://host:port) or its incidents endpoint "
    "(…/sl2s/v1/incidents). Requests are signed with SL2S_HOP_KEY."
)
_DIR_HELP = (
    "With --url: the generated tree DIR that `sl2s up` serves; its DIR/.sl2s/hop.key signs "
    "the requests when SL2S_HOP_KEY is not set (default: the tree whose .sl2s/up.toml lists "
    "the URL, the current directory or one below it)."
)


@incidents_app.command("list")
def incidents_list(
    log_dir: str | None = typer.Argument(
        None,
        help="The log directory (default: $SL2S_LOG_DIR, else services/.sl2s/logs).",
    ),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    since: str | None = typer.Option(
        None, "--since", help="Only incidents after this incident id."
    ),
    directory: str | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """List incidents, oldest first."""
    from sl2s.observe import incidents

    if url:
        if log_dir:
            usage("give either LOG_DIR or --url, not both")
        summaries = incidents.fetch_remote(
            url, since=since, keys=_keys(directory, [url])
        )
    else:
        summaries = [
            i.summary() for i in incidents.list_incidents(_need(log_dir), since)
        ]
    typer.echo(incidents.render_list(summaries), nl=False)


@incidents_app.command("show")
def incidents_show(
    args: list[str] = typer.Argument(
        ...,
        metavar="[LOG_DIR] INCIDENT_ID",
        help="Log directory (omit with --url) and incident id (or a unique part of it).",
    ),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    directory: str | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Show one incident: header, links, and its events with the triggers marked."""
    from sl2s.observe import incidents

    if url:
        if len(args) != 1:
            usage("with --url, name only the incident id")
        incident = incidents.fetch_remote(
            url, incident_id=args[0], keys=_keys(directory, [url])
        )
    else:
        if len(args) not in (1, 2):
            usage("name [LOG_DIR] INCIDENT_ID")
        incident = incidents.find_incident(
            _need(args[0] if len(args) == 2 else None), args[-1]
        )
    typer.echo(incidents.render_show(incident), nl=False)


@incidents_app.command("errors")
def incidents_errors(
    log_dir: str | None = typer.Argument(
        None,
        help="The log directory (default: $SL2S_LOG_DIR, else services/.sl2s/logs).",
    ),
    url: str | None = typer.Option(None, "--url", help=_URL_HELP),
    directory: str | None = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Errors grouped by fingerprint (exception type + in-app frames), with count and first/last seen."""
    from sl2s.observe import incidents

    if url:
        if log_dir:
            usage("give either LOG_DIR or --url, not both")
        groups = incidents.fetch_remote_errors(url, keys=_keys(directory, [url]))
    else:
        groups = incidents.error_groups(incidents.list_incidents(_need(log_dir)))
    typer.echo(incidents.render_errors(groups), nl=False)


def _keys(directory: str | None, urls: list[str]) -> tuple:
    """The hop key(s) to sign reads with (sl2s.observe.remote_keys)."""
    from sl2s.observe.remote_keys import read_keys

    return read_keys(urls, directory)


def _need(log_dir: str | None) -> str:
    """The log dir named, else the runtime's default: `$SL2S_LOG_DIR`, else `services/.sl2s/logs`."""
    import os

    return (
        log_dir
        or os.environ.get("SL2S_LOG_DIR")
        or os.path.join("services", ".sl2s", "logs")
    )
