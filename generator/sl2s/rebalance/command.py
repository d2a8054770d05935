"""`sl2s rebalance` as a function: the orchestration the CLI delegates to.

`run_rebalance(plan, out, ...)` finishes an interrupted rebalance, reads the plan, refuses a tree
with uncommitted changes (unless `dry_run` or `allow_dirty`), calls the pure cores (rebalance, then
the generator for the wiring), validates every changed user module, and then either reports the
diff and a summary (`dry_run`) or applies everything through the journal (all-or-nothing) and
saves the generator's cache. It returns a `RebalanceReport` (lines to print, in order and by
stream, and the exit status); user mistakes raise `Sl2sError`. Lines are also handed to `emit` as
they are produced (see sl2s.generate.command).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.generate.command import Emit, Report, plan_ref, tree_label
from sl2s.rebalance import journal


@dataclass
class RebalanceReport(Report):
    """`changed`: files changed (written, or that would change in a dry run); `moved`/`renamed`:
    steps moved / renamed."""

    changed: int = 0
    moved: int = 0
    renamed: int = 0


def dirty(out: Path) -> list[str] | None:
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


def summary(outcome, label: str) -> list[str]:
    """The lines that say what a rebalance `outcome` did (or would do)."""
    lines: list[str] = []
    for m in outcome.moves:
        r = m.report
        lines.append(
            f"moved {m.flow}/{m.id}: {m.function}() {label}{m.source} -> {label}{m.dest}"
        )
        for shared in m.shared:
            names = ", ".join((*shared.functions, *shared.helpers))
            lines.append(
                f"  shared: {names} moved to {shared.dest} (used on both machines); "
                f"{label}{m.source} imports it: {'; '.join(shared.shared_imports)}"
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
            f"renamed {r.flow}/{r.old_id} -> {r.new_id}: @step of {r.function}() "
            f"in {label}{r.path} now says {r.new_template!r}"
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


def validate(changes, before: dict[str, str], label: str) -> None:
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


def _refuse_dirty(out: Path, label: str) -> None:
    lines = dirty(out)
    if lines:
        where = label.rstrip("/")
        raise Sl2sError(
            [
                Diagnostic(
                    where,
                    0,
                    "has uncommitted changes; commit them first or pass --allow-dirty",
                )
            ]
            + [Diagnostic(where, 0, "  " + line) for line in lines[:20]]
        )


def run_rebalance(
    plan: Path,
    out: Path,
    *,
    dry_run: bool = False,
    allow_dirty: bool = False,
    force_partial: bool = False,
    emit: Emit | None = None,
) -> RebalanceReport:
    """Move existing step code to the machines the plan now names, then regenerate the wiring."""
    from sl2s.generate.core import generate as build
    from sl2s.generate.session import Session
    from sl2s.generate.writer import Change, diff, old_lock, plan_changes
    from sl2s.plan import read_plan
    from sl2s.rebalance.core import rebalance

    report = RebalanceReport(emit=emit)
    label = tree_label(out)
    recovered = journal.recover(out)
    if recovered:
        report.say(f"{label}: {recovered}", err=True)
    plan_data = read_plan(plan)  # a bad plan is reported before anything about the tree
    if not dry_run and not allow_dirty:
        _refuse_dirty(out, label)
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
        origins=outcome.origins,
    )
    changes = {c.path: c for c in plan_changes(out, generation)}
    for path in outcome.changed:
        if path not in changes:
            old = modules.get(path)
            new = outcome.modules.get(path)
            changes[path] = Change(
                path,
                None if old is None else old.encode("utf-8"),
                None if new is None else new.encode("utf-8"),
            )
    ordered = [changes[p] for p in sorted(changes)]
    validate(ordered, modules, label)
    warnings = ["warning: " + orphan.message(label) for orphan in generation.orphans]
    lines = summary(outcome, label) + warnings
    report.moved, report.renamed = len(outcome.moves), len(outcome.renames)
    if dry_run:
        report.changed = len(ordered)
        report.say(diff(ordered, label), nl=False)
        for line in lines:
            report.say(line)
        report.say(f"{len(ordered)} file(s) would change (dry run: nothing written)")
        return report
    report.changed = journal.apply(out, {c.path: c.new for c in ordered})
    generated = {f.path: f.content for f in generation.files if f.generated}
    session.save(
        plan.read_bytes(), plan_ref(plan, out), generated, warnings
    )  # the generator's cache
    for line in lines:
        report.say(line)
    report.say(
        f"{label}: {report.changed} file(s) changed, {report.moved} step(s) moved, "
        f"{report.renamed} renamed"
    )
    return report
