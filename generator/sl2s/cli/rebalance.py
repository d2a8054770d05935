"""`sl2s rebalance PLAN [--out DIR] [--dry-run] [--allow-dirty] [--force-partial]`.

Parse, refuse a dirty tree, call the pure cores (rebalance, then the generator for the wiring),
validate, print, and apply everything through the journal (all-or-nothing).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

from sl2s.cli.app import app
from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.rebalance import journal


def _dirty(out: Path) -> list[str] | None:
    """Uncommitted changes under `out` (git status lines), or None when git cannot tell."""
    if not out.exists():
        return []
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", "."],
            cwd=out,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines() if line.strip()]


def recover_hook() -> None:
    """Run by the app callback before every command: finish an interrupted rebalance (journal)."""
    import sys

    for done in journal.recover_from_argv(sys.argv[1:]):
        typer.echo(done, err=True)


def summary(outcome, label: str) -> list[str]:
    lines: list[str] = []
    for m in outcome.moves:
        r = m.report
        lines.append(
            f"moved {m.flow}/{m.id}: {m.function}() {label}{m.source} -> {label}{m.dest}"
        )
        if r.helpers:
            lines.append(f"  carried helpers: {', '.join(r.helpers)}")
        if r.carried_imports:
            lines.append(f"  carried imports: {'; '.join(r.carried_imports)}")
        if r.cross_imports:
            lines.append(f"  new cross-machine imports: {'; '.join(r.cross_imports)}")
        if r.removed_imports:
            lines.append(
                f"  imports no longer needed in {label}{m.source}: {', '.join(r.removed_imports)}"
            )
        if r.kept_imports:
            lines.append(
                f"  unused now, kept (comments attached): {', '.join(r.kept_imports)}"
            )
    for r in outcome.renames:
        lines.append(
            f"renamed {r.flow}/{r.old_id} -> {r.new_id}: @step of {r.function}() in {label}{r.path} "
            f"now says {r.new_template!r}"
        )
    for note in outcome.out_of_scope:
        lines.append("out of scope: " + note)
    for note in outcome.emptied:
        lines.append(note)
    for machine in outcome.new_machines:
        lines.append(f"new machine {machine!r}: package {label}{machine}/ created")
    for d in outcome.failed:
        lines.append(f"not moved: {d}")
    return lines


def _validate(changes, before: dict[str, str], label: str) -> None:
    """Every changed user module parses, and stays black-stable when it was black-stable."""
    import ast

    import black

    mode = black.Mode()
    problems = []
    for change in changes:
        if change.new is None or not change.path.endswith(".py"):
            continue
        if change.path.rpartition("/")[2] in ("__init__.py", "_wiring.py"):
            continue  # generated: the generator validated it
        text = change.new.decode("utf-8")
        try:
            ast.parse(text)
        except SyntaxError as error:
            problems.append(
                Diagnostic(
                    label + change.path,
                    error.lineno or 0,
                    f"sl2s produced invalid Python: {error.msg}",
                )
            )
            continue
        old = before.get(change.path)
        if old is None or _black_stable(text, mode):
            continue
        if _black_stable(old, mode):
            problems.append(
                Diagnostic(
                    label + change.path,
                    0,
                    "sl2s would leave this black-formatted module unformatted",
                )
            )
    if problems:
        raise Sl2sError(problems)


def _black_stable(text: str, mode) -> bool:
    import black

    try:
        return black.format_str(text, mode=mode) == text
    except (
        Exception
    ):  # noqa: BLE001 - black rejects some valid code; then there is nothing to keep
        return False


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
    from sl2s.cli.generate import plan_ref
    from sl2s.generate.core import generate as build
    from sl2s.generate.session import Session
    from sl2s.generate.writer import Change, diff, old_lock, plan_changes
    from sl2s.plan import read_plan
    from sl2s.rebalance.core import rebalance

    label = out.as_posix().rstrip("/") + "/"
    recovered = journal.recover(out)
    if recovered:
        typer.echo(f"{label}: {recovered}", err=True)
    plan_data = read_plan(plan)  # a bad plan is reported before anything about the tree
    if not dry_run and not allow_dirty:
        dirty = _dirty(out)
        if dirty:
            raise Sl2sError(
                [
                    Diagnostic(
                        label.rstrip("/"),
                        0,
                        "has uncommitted changes; commit them first or pass --allow-dirty",
                    )
                ]
                + [Diagnostic(label.rstrip("/"), 0, "  " + line) for line in dirty[:20]]
            )
    session = Session(out)
    modules = session.user_modules()
    outcome = rebalance(
        plan_data,
        user_modules=modules,
        lock=old_lock(out),
        system=out.resolve().name or "services",
        scan=session.scan,
        prefix=label,
        force_partial=force_partial,
    )
    generation = build(
        plan_data,
        plan_ref=plan_ref(plan, out),
        user_modules=outcome.modules,
        scan=session.scan,
        check=session.black,
        prefix=label,
    )
    changes = {c.path: c for c in plan_changes(out, generation)}
    for path in outcome.changed:
        if path not in changes:
            old = modules.get(path)
            changes[path] = Change(
                path,
                None if old is None else old.encode("utf-8"),
                outcome.modules[path].encode("utf-8"),
            )
    ordered = [changes[p] for p in sorted(changes)]
    _validate(ordered, modules, label)
    lines = summary(outcome, label)
    for orphan in generation.orphans:
        lines.append("warning: " + orphan.message(label))
    if dry_run:
        typer.echo(diff(ordered, label), nl=False)
        for line in lines:
            typer.echo(line)
        typer.echo(f"{len(ordered)} file(s) would change (dry run: nothing written)")
        raise typer.Exit(0)
    written = journal.apply(out, {c.path: c.new for c in ordered})
    generated = {f.path: f.content for f in generation.files if f.generated}
    warnings = ["warning: " + orphan.message(label) for orphan in generation.orphans]
    session.save(
        plan.read_bytes(), plan_ref(plan, out), generated, warnings
    )  # the generator's cache
    for line in lines:
        typer.echo(line)
    typer.echo(
        f"{label}: {written} file(s) changed, {len(outcome.moves)} step(s) moved, {len(outcome.renames)} renamed"
    )
