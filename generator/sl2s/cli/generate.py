"""`sl2s generate PLAN [--out DIR] [--check] [--diff]`: parse, call the core, print, exit."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from sl2s.cli.app import app
from sl2s.diagnostics import Diagnostic, Sl2sError


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
    """Generate (or bring up to date) the per-machine services of a plan.

    Generated files are rewritten; user-owned flow modules are created once and afterwards only
    get stubs appended for new steps. Nothing is written unless everything renders and validates.
    """
    from sl2s.generate.session import Session

    label = out.as_posix().rstrip("/") + "/"
    shown = plan.as_posix()
    try:
        plan_bytes = plan.read_bytes()
    except OSError:
        plan_bytes = None  # read_plan reports it as FILE: message
    ref = plan_ref(plan, out)
    session = Session(out)
    inputs = session.inputs_digest(plan_bytes, ref) if plan_bytes is not None else None
    messages = session.unchanged(inputs) if inputs is not None else None
    if (
        messages is not None
    ):  # same plan, same user modules, every file as left: nothing to do
        for message in messages:
            typer.echo(message, err=True)
        if check:
            typer.echo(f"{label} is up to date with {shown}")
        elif not show_diff:
            typer.echo(f"{label}: up to date, nothing written")
        raise typer.Exit(0)
    _generate(plan, label, ref, session, plan_bytes, check, show_diff, out, shown)


def _generate(
    plan, label, ref, session, plan_bytes, check, show_diff, out, shown
) -> None:
    from sl2s.generate.core import generate as build
    from sl2s.generate.writer import apply, diff, plan_changes
    from sl2s.plan import read_plan

    plan_data = read_plan(plan)
    if plan_bytes is None:  # pragma: no cover - read_plan raised already
        raise Sl2sError(Diagnostic(shown, 0, "cannot read the file"))
    generation = build(
        plan_data,
        plan_ref=ref,
        user_modules=session.user_modules(),
        scan=session.scan,
        check=session.black,
        prefix=label,
    )
    changes = plan_changes(out, generation)
    messages = ["warning: " + orphan.message(label) for orphan in generation.orphans]
    for message in messages:
        typer.echo(message, err=True)
    if show_diff:
        typer.echo(diff(changes, label), nl=False)
        raise typer.Exit(0)
    if check:
        for change in changes:
            typer.echo(f"stale: {label}{change.path} ({change.kind})")
        if changes:
            typer.echo(
                f"{len(changes)} stale file(s): run `sl2s generate {shown}`", err=True
            )
            raise typer.Exit(1)
        typer.echo(f"{label} is up to date with {shown}")
        raise typer.Exit(0)
    try:
        apply(out, changes)
    except OSError as error:
        where = error.filename or out
        raise Sl2sError(
            Diagnostic(str(where), 0, f"cannot write: {error.strerror}")
        ) from None
    contents = {f.path: f.content for f in generation.files}
    for path, steps in generation.created:
        session.seed(contents[path], steps)
    generated = {f.path: f.content for f in generation.files if f.generated}
    written = {f.path: f.content for f in generation.files if not f.generated}
    session.save(plan_bytes, ref, generated, messages, written)
    for path, step_id in generation.added:
        typer.echo(f"stub: {label}{path}: {step_id}")
    counts = {
        k: sum(1 for c in changes if c.kind == k)
        for k in ("create", "update", "remove")
    }
    touched = {c.path for c in changes}
    unchanged = sum(1 for f in generation.files if f.path not in touched)
    typer.echo(
        f"{label}: {counts['create']} created, {counts['update']} updated, "
        f"{counts['remove']} removed, {unchanged} unchanged"
    )
