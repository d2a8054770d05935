"""`sl2s generate` as a function: the orchestration the CLI delegates to.

`run_generate(plan, out, check=..., diff=...)` reads the tree through a `Session`, takes the
no-op fast path when nothing changed, otherwise calls the pure core, and then either reports the
diff (`diff`), reports stale files (`check`), or writes the changes, seeds the cache and counts
what changed. It returns a `GenerateReport`: the lines to print, in order and by stream, and the
exit status. User mistakes raise `Sl2sError` (the CLI prints them, exit 1).

Lines are also handed to `emit` as they are produced, so a shell that prints them as they come
shows the same output, in the same order, as before an error that ends the run half-way.

Heavy imports (the core, the plan reader, the writer) happen inside the functions: the no-op fast
path must stay cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sl2s.diagnostics import Diagnostic, Sl2sError


@dataclass(frozen=True)
class Line:
    """One thing to print: `text` to stdout (or stderr when `err`), a newline after it when `nl`."""

    text: str
    err: bool = False
    nl: bool = True


Emit = Callable[[Line], None]


@dataclass
class Report:
    """What a command has to print (in order) and its exit status."""

    lines: list[Line] = field(default_factory=list)
    exit_code: int = 0
    emit: Emit | None = field(default=None, repr=False, compare=False)

    def say(self, text: str, *, err: bool = False, nl: bool = True) -> None:
        line = Line(text, err, nl)
        self.lines.append(line)
        if self.emit is not None:
            self.emit(line)

    def _stream(self, err: bool) -> str:
        return "".join(
            line.text + ("\n" if line.nl else "")
            for line in self.lines
            if line.err == err
        )

    @property
    def stdout(self) -> str:
        return self._stream(False)

    @property
    def stderr(self) -> str:
        return self._stream(True)


@dataclass
class GenerateReport(Report):
    """`up_to_date`: the fast path found nothing to do. `counts`: created/updated/removed/unchanged
    files after a write (empty otherwise). `stale`: how many files `--check` found stale.
    """

    up_to_date: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    stale: int = 0


def plan_ref(plan: Path, out: Path) -> str:
    """How the generated tree names the plan: its path relative to the output directory."""
    try:
        ref = os.path.relpath(plan.resolve(), out.resolve())
    except ValueError:  # another drive on Windows
        ref = plan.name
    return Path(ref).as_posix()


def tree_label(out: Path) -> str:
    """How messages name the output directory: its path with one trailing `/`."""
    return out.as_posix().rstrip("/") + "/"


def run_generate(
    plan: Path,
    out: Path,
    *,
    check: bool = False,
    diff: bool = False,
    emit: Emit | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateReport:
    """Generate (or bring up to date) the tree `out` from `plan`; with `check` or `diff` write
    nothing (`diff` wins over `check` when there is something to do). `progress(done, total)`:
    the machines whose files are rendered."""
    from sl2s.generate.session import Session

    report = GenerateReport(emit=emit)
    label = tree_label(out)
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
        report.up_to_date = True
        for message in messages:
            report.say(message, err=True)
        if check:
            report.say(f"{label} is up to date with {shown}")
        elif not diff:
            report.say(f"{label}: up to date, nothing written")
        return report
    _generate(
        report, plan, out, label, shown, ref, session, plan_bytes, check, diff, progress
    )
    return report


def _generate(
    report,
    plan,
    out,
    label,
    shown,
    ref,
    session,
    plan_bytes,
    check,
    show_diff,
    progress,
):
    from sl2s.generate.core import generate as build
    from sl2s.generate.lock import read_origins
    from sl2s.generate.writer import apply, diff, old_lock, plan_changes
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
        origins=read_origins(old_lock(out)),
        progress=progress,
    )
    changes = plan_changes(out, generation)
    messages = ["warning: " + orphan.message(label) for orphan in generation.orphans]
    for message in messages:
        report.say(message, err=True)
    if show_diff:
        report.say(diff(changes, label), nl=False)
        return
    if check:
        for change in changes:
            report.say(f"stale: {label}{change.path} ({change.kind})")
        report.stale = len(changes)
        if changes:
            report.say(
                f"{len(changes)} stale file(s): run `sl2s generate {shown}`", err=True
            )
            report.exit_code = 1
            return
        report.say(f"{label} is up to date with {shown}")
        return
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
        report.say(f"stub: {label}{path}: {step_id}")
    counts = {
        k: sum(1 for c in changes if c.kind == k)
        for k in ("create", "update", "remove")
    }
    touched = {c.path for c in changes}
    counts["unchanged"] = sum(1 for f in generation.files if f.path not in touched)
    report.counts = counts
    report.say(
        f"{label}: {counts['create']} created, {counts['update']} updated, "
        f"{counts['remove']} removed, {counts['unchanged']} unchanged"
    )
