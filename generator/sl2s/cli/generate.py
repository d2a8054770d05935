"""`sl2s generate PLAN [--out DIR] [--check] [--diff]`: parse, call the core, print, exit."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from sl2s.cli.app import app
from sl2s.generate.core import generate as build
from sl2s.generate.session import Session
from sl2s.generate.writer import apply, diff, plan_changes


def plan_ref(plan: Path, out: Path) -> str:
    """How the generated tree names the plan: its path relative to the output directory."""
    try:
        ref = os.path.relpath(plan.resolve(), out.resolve())
    except ValueError:  # another drive on Windows
        ref = plan.name
    return Path(ref).as_posix()


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
    """Generate (or bring up to date) the per-machine services of a plan."""
    from sl2s.plan import read_plan

    label = out.as_posix().rstrip("/") + "/"
    plan_data = read_plan(plan)
    session = Session(out)
    generation = build(
        plan_data,
        plan_ref=plan_ref(plan, out),
        user_modules=session.user_modules(),
        scan=session.scan,
        check=session.black,
        prefix=label,
    )
    changes = plan_changes(out, generation)
    for orphan in generation.orphans:
        typer.echo("warning: " + orphan.message(label), err=True)
    if show_diff:
        typer.echo(diff(changes, label), nl=False)
        raise typer.Exit(0)
    if check:
        for change in changes:
            typer.echo(f"stale: {label}{change.path} ({change.kind})")
        if changes:
            typer.echo(
                f"{len(changes)} stale file(s): run `sl2s generate {plan.as_posix()}`",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{label} is up to date with {plan.as_posix()}")
        raise typer.Exit(0)
    apply(out, changes)
    session.save()
    for path, step_id in generation.added:
        typer.echo(f"stub: {label}{path}: {step_id}")
    counts = {
        kind: sum(1 for c in changes if c.kind == kind)
        for kind in ("create", "update", "remove")
    }
    typer.echo(
        f"{label}: {counts['create']} created, {counts['update']} updated, "
        f"{counts['remove']} removed, {len(generation.files) - counts['create'] - counts['update']} unchanged"
    )
