"""`sl2s watch`: parse, delegate to sl2s.observe.watch, exit."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from sl2s.cli.app import app


@app.command("watch")
def watch_command(
    logs: list[str] = typer.Argument(
        None,
        help="Log directories or files to follow: *.jsonl are sl2s events, other files "
        "plain-text logs.",
    ),
    url: list[str] = typer.Option(
        [],
        "--url",
        help="A served machine to follow (repeatable); signed with SL2S_HOP_KEY.",
    ),
    directory: str | None = typer.Option(
        None,
        "--dir",
        help="With --url: the tree `sl2s up DIR` serves (its hop key signs).",
    ),
    plan: str | None = typer.Option(
        None,
        "--plan",
        help="The plan: step events it does not predict are patterns too.",
    ),
    text: bool = typer.Option(
        False,
        "--text",
        help="Directories' *.log and *.txt files are followed too, as text.",
    ),
    prefix: str | None = typer.Option(
        None,
        "--prefix",
        help="Regex of the prefix of plain-text lines (see sl2s patterns).",
    ),
    webhook: str | None = typer.Option(
        None,
        "--webhook",
        help="POST each announcement here (Slack-compatible JSON), signed with HMAC-SHA256 "
        "when SL2S_WATCH_SECRET is set.",
    ),
    command: str | None = typer.Option(
        None,
        "--command",
        help="Run this for each announcement (its JSON on standard input).",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Do not print announcements."
    ),
    state: str | None = typer.Option(
        None,
        "--state",
        help="Where the error store and the seen patterns are kept (default: the first log "
        "directory; with --url only: .sl2s/watch).",
    ),
    rate: float = typer.Option(
        30.0, "--rate", help="At most this many announcements a minute."
    ),
    settle: float = typer.Option(
        2.0,
        "--settle",
        help="Seconds after a run's last event before it counts as stopped.",
    ),
    announce_existing: bool = typer.Option(
        False, "--announce-existing", help="Announce what is already in the logs too."
    ),
    from_end: bool = typer.Option(
        False,
        "--from-end",
        help="Start at the end of the logs: what they hold already is neither read nor learnt.",
    ),
    duration: float | None = typer.Option(
        None, "--duration", help="Stop after this many seconds (default: until Ctrl-C)."
    ),
) -> None:
    """Follow logs and served machines live; announce a new error group, a reactivated one, a new
    log pattern, a flow that stopped early — on the terminal, to a webhook and/or a command.
    """
    from sl2s.cli.observe import _keys
    from sl2s.observe.revision import _toml
    from sl2s.observe.watch import WatchConfig, run_watch

    secret = os.environ.get("SL2S_WATCH_SECRET")
    links = _toml(Path(directory)).get("links") if directory else None
    run_link = os.environ.get("SL2S_RUN_URL") or (
        links.get("run") if isinstance(links, dict) else None
    )
    if not run_link:  # the console's run page, when the console's address is set
        from sl2s.console import settings as console_settings

        base = console_settings.load([p for p in [directory, *(logs or [])] if p]).url
        run_link = f"{base.rstrip('/')}/run/{{correlation_id}}" if base else None
    code = run_watch(
        WatchConfig(
            paths=list(logs or []),
            urls=list(url),
            keys=_keys(directory, list(url)) if url else (),
            state=state,
            plan=plan,
            text=text,
            prefix=prefix,
            webhook=webhook,
            secret=secret.encode() if secret else None,
            command=command,
            quiet=quiet,
            rate=rate,
            settle=settle,
            announce_existing=announce_existing,
            from_end=from_end,
            run_link=run_link,
            duration=duration,
        ),
        say=lambda line: typer.echo(line),
        warn=lambda line: typer.echo(line, err=True),
    )
    raise typer.Exit(code)
