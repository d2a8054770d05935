"""`sl2s rebalance PLAN [--out DIR] [--dry-run] [--allow-dirty] [--force-partial]`.

Parse, call sl2s.rebalance.command (dirty-tree check, the cores, validation, the journal), print,
exit. Also the app callback's hook that finishes an interrupted rebalance.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sl2s.cli.app import app


@app.command("rebalance")
def rebalance_command(
    plan: Path = typer.Argument(..., help="The plan file."),
    out: Path = typer.Option(
        Path("services"), "--out", help="Directory of the generated system."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the diff and a summary; write nothing."
    ),
    allow_dirty: bool = typer.Option(
        False,
        "--allow-dirty",
        help="Run even if files under DIR have uncommitted changes.",
    ),
    force_partial: bool = typer.Option(
        False,
        "--force-partial",
        help="Apply the moves that are safe and report the others (default: all or nothing).",
    ),
) -> None:
    """Move existing step code to the machines the plan now names, then regenerate the wiring."""
    from sl2s.rebalance.command import (
        run_rebalance,
    )  # imported late: keeps startup cheap

    report = run_rebalance(
        plan,
        out,
        dry_run=dry_run,
        allow_dirty=allow_dirty,
        force_partial=force_partial,
        emit=lambda line: typer.echo(line.text, err=line.err, nl=line.nl),
    )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
