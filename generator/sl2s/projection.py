"""The plan projected onto machines: segments, hops, activations (pure; see docs/architecture.md).

Consecutive steps of a flow on one machine form a segment. Between segments control hops along a
call stack: when the next step's machine is already on the stack it is a caller, and control
*returns* to it (every machine above it returns in turn, with the same resume point); otherwise the
current machine *calls* the next machine and waits. When the flow's last step has run, the stack
unwinds back to the first machine, whose entry function then returns.

Secrets (`#name`) travel only to machines that use them — by a placeholder in one of their steps
of the flow, or by `uses[(flow, machine)]` (parameters of the machine's step functions). Each
activation holds the secrets it received or that one of its own steps referenced; a step
referencing a secret makes the copies held further down the stack stale. A machine that needs a
secret that is known (some step referenced it earlier, or the first machine received it as an
entry argument) but does not hold it could only have got it through the machine it was entered
from, which does not use it: that is a plan error, reported at the needing step's line and at
the line where the secret's value comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.model import Flow, Plan, Step

Uses = Mapping[tuple[str, str], Iterable[str]]


@dataclass(frozen=True)
class Segment:
    """Consecutive steps of one flow on one machine."""

    flow: str
    machine: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Hop:
    """Control passing from one machine to another."""

    flow: str
    kind: Literal["call", "return"]
    source: str
    target: str
    after: str  # id of the last step run before the hop
    at: str | None  # call: the step the callee starts at; return: None
    resume_at: (
        str | None
    )  # where control continues after this hop chain; None = the flow is done
    fields: tuple[
        str, ...
    ]  # non-secret fields referenced by the flow's steps up to the hop
    secrets: tuple[str, ...]  # secrets the target uses that the source holds


@dataclass(frozen=True)
class RunStep:
    step: Step


@dataclass(frozen=True)
class Call:
    target: str
    at: str
    resume_at: (
        str | None
    )  # where this activation continues (or passes on) when the callee returns
    fields: tuple[str, ...]
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Return:
    target: str
    resume_at: str | None
    fields: tuple[str, ...]
    secrets: tuple[str, ...]


Op = RunStep | Call | Return


@dataclass(frozen=True)
class Activation:
    """One run of a machine within a flow: entered at `at` (None: the flow's entry), its ops in
    order."""

    flow: str
    machine: str
    at: str | None
    ops: tuple[Op, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(op.step for op in self.ops if isinstance(op, RunStep))


@dataclass(frozen=True)
class FlowProjection:
    flow: str
    segments: tuple[Segment, ...]
    hops: tuple[Hop, ...]  # in the order they happen
    activations: tuple[
        Activation, ...
    ]  # in the order they start; the first is the entry

    @property
    def entry(self) -> Activation:
        return self.activations[0]


@dataclass(frozen=True)
class MachineView:
    """What one machine does across the plan."""

    name: str
    flows: tuple[str, ...]  # flows it takes part in, in plan order
    inbound: bool  # some hop calls it (so it needs an inbound endpoint)
    entries: tuple[
        Activation, ...
    ]  # all its activations, flow by flow, in the order they start


@dataclass(frozen=True)
class Projection:
    plan: Plan
    flows: tuple[FlowProjection, ...]
    machines: tuple[MachineView, ...]

    def flow(self, name: str) -> FlowProjection:
        for f in self.flows:
            if f.flow == name:
                return f
        raise KeyError(name)

    def machine(self, name: str) -> MachineView:
        for m in self.machines:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def hops(self) -> tuple[Hop, ...]:
        return tuple(h for f in self.flows for h in f.hops)


@dataclass(frozen=True)
class Summary:
    path: str
    flows: int
    steps: int
    machines: int
    hops: int

    def __str__(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}" + ("" if count == 1 else "s")

        return (
            f"{self.path}: {n(self.flows, 'flow')}, {n(self.steps, 'step')}, "
            f"{n(self.machines, 'machine')}, {n(self.hops, 'hop')}"
        )


def summary(projection: Projection) -> Summary:
    """Counts for `sl2s check`: flows, steps, machines, hops."""
    plan = projection.plan
    return Summary(
        path=plan.path,
        flows=len(plan.flows),
        steps=len(plan.steps),
        machines=len(plan.machines),
        hops=len(projection.hops),
    )


def project(plan: Plan, uses: Uses | None = None) -> Projection:
    """Project `plan` onto its machines. Raises Sl2sError listing every secret-routing problem."""
    uses = uses or {}
    diagnostics: list[Diagnostic] = []
    flows = tuple(
        _project_flow(plan.path, flow, uses, diagnostics) for flow in plan.flows
    )
    if diagnostics:
        raise Sl2sError(sorted(set(diagnostics), key=lambda d: (d.line, d.message)))
    # One pass over flows, hops and activations (not one per machine).
    names = plan.machines
    flows_of: dict[str, list[str]] = {name: [] for name in names}
    inbound: set[str] = set()
    entries: dict[str, list[Activation]] = {name: [] for name in names}
    for f, fp in zip(plan.flows, flows):
        for name in f.machines:
            flows_of[name].append(f.name)
        for h in fp.hops:
            if h.kind == "call":
                inbound.add(h.target)
        for a in fp.activations:
            entries[a.machine].append(a)
    machines = [
        MachineView(
            name=name,
            flows=tuple(flows_of[name]),
            inbound=name in inbound,
            entries=tuple(entries[name]),
        )
        for name in names
    ]
    return Projection(plan=plan, flows=flows, machines=tuple(machines))


# --- one flow ---------------------------------------------------------------------------------


@dataclass
class _Act:
    machine: str
    at: str | None
    ops: list[Op] = field(default_factory=list)
    holds: set[str] = field(default_factory=set)
    entered_from: str | None = (
        None  # machine of the hop that last gave control to this activation
    )
    call_op: tuple[_Act, int] | None = (
        None  # (caller, index of the Call op) to fill resume_at
    )
    call_hop: int | None = None  # index of the call hop, to fill resume_at


def _segments(flow: Flow) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    run: list[Step] = []
    for step in flow.steps:
        if run and run[-1].machine != step.machine:
            segments.append(Segment(flow.name, run[0].machine, tuple(run)))
            run = []
        run.append(step)
    if run:
        segments.append(Segment(flow.name, run[0].machine, tuple(run)))
    return tuple(segments)


def _project_flow(
    path: str, flow: Flow, uses: Uses, diagnostics: list[Diagnostic]
) -> FlowProjection:
    steps = flow.steps
    if not steps:
        return FlowProjection(flow.name, (), (), ())
    # Step.secrets / Step.fields are computed on each access: once per step here.
    step_secrets = [st.secrets for st in steps]
    step_fields = [st.fields for st in steps]
    flow_secrets = tuple(
        dict.fromkeys(s for ss in step_secrets for s in ss)
    )  # Flow.secrets
    secret_set = set(flow_secrets)

    def used_by_uses(machine: str) -> set[str]:
        return set(uses.get((flow.name, machine), ())) & secret_set

    flow_machines = flow.machines
    uses_secrets = {m: used_by_uses(m) for m in flow_machines}
    machine_secrets: dict[str, set[str]] = {m: set() for m in flow_machines}
    for st, secrets_here in zip(steps, step_secrets):
        machine_secrets[st.machine].update(secrets_here)
    for m in flow_machines:
        machine_secrets[m] |= uses_secrets[m]

    hops: list[Hop] = []
    acts: list[_Act] = []
    root = _Act(steps[0].machine, None, holds=set(uses_secrets[steps[0].machine]))
    acts.append(root)
    stack = [root]
    # secret -> (line, machine) where its current value comes from
    origin: dict[str, tuple[int, str]] = {
        s: (steps[0].line, root.machine) for s in root.holds
    }
    reported: set[tuple[str, str]] = set()
    seen_fields: dict[str, None] = {}

    def carried(source: _Act, target_machine: str) -> tuple[str, ...]:
        wanted = machine_secrets[target_machine]
        return tuple(s for s in flow_secrets if s in wanted and s in source.holds)

    def do_return(after: str, resume_at: str | None) -> None:
        source = stack.pop()
        target = stack[-1]
        fields = tuple(seen_fields)
        secrets = carried(source, target.machine)
        source.ops.append(Return(target.machine, resume_at, fields, secrets))
        hops.append(
            Hop(
                flow.name,
                "return",
                source.machine,
                target.machine,
                after,
                None,
                resume_at,
                fields,
                secrets,
            )
        )
        target.holds |= set(secrets)
        target.entered_from = source.machine
        assert source.call_op is not None and source.call_hop is not None  # a callee
        caller, index = source.call_op
        # the constructors, not dataclasses.replace (several times slower)
        op = caller.ops[index]
        assert isinstance(op, Call)
        caller.ops[index] = Call(op.target, op.at, resume_at, op.fields, op.secrets)
        h = hops[source.call_hop]
        hops[source.call_hop] = Hop(
            h.flow,
            h.kind,
            h.source,
            h.target,
            h.after,
            h.at,
            resume_at,
            h.fields,
            h.secrets,
        )

    def do_call(after: str, step: Step) -> None:
        source = stack[-1]
        fields = tuple(seen_fields)
        secrets = carried(source, step.machine)
        callee = _Act(
            step.machine, step.id, holds=set(secrets), entered_from=source.machine
        )
        source.ops.append(Call(step.machine, step.id, None, fields, secrets))
        callee.call_op = (source, len(source.ops) - 1)
        hops.append(
            Hop(
                flow.name,
                "call",
                source.machine,
                step.machine,
                after,
                step.id,
                None,
                fields,
                secrets,
            )
        )
        callee.call_hop = len(hops) - 1
        acts.append(callee)
        stack.append(callee)

    def need(act: _Act, step: Step, secret: str) -> None:
        if secret in act.holds or secret not in origin:
            return
        key = (secret, act.machine)
        if key in reported:
            return
        reported.add(key)
        line, where = origin[secret]
        via = act.entered_from or where
        diagnostics.append(
            Diagnostic(
                path,
                step.line,
                f"secret #{secret} is needed by machine '{act.machine}' in flow '{flow.name}', "
                f"but its value (line {line}, on '{where}') can only reach it through machine "
                f"'{via}', which does not use it",
            )
        )
        diagnostics.append(
            Diagnostic(
                path,
                line,
                f"secret #{secret} of flow '{flow.name}' is known here on '{where}', but cannot "
                f"reach machine '{act.machine}' (line {step.line}) through '{via}'",
            )
        )

    for i, step in enumerate(steps):
        if i and step.machine != steps[i - 1].machine:
            after = steps[i - 1].id
            if any(a.machine == step.machine for a in stack):
                while stack[-1].machine != step.machine:
                    do_return(after, step.id)
            else:
                do_call(after, step)
        act = stack[-1]
        for secret in sorted(uses_secrets[act.machine]):
            need(act, step, secret)
        for secret in step_secrets[i]:
            need(act, step, secret)
            act.holds.add(secret)
            origin[secret] = (step.line, act.machine)
            for other in stack[:-1]:
                other.holds.discard(secret)
        act.ops.append(RunStep(step))
        for name in step_fields[i]:
            seen_fields.setdefault(name, None)
    while len(stack) > 1:
        do_return(steps[-1].id, None)

    activations = tuple(
        Activation(flow.name, a.machine, a.at, tuple(a.ops)) for a in acts
    )
    return FlowProjection(flow.name, _segments(flow), tuple(hops), activations)
