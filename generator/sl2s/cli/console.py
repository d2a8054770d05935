"""`sl2s console`: parse, delegate (sl2s.console.app.serve)."""

from __future__ import annotations

import os

import typer

from sl2s.cli.app import app, usage, working


@app.command("console")
def console_command(
    logs: list[str] = typer.Argument(
        None,
        help="Log directories or event files of any machines (indexed incrementally).",
    ),
    url: list[str] = typer.Option(
        [],
        "--url",
        help="A running machine's base URL (repeatable): its incidents and events are read "
        "over the signed endpoints (SL2S_HOP_KEY, or --dir's key).",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback)."
    ),
    port: int = typer.Option(8700, "--port", help="Port (0: a free one)."),
    token: str | None = typer.Option(
        None,
        "--token",
        help="Required beyond loopback: visitors open the console with ?token=… once "
        "(default: SL2S_CONSOLE_TOKEN).",
    ),
    index: str | None = typer.Option(
        None, "--index", help="The index file (default .sl2s/console.sqlite3)."
    ),
    directory: str | None = typer.Option(
        None,
        "--dir",
        help="With --url: the tree `sl2s up DIR` serves (its hop key signs).",
    ),
    refresh: float = typer.Option(
        2.0,
        "--refresh",
        help="Seconds between index refreshes while serving (0: never).",
    ),
) -> None:
    """A local web page over the events: runs found by field value, a run as a sequence diagram
    and timeline, a link for every event. Prints its address; opens nothing."""
    from sl2s.cli.observe import _keys
    from sl2s.console.app import serve

    if not logs and not url:
        usage("name log directories, event files or --url machines to read")
    serve(
        list(logs or []),
        list(url),
        host,
        port,
        token or os.environ.get("SL2S_CONSOLE_TOKEN") or None,
        index,
        _keys(directory, list(url)) if url else (),
        refresh,
        typer.echo,
        building=lambda: working("indexing the events"),
    )
