"""`sl2s generate PLAN [--out DIR] [--check] [--diff] [-v]`: parse, call the core, print, exit."""

from __future__ import annotations

from pathlib import Path

import typer

from sl2s.cli.app import app, paint, working


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
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="List every new step stub (default: how many, in the summary).",
    ),
) -> None:
    """Generate (or bring up to date) the per-machine services of a plan.

    Generated files are rewritten; user-owned flow modules are created once and afterwards only
    get stubs appended for new steps. Nothing is written unless everything renders and validates.
    Prints a summary (files created, updated, removed; new stubs); -v lists the new stubs.
    """
    from sl2s.generate.command import run_generate  # imported late: keeps startup cheap

    stubs: set[str] = set()
    hidden = 0

    held: list = (
        []
    )  # printed once the progress display is gone (also when the run fails)

    def emit(line) -> None:
        nonlocal hidden
        if not verbose and not line.err and line.text.startswith("stub: "):
            hidden += 1
            stubs.add(line.text[len("stub: ") :].rpartition(": ")[0])
            return
        held.append(line)

    try:
        with working(f"generating {out}/ from {plan}") as update:
            report = run_generate(
                plan, out, check=check, diff=show_diff, emit=emit, progress=update
            )
    finally:
        for line in held:
            text = paint(line.text, err=True, fg="red") if line.err else line.text
            typer.echo(text, err=line.err, nl=line.nl)
    if not out.resolve().name.isidentifier() and not report.exit_code:
        name = out.resolve().name
        suggestion = ("s" if name[:1].isdigit() else "") + "".join(
            c if c.isalnum() else "_" for c in name
        )
        typer.echo(
            f"warning: {out}: `sl2s run` and `sl2s up` need a directory name that is a Python "
            f"identifier (e.g. {suggestion})",
            err=True,
        )
    if hidden:
        typer.echo(
            f"{hidden} new step stub(s) to fill in, in {len(stubs)} file(s) (-v lists them)"
        )
    if report.exit_code:
        raise typer.Exit(report.exit_code)
