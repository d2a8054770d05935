"""`sl2s generate PLAN [--out DIR] [--check] [--diff]`: parse, call the core, print, exit."""

from __future__ import annotations

from pathlib import Path

import typer

from sl2s.cli.app import app


@app.command("generate")
def generate_command(
    plan: Path = typer.Argument(
        ..., help="The plan file (CSV/TSV of request, log, machine)."
    ),
    out: Path = typer.Option(
        Path("services"), "--out", help="Directory of the generated system."
    ),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 if anything is stale."
    ),
    show_diff: bool = typer.Option(
        False, "--diff", help="Print the unified diff; write nothing."
    ),
) -> None:
    """Generate (or bring up to date) the per-machine services of a plan.

    Generated files are rewritten; user-owned flow modules are created once and afterwards only
    get stubs appended for new steps. Nothing is written unless everything renders and validates.
    """
    from sl2s.generate.command import run_generate  # imported late: keeps startup cheap

    report = run_generate(
        plan,
        out,
        check=check,
        diff=show_diff,
        emit=lambda line: typer.echo(line.text, err=line.err, nl=line.nl),
    )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
