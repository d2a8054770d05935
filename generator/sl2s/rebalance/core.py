"""Compare the plan with the code and compute the rebalanced user modules. Pure.

Steps are found in user modules by their `@step(...)` decorator (the generator's `scan_module`);
the previous plan comes from the lock (`steps`, and `plan_lines` for the order of each flow).

- A step whose function sits on another machine than the plan now says moves from its module to
  `<new machine>/<flow>.py` (created from the generator's user-module header when missing), placed
  before the first step of that flow that comes later in the plan.
- A renamed log line — a step of the previous plan replaced at the same place in its flow (aligned
  with difflib over the flow's step ids), or the same `id` with a new text — gets its decorator
  updated in place.
- A step that left one flow for another is reported as out of scope (move it by hand).
- Machines losing their last step keep their modules (reported); new machines are reported (the
  generator creates their packages).
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.generate import render
from sl2s.generate.lock import read_origins
from sl2s.generate.usercode import FoundStep, UserCodeError, scan_module
from sl2s.model import Plan, Step
from sl2s.rebalance import imports as imp
from sl2s.rebalance.move import Module, MoveReport, MoveResult, move
from sl2s.rebalance.rename import retemplate

Scanner = Callable[[str, str], list[FoundStep]]


@dataclass(frozen=True)
class StepMove:
    flow: str
    id: str
    function: str
    source: str  # user module paths, relative to the output directory
    dest: str
    report: MoveReport
    shared: tuple[MoveReport, ...] = ()  # definitions moved to the shared module first


@dataclass(frozen=True)
class Rename:
    flow: str
    old_id: str
    new_id: str
    old_template: str
    new_template: str
    path: str
    function: str


@dataclass(frozen=True)
class Outcome:
    modules: dict[str, str]  # every user module after the rebalance: path -> text
    changed: tuple[str, ...]  # user modules created or changed
    moves: tuple[StepMove, ...] = ()
    renames: tuple[Rename, ...] = ()
    out_of_scope: tuple[str, ...] = ()
    emptied: tuple[str, ...] = ()  # notes on machines left without steps
    new_machines: tuple[str, ...] = ()
    failed: tuple[Diagnostic, ...] = ()  # moves left out (only with force_partial)
    # {module: {definition: {"from": module it left, "above": definition above it there}}}:
    # kept in the lock, so that moving a step back puts every definition where it was
    origins: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def _default_scan(path: str, source: str) -> list[FoundStep]:
    return scan_module(source)


@dataclass
class _Where:
    path: str
    found: FoundStep

    @property
    def machine(self) -> str:
        return self.path.partition("/")[0]


@dataclass
class _State:
    modules: dict[str, str]
    index: dict[tuple[str, str], list[_Where]] = field(default_factory=dict)
    by_path: dict[str, list[_Where]] = field(default_factory=dict)
    origins: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    # what moves of this run put back where it came from: {module: {name: (above, below)}}
    returned: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def add(self, where: _Where) -> None:
        self.index.setdefault((where.found.flow, where.found.id), []).append(where)
        self.by_path.setdefault(where.path, []).append(where)

    def drop(self, where: _Where) -> None:
        self.index[(where.found.flow, where.found.id)].remove(where)
        self.by_path[where.path].remove(where)


def rebalance(
    plan: Plan,
    *,
    user_modules: Mapping[str, str],
    lock: Mapping,
    system: str = "services",
    scan: Scanner = _default_scan,
    prefix: str = "",
    force_partial: bool = False,
) -> Outcome:
    """The user modules after bringing the code's step placement in line with `plan`."""
    state = _State(dict(user_modules), origins=read_origins(lock))
    problems: list[Diagnostic] = []
    for path in sorted(user_modules):
        try:
            for fs in scan(path, user_modules[path]):
                state.add(_Where(path, fs))
        except UserCodeError as error:
            problems.append(Diagnostic(prefix + path, error.line, error.message))
    if problems:
        raise Sl2sError(problems)
    before = dict(user_modules)
    old_machines = {
        p.partition("/")[0] for p in user_modules if not p.startswith(SHARED_DIR + "/")
    }
    steps_in_lock, lines_in_lock = lock.get("steps"), lock.get("plan_lines")
    old_steps: Mapping = steps_in_lock if isinstance(steps_in_lock, dict) else {}
    old_lines: Mapping = lines_in_lock if isinstance(lines_in_lock, dict) else {}

    renames = _renames(plan, state, old_lines, prefix)
    moved_away = {(r.flow, r.old_id) for r in renames}
    out_of_scope = _cross_flow(plan, state, old_steps, old_lines, moved_away)

    moves: list[StepMove] = []
    failed: list[Diagnostic] = []
    for flow in plan.flows:
        order = {s.id: n for n, s in enumerate(flow.steps)}
        for step in flow.steps:
            wheres = state.index.get((step.flow, step.id), [])
            if not wheres or any(w.machine == step.machine for w in wheres):
                continue
            if len(wheres) > 1:
                previous = (old_steps.get(step.flow) or {}).get(step.id) or {}
                chosen = [w for w in wheres if w.machine == previous.get("machine")]
                if len(chosen) != 1:
                    spots = ", ".join(
                        f"{prefix}{w.path}:{w.found.line}" for w in wheres
                    )
                    failed.append(
                        Diagnostic(
                            prefix + wheres[0].path,
                            wheres[0].found.line,
                            f"step {step.flow}/{step.id} is defined more than once "
                            f"({spots}); move it by hand",
                        )
                    )
                    continue
                wheres = chosen
            where = wheres[0]
            try:
                moves.append(_move_one(state, where, step, order, system, prefix))
            except Sl2sError as error:
                failed.extend(error.diagnostics)
    if failed and not force_partial:
        raise Sl2sError(failed)

    plan_machines = set(plan.machines)
    emptied = []
    for machine in sorted(old_machines - plan_machines):
        paths = sorted(p for p in state.modules if p.startswith(machine + "/"))
        emptied.append(
            f"machine {machine!r} has no steps in the plan any more; its modules are kept: "
            + ", ".join(prefix + p for p in paths)
        )
    new_machines = tuple(m for m in plan.machines if m not in old_machines)
    changed = tuple(
        sorted(
            {p for p, text in state.modules.items() if before.get(p) != text}
            | (set(before) - set(state.modules))  # removed: the emptied shared module
        )
    )
    return Outcome(
        modules=state.modules,
        changed=changed,
        moves=tuple(moves),
        renames=tuple(renames),
        out_of_scope=tuple(out_of_scope),
        emptied=tuple(emptied),
        new_machines=new_machines,
        failed=tuple(failed),
        origins={
            path: names
            for path, names in sorted(state.origins.items())
            if names and path in state.modules
        },
    )


def module_name(system: str, path: str) -> str:
    return ".".join([system] + path[: -len(".py")].split("/"))


def importers(
    modules: Mapping[str, str],
    target: str,
    system: str,
    *,
    skip: set[str],
    prefix: str = "",
) -> dict[str, str]:
    """Names of module `target` that other user modules import: {name: "path:line"}; `*` when a
    module imports `target` itself. A regex finds the few candidate modules (an import line naming
    the module's last part); only those are parsed."""
    last = target.rpartition(".")[2]
    pattern = re.compile(
        rf"^[ \t]*(?:from|import)[ \t][^\n]*\b{re.escape(last)}\b", re.M
    )
    found: dict[str, str] = {}
    for path, text in modules.items():
        if path in skip or not pattern.search(text):
            continue
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        package = imp.package_of(module_name(system, path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = f"{prefix}{path}:{node.lineno}"
            for alias in imp.aliases(node):
                kind, module, name = alias.target(package)
                if kind == "import":
                    if module == target or module.startswith(target + "."):
                        found.setdefault("*", where)
                elif module == target:
                    found.setdefault("*" if name == "*" else name, where)
                elif f"{module}.{name}" == target:
                    found.setdefault("*", where)
    return found


def _move_one(
    state: _State,
    where: _Where,
    step: Step,
    order: dict[str, int],
    system: str,
    prefix: str,
) -> StepMove:
    dest = f"{step.machine}/{step.flow}.py"
    # above the first step of this flow in the destination that comes later in the plan
    later = [
        w
        for w in state.by_path.get(dest, [])
        if w.found.flow == step.flow and order.get(w.found.id, -1) > order[step.id]
    ]
    anchor = (
        min(later, key=lambda w: order[w.found.id]).found.function if later else None
    )
    shared_moves: list[MoveReport] = []
    result = _step_move(state, where, dest, step, anchor, system, prefix)
    if result.report.cross:
        # what code staying at the source still uses goes to the shared module, which both
        # machines import: never one machine's module importing another's
        for name in result.report.cross:
            shared_moves.append(_share(state, where.path, name, system, prefix))
        result = _step_move(state, where, dest, step, anchor, system, prefix)
    moved = {where.found.function, *result.report.helpers}
    here = state.origins.setdefault(where.path, {})
    home = {n for n, e in here.items() if e["from"] == dest}
    state.returned.setdefault(dest, {}).update(
        (n, w) for n, w in _origins_from(here, dest).items() if n in moved
    )
    for name in moved:
        here.pop(name, None)
    there = state.origins.setdefault(dest, {})
    for name, (above, below) in result.origins.items():
        if name in moved and name not in home:  # back home: nothing left to remember
            there[name] = {"from": where.path, "above": above, "below": below}
    state.modules[where.path] = result.source
    state.modules[dest] = result.dest
    state.drop(where)
    state.add(_Where(dest, where.found))
    shared = shared_path(dest)
    for name, entry in sorted(state.origins.get(shared, {}).items()):
        if entry["from"] == dest:  # a shared definition that may go back home now
            _unshare(state, dest, name, system, prefix)
    return StepMove(
        step.flow,
        step.id,
        where.found.function,
        where.path,
        dest,
        result.report,
        tuple(shared_moves),
    )


def _step_move(state, where, dest, step, anchor, system, prefix) -> MoveResult:
    source_name = module_name(system, where.path)
    here = state.origins.get(where.path, {})
    return move(
        Module(source_name, prefix + where.path, state.modules[where.path]),
        Module(module_name(system, dest), prefix + dest, state.modules.get(dest)),
        [where.found.function],
        before=anchor,
        new_module_text=render.user_module_header(step.flow, step.machine),
        pinned=importers(
            state.modules, source_name, system, skip={where.path, dest}, prefix=prefix
        ),
        origins=_origins_from(here, dest),
        returned=state.returned.get(dest),
    )


def _origins_from(entries: Mapping, path: str) -> dict[str, tuple[str, str]]:
    return {
        n: (e["above"], e.get("below", ""))
        for n, e in entries.items()
        if e["from"] == path
    }


# The shared modules: `_shared/<flow>.py` for what the steps of `<machine>/<flow>.py` share with
# steps that moved to other machines (a namespace package: no `__init__.py` to keep in step).
SHARED_DIR = "_shared"


def shared_path(path: str) -> str:
    return f"{SHARED_DIR}/{path.rpartition('/')[2]}"


SHARED_HEADER = (
    '"""Helpers that step functions on several machines use.\n\n'
    "This module is yours, like the flow modules. `sl2s rebalance` moves a helper here when a\n"
    "step that uses it moves to another machine while a step that stays uses it too, so that\n"
    "no machine's package imports another machine's module; it moves the helper back when\n"
    'only one machine uses it again.\n"""\n'
)


def _share(state: _State, path: str, name: str, system: str, prefix: str) -> MoveReport:
    """Move `name` (and what only it uses) from the user module `path` to the shared module."""
    source_name = module_name(system, path)
    target = shared_path(path)
    result = move(
        Module(source_name, prefix + path, state.modules[path]),
        Module(module_name(system, target), prefix + target, state.modules.get(target)),
        [name],
        new_module_text=SHARED_HEADER,
        pinned=importers(
            state.modules, source_name, system, skip={path, target}, prefix=prefix
        ),
        share=True,
    )
    shared = state.origins.setdefault(target, {})
    for moved, (above, below) in result.origins.items():
        shared[moved] = {"from": path, "above": above, "below": below}
    state.modules[path] = result.source
    state.modules[target] = result.dest
    return result.report


def _unshare(state: _State, path: str, name: str, system: str, prefix: str) -> None:
    """Move the shared `name` back to `path`, where it came from, when no other module of the
    system imports it any more (then the shared module goes too if nothing else is left).
    """
    shared = shared_path(path)
    shared_name = module_name(system, shared)
    users = importers(state.modules, shared_name, system, skip={shared, path})
    if name in users or "*" in users:
        return
    entries = state.origins.get(shared, {})
    try:
        result = move(
            Module(shared_name, prefix + shared, state.modules[shared]),
            Module(module_name(system, path), prefix + path, state.modules[path]),
            [name],
            origins=_origins_from(entries, path),
            share=True,
        )
    except Sl2sError:
        return  # it stays shared: still correct, only not where it was
    for moved in result.origins:
        entries.pop(moved, None)
    state.modules[path] = result.dest
    if result.source.strip() == SHARED_HEADER.strip():
        del state.modules[shared]
    else:
        state.modules[shared] = result.source


def _renames(
    plan: Plan, state: _State, old_lines: Mapping, prefix: str
) -> list[Rename]:
    out: list[Rename] = []
    for flow in plan.flows:
        new_ids = [s.id for s in flow.steps]
        lines = old_lines.get(flow.name)
        pairs: list[tuple[str, Step]] = []
        if isinstance(lines, dict):
            old_ids = [
                i for i, _ in sorted(lines.items(), key=lambda kv: (kv[1], kv[0]))
            ]
            matcher = difflib.SequenceMatcher(None, old_ids, new_ids, autojunk=False)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes():
                if tag == "replace" and i2 - i1 == j2 - j1:
                    for old, new in zip(old_ids[i1:i2], flow.steps[j1:j2]):
                        if old not in new_ids and not state.index.get(
                            (flow.name, new.id)
                        ):
                            pairs.append((old, new))
        for (
            step
        ) in (
            flow.steps
        ):  # same id, new text (an `id` column, or a slug-preserving edit)
            pairs.append((step.id, step))
        for old_id, step in pairs:
            wheres = state.index.get((flow.name, old_id), [])
            if len(wheres) != 1:
                continue
            where = wheres[0]
            if where.found.template == step.template and old_id == step.id:
                continue
            state.modules[where.path] = retemplate(
                state.modules[where.path],
                prefix + where.path,
                where.found.function,
                step.template,
                step.id,
            )
            renamed = FoundStep(
                flow.name,
                step.id,
                step.template,
                where.found.function,
                where.found.params,
                where.found.line,
            )
            state.drop(where)
            state.add(_Where(where.path, renamed))
            out.append(
                Rename(
                    flow.name,
                    old_id,
                    step.id,
                    where.found.template,
                    step.template,
                    where.path,
                    where.found.function,
                )
            )
    return out


def _cross_flow(
    plan: Plan, state: _State, old_steps: Mapping, old_lines: Mapping, renamed: set
) -> list[str]:
    """Steps that left their flow for another one: same log text (or id), different flow."""
    now = {(s.flow, s.id) for s in plan.steps}
    gone = []
    for flow, steps in old_steps.items():
        if not isinstance(steps, dict):
            continue
        for step_id, info in steps.items():
            if (
                (flow, step_id) not in now
                and (flow, step_id) not in renamed
                and isinstance(info, dict)
            ):
                gone.append((flow, step_id, info.get("template")))
    out = []
    for step in plan.steps:
        if state.index.get((step.flow, step.id)):
            continue
        for flow, step_id, template in gone:
            if flow != step.flow and (template == step.template or step_id == step.id):
                out.append(
                    f"step {step_id!r} left flow {flow!r} for flow {step.flow!r} "
                    f"({step.template!r}): moving steps between flows is out of scope; "
                    "move the function by hand (a stub is created in "
                    f"{step.machine}/{step.flow}.py, the old function is kept)"
                )
    return out
