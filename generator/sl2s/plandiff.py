"""What changed between two plans, for a reviewer (pure).

`diff_plans(old, new)` matches the steps of each flow (same id, else same position among the
changed rows, as `difflib` aligns them) and reports, flow by flow: steps added, removed, renamed
(text or id changed), moved to another machine, and reordered; hops added and removed; fields and
secrets that now reach a machine they did not reach before, and those that no longer reach one.
Flows are matched by identifier; a flow only in one plan is reported as added or removed as a
whole. Only meaning counts: comments, blank
lines, delimiters, the header and line numbers do not make plans differ.

`text(diff)` is for a terminal, `markdown(diff)` for a pull-request comment (plan text in code
spans, so it cannot mention people, link, or format).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from sl2s.model import Flow, Plan, Step
from sl2s.projection import FlowProjection, Hop, project
from sl2s.show import markdown_code, visible

StepKind = Literal["added", "removed", "renamed", "moved", "reordered"]


@dataclass(frozen=True)
class StepChange:
    kind: StepKind
    flow: str
    old: Step | None  # None when added
    new: Step | None  # None when removed
    old_index: int = -1  # position in the old flow (0-based), -1 when added
    new_index: int = -1  # position in the new flow (0-based), -1 when removed


@dataclass(frozen=True)
class HopChange:
    kind: Literal["added", "removed"]
    hop: Hop


@dataclass(frozen=True)
class Reach:
    """`name` (a field, or a secret when `secret`) now reaches `machine` in `flow`; with `lost`,
    it reached `machine` before and no longer does."""

    flow: str
    name: str
    machine: str
    secret: bool
    lost: bool = False


@dataclass(frozen=True)
class FlowDiff:
    flow: str
    status: Literal["changed", "added", "removed"]
    steps: tuple[StepChange, ...] = ()
    hops: tuple[HopChange, ...] = ()
    fields: tuple[Reach, ...] = ()
    secrets: tuple[Reach, ...] = ()
    flow_steps: tuple[Step, ...] = ()  # for added / removed flows: the flow's steps

    @property
    def empty(self) -> bool:
        return self.status == "changed" and not (
            self.steps or self.hops or self.fields or self.secrets
        )


@dataclass(frozen=True)
class PlanDiff:
    old_path: str
    new_path: str
    flows: tuple[
        FlowDiff, ...
    ]  # only flows with differences: new plan's order, then removed ones

    @property
    def empty(self) -> bool:
        return not self.flows


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """Differences from `old` to `new`. Raises Sl2sError when either plan cannot be projected."""
    old_p, new_p = project(old), project(new)
    old_names = {f.name for f in old.flows}
    new_names = {f.name for f in new.flows}
    flows: list[FlowDiff] = []
    for flow in new.flows:
        if flow.name in old_names:
            fd = _flow_diff(
                old.flow(flow.name), flow, old_p.flow(flow.name), new_p.flow(flow.name)
            )
        else:
            fd = FlowDiff(
                flow.name,
                "added",
                fields=_reach_fields(None, new_p.flow(flow.name)),
                secrets=_reach_secrets(None, flow, None, new_p.flow(flow.name)),
                flow_steps=flow.steps,
            )
        if not fd.empty:
            flows.append(fd)
    for flow in old.flows:
        if flow.name not in new_names:
            flows.append(FlowDiff(flow.name, "removed", flow_steps=flow.steps))
    return PlanDiff(old.path, new.path, tuple(flows))


# --- matching ----------------------------------------------------------------------------------


def _match(
    old: Flow, new: Flow
) -> tuple[list[tuple[Step | None, Step | None]], set[str]]:
    """Pairs (old, new) in alignment order (None on one side: removed / added), and the ids of
    steps kept under the same id whose order relative to the other kept steps changed.

    Steps with the same id are the same step. Of the rest, an old and a new step at the same place
    among the changed rows (a `replace` block of the alignment) are one step renamed."""
    a = [s.id for s in old.steps]
    b = [s.id for s in new.steps]
    common = set(a) & set(b)
    partner: dict[int, Step] = (
        {}
    )  # id(new step) -> old step, for common ids and renames
    for n in new.steps:
        if n.id in common:
            partner[id(n)] = old.step(n.id)
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "replace":
            olds = [s for s in old.steps[i1:i2] if s.id not in common]
            news = [s for s in new.steps[j1:j2] if s.id not in common]
            for o, n in zip(olds, news):
                partner[id(n)] = o
    paired_old = {id(o) for o in partner.values()}
    pairs: list[tuple[Step | None, Step | None]] = []
    for _tag, i1, i2, j1, j2 in opcodes:
        pairs.extend((o, None) for o in old.steps[i1:i2] if id(o) not in paired_old)
        pairs.extend((partner.get(id(n)), n) for n in new.steps[j1:j2])
    kept_old = [x for x in a if x in common]
    kept_new = [x for x in b if x in common]
    in_order: set[str] = set()
    for block in difflib.SequenceMatcher(
        None, kept_old, kept_new, autojunk=False
    ).get_matching_blocks():
        in_order.update(kept_old[block.a : block.a + block.size])
    return pairs, common - in_order


def _flow_diff(
    old: Flow, new: Flow, old_fp: FlowProjection, new_fp: FlowProjection
) -> FlowDiff:
    pairs, reordered = _match(old, new)
    changes: list[StepChange] = []
    renames: dict[str, str] = {}
    old_at = {s.id: k for k, s in enumerate(old.steps)}
    new_at = {s.id: k for k, s in enumerate(new.steps)}
    for o, n in pairs:
        i = -1 if o is None else old_at[o.id]
        j = -1 if n is None else new_at[n.id]
        if o is None:
            changes.append(StepChange("added", new.name, None, n, i, j))
            continue
        if n is None:
            changes.append(StepChange("removed", new.name, o, None, i, j))
            continue
        renames[o.id] = n.id
        if o.id != n.id or o.template != n.template:
            changes.append(StepChange("renamed", new.name, o, n, i, j))
        if o.machine != n.machine:
            changes.append(StepChange("moved", new.name, o, n, i, j))
        if n.id in reordered:
            changes.append(StepChange("reordered", new.name, o, n, i, j))

    def key(hop: Hop, ids: dict[str, str]) -> tuple[object, ...]:
        # a call is known by where the callee starts, a return by where control resumes
        where = hop.at if hop.kind == "call" else hop.resume_at
        return (
            hop.kind,
            hop.source,
            hop.target,
            None if where is None else ids.get(where, where),
        )

    old_keys = [key(h, renames) for h in old_fp.hops]
    new_keys = [key(h, {}) for h in new_fp.hops]
    hops = [
        HopChange("removed", h)
        for h, k in zip(old_fp.hops, old_keys)
        if k not in new_keys
    ]
    hops += [
        HopChange("added", h)
        for h, k in zip(new_fp.hops, new_keys)
        if k not in old_keys
    ]
    return FlowDiff(
        new.name,
        "changed",
        steps=tuple(changes),
        hops=tuple(hops),
        fields=_reach_fields(old_fp, new_fp),
        secrets=_reach_secrets(old, new, old_fp, new_fp),
    )


# --- what reaches which machine ----------------------------------------------------------------


def _field_pairs(fp: FlowProjection | None) -> set[tuple[str, str]]:
    if fp is None:
        return set()
    return {(f, h.target) for h in fp.hops for f in h.fields}


def _secret_pairs(flow: Flow | None, fp: FlowProjection | None) -> set[tuple[str, str]]:
    if fp is None or flow is None:
        return set()
    pairs = {(s, h.target) for h in fp.hops for s in h.secrets}
    pairs |= {(s, step.machine) for step in flow.steps for s in step.secrets}
    return pairs


def _ordered(
    pairs: set[tuple[str, str]],
    flow: str,
    order: list[str],
    secret: bool,
    lost: bool = False,
) -> tuple[Reach, ...]:
    rank = {name: k for k, name in enumerate(order)}
    return tuple(
        Reach(flow, name, machine, secret, lost)
        for name, machine in sorted(
            pairs, key=lambda p: (rank.get(p[0], len(rank)), p[0], p[1])
        )
    )


def _reach_fields(
    old_fp: FlowProjection | None, new_fp: FlowProjection
) -> tuple[Reach, ...]:
    """Fields that now cross a hop to a machine they did not reach, then those that stop."""
    old_pairs, new_pairs = _field_pairs(old_fp), _field_pairs(new_fp)
    order = [f for h in new_fp.hops for f in h.fields]
    old_order = [f for h in old_fp.hops for f in h.fields] if old_fp else []
    return _ordered(new_pairs - old_pairs, new_fp.flow, order, False) + _ordered(
        old_pairs - new_pairs, new_fp.flow, old_order, False, lost=True
    )


def _reach_secrets(
    old: Flow | None, new: Flow, old_fp: FlowProjection | None, new_fp: FlowProjection
) -> tuple[Reach, ...]:
    """Secrets that now reach a machine, then those that stop reaching one."""
    old_pairs, new_pairs = _secret_pairs(old, old_fp), _secret_pairs(new, new_fp)
    old_order = list(old.secrets) if old else []
    return _ordered(new_pairs - old_pairs, new_fp.flow, list(new.secrets), True) + (
        _ordered(old_pairs - new_pairs, new_fp.flow, old_order, True, lost=True)
    )


# --- rendering ---------------------------------------------------------------------------------


Code = Callable[[str | None], str]  # plan text as the output format shows it


def _hop_words(hop: Hop, code: Code) -> str:
    if hop.kind == "call":
        return f"{code(hop.source)} calls {code(hop.target)} at {code(hop.at)}"
    resume = (
        f"resuming at {code(hop.resume_at)}"
        if hop.resume_at
        else "at the end of the flow"
    )
    return f"{code(hop.source)} returns to {code(hop.target)} after {code(hop.after)}, {resume}"


def _step_words(change: StepChange, code: Code) -> str:
    o, n = change.old, change.new
    if change.kind == "added":
        assert n is not None
        return f"added {code(n.template)} on {code(n.machine)} (line {n.line})"
    assert o is not None
    if change.kind == "removed":
        return f"removed {code(o.template)} from {code(o.machine)} (was line {o.line})"
    assert n is not None
    if change.kind == "renamed":
        if o.template == n.template:
            return f"renamed id {code(o.id)} to {code(n.id)} ({code(n.template)}, line {n.line})"
        words = f"renamed {code(o.template)} to {code(n.template)} (line {n.line})"
        if o.id != n.id and (o.explicit_id or n.explicit_id):
            words += f", id {code(o.id)} to {code(n.id)}"
        return words
    if change.kind == "moved":
        return (
            f"moved {code(n.template)} from {code(o.machine)} to {code(n.machine)} "
            f"(line {n.line})"
        )
    return (
        f"reordered {code(n.template)} (now step {change.new_index + 1} of the flow, "
        f"was step {change.old_index + 1})"
    )


def _reach_words(reach: Reach, code: Code) -> str:
    sigil = "#" if reach.secret else ":"
    kind = "secret" if reach.secret else "field"
    verb = "no longer reaches" if reach.lost else "now reaches"
    return f"{kind} {code(sigil + reach.name)} {verb} {code(reach.machine)}"


def _lines(fd: FlowDiff, code: Code) -> list[str]:
    if fd.status == "removed":
        machines = ", ".join(
            code(m) for m in dict.fromkeys(s.machine for s in fd.flow_steps)
        )
        return [f"flow removed: {_steps(len(fd.flow_steps))} on {machines}"]
    out: list[str] = []
    if fd.status == "added":
        machines = ", ".join(
            code(m) for m in dict.fromkeys(s.machine for s in fd.flow_steps)
        )
        out.append(f"flow added: {_steps(len(fd.flow_steps))} on {machines}")
    out += [f"step {_step_words(c, code)}" for c in fd.steps]
    out += [f"hop {h.kind}: {_hop_words(h.hop, code)}" for h in fd.hops]
    out += [_reach_words(r, code) for r in fd.secrets]
    out += [_reach_words(r, code) for r in fd.fields]
    return out


def _steps(count: int) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"


def _plain(text: str | None) -> str:
    return f"'{visible(text or '')}'"


def text(diff: PlanDiff) -> str:
    """Changes grouped by flow, for a terminal."""
    head = [f"--- {visible(diff.old_path)}", f"+++ {visible(diff.new_path)}"]
    if diff.empty:
        return "\n".join(head + ["no differences"]) + "\n"
    out = head
    for fd in diff.flows:
        out.append(f"flow {fd.flow}")
        out += [f"  {line}" for line in _lines(fd, _plain)]
    return "\n".join(out) + "\n"


def markdown(diff: PlanDiff) -> str:
    """Changes grouped by flow, for a pull-request comment."""
    name = markdown_code(PurePath(diff.new_path).name)
    out = [f"### Plan changes in {name}", ""]
    if diff.empty:
        return (
            "\n".join(
                out + ["No changes to flows, steps, hops or what reaches each machine."]
            )
            + "\n"
        )
    for fd in diff.flows:
        out.append(f"**Flow {markdown_code(fd.flow)}**")
        out.append("")
        out += [f"- {line}" for line in _lines(fd, _md)]
        out.append("")
    return "\n".join(out)


def _md(text: str | None) -> str:
    return markdown_code(text or "") or "``"


def render(diff: PlanDiff, format: str) -> str:
    if format == "text":
        return text(diff)
    if format == "markdown":
        return markdown(diff)
    raise ValueError(f"unknown format {format!r}; choose text or markdown")


__all__ = [
    "FlowDiff",
    "HopChange",
    "PlanDiff",
    "Reach",
    "StepChange",
    "diff_plans",
    "markdown",
    "render",
    "text",
]
