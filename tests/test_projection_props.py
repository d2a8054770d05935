"""Property: replaying a projection's activations runs every step once, in plan order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sl2s.model import Flow, Plan, Step
from sl2s.projection import Call, Return, RunStep, project

MACHINES = st.sampled_from(["a", "b", "c", "d"])
FLOWS = st.lists(st.lists(MACHINES, min_size=1, max_size=12), min_size=1, max_size=3)


def plan_of(flows: list[list[str]]) -> Plan:
    line = 0
    built = []
    for number, machines in enumerate(flows):
        name = f"f{number}"
        steps = []
        for machine in machines:
            line += 1
            steps.append(
                Step(name, f"s{line}", f"Step {line}", (f"Step {line}",), machine, line)
            )
        built.append(Flow(name, name, tuple(steps)))
    return Plan("p.csv", tuple(built), "0" * 64)


def replay(flow_projection) -> tuple[list[str], str]:
    """Run ops from the entry activation, following calls and returns; return (step ids, final machine)."""
    by_start = {(a.machine, a.at): a for a in flow_projection.activations}
    entry = flow_projection.activations[0]
    assert entry.at is None
    frames: list[tuple] = []  # (activation, index of the next op, resume_at expected)
    act, index = entry, 0
    visited: list[str] = []
    pending_resume = "unset"
    while True:
        if index == len(act.ops):
            assert not frames, "an activation ran out of ops while callers were waiting"
            return visited, act.machine
        op = act.ops[index]
        if pending_resume != "unset":
            # control just came back here: run the resume step, or pass the same resume point on
            if isinstance(op, RunStep):
                assert op.step.id == pending_resume
            else:
                assert isinstance(op, Return) and op.resume_at == pending_resume
            pending_resume = "unset"
        if isinstance(op, RunStep):
            visited.append(op.step.id)
            index += 1
        elif isinstance(op, Call):
            frames.append((act, index + 1, op.resume_at))
            act, index = by_start[(op.target, op.at)], 0
            assert act.ops and act.ops[0].step.id == op.at
        else:
            assert isinstance(op, Return)
            assert index == len(act.ops) - 1, "a Return must end its activation"
            caller, caller_index, expected = frames.pop()
            assert caller.machine == op.target and expected == op.resume_at
            act, index = caller, caller_index
            pending_resume = op.resume_at
            if op.resume_at is None:
                assert index == len(act.ops) or isinstance(act.ops[index], Return)
                pending_resume = "unset"


@settings(max_examples=300, deadline=None)
@given(FLOWS)
def test_replaying_hops_visits_every_step_once_in_order_and_ends_on_the_first_machine(
    flows,
):
    plan = plan_of(flows)
    projection = project(plan)
    for flow, fp in zip(plan.flows, projection.flows):
        visited, final = replay(fp)
        assert visited == [s.id for s in flow.steps]
        assert final == flow.steps[0].machine
        assert len(fp.hops) == sum(
            1
            for op in (o for a in fp.activations for o in a.ops)
            if not isinstance(op, RunStep)
        )
        # every hop goes between different machines, and calls and returns pair up
        assert all(h.source != h.target for h in fp.hops)
        assert sum(h.kind == "call" for h in fp.hops) == sum(
            h.kind == "return" for h in fp.hops
        )
        # segments partition the flow and alternate machines
        assert [s.id for seg in fp.segments for s in seg.steps] == [
            s.id for s in flow.steps
        ]
        assert all(x.machine != y.machine for x, y in zip(fp.segments, fp.segments[1:]))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=3), MACHINES
)
def test_a_plan_on_one_machine_has_no_hops(lengths, machine):
    projection = project(plan_of([[machine] * n for n in lengths]))
    assert projection.hops == ()
    assert [m.name for m in projection.machines] == [machine]
    assert projection.machines[0].inbound is False


SECRETS = st.sampled_from([(), ("k",), ("p",), ("k", "p")])
SECRET_FLOWS = st.lists(
    st.lists(st.tuples(MACHINES, SECRETS), min_size=1, max_size=10),
    min_size=1,
    max_size=2,
)


def secret_plan_of(flows) -> Plan:
    from sl2s.model import Placeholder

    line = 0
    built = []
    for number, rows in enumerate(flows):
        name = f"f{number}"
        steps = []
        for machine, secrets in rows:
            line += 1
            parts = (f"Step {line}",) + tuple(
                Placeholder(s, True, f"#{s}") for s in secrets
            )
            steps.append(Step(name, f"s{line}", f"Step {line}", parts, machine, line))
        built.append(Flow(name, name, tuple(steps)))
    return Plan("p.csv", tuple(built), "0" * 64)


@settings(max_examples=300, deadline=None)
@given(SECRET_FLOWS)
def test_secrets_travel_only_to_users_and_every_use_sees_the_current_value(flows):
    from sl2s.diagnostics import Sl2sError

    plan = secret_plan_of(flows)
    try:
        projection = project(plan)
    except Sl2sError as error:
        lines = {s.line for s in plan.steps}
        assert error.diagnostics and len(error.diagnostics) % 2 == 0
        assert all(d.path == "p.csv" and d.line in lines for d in error.diagnostics)
        return
    for flow, fp in zip(plan.flows, projection.flows):
        users = {
            m: {s for st_ in flow.steps if st_.machine == m for s in st_.secrets}
            for m in flow.machines
        }
        by_start = {(a.machine, a.at): a for a in fp.activations}
        # replay with the secrets each live activation holds
        frames: list[list] = []  # [activation, next op index, holds]
        current = [fp.activations[0], 0, set()]
        known: set[str] = set()
        while True:
            act, index, holds = current
            if index == len(act.ops):
                break
            op = act.ops[index]
            current[1] += 1
            if isinstance(op, RunStep):
                for secret in op.step.secrets:
                    if secret in known:
                        assert secret in holds, (secret, op.step.id)
                    known.add(secret)
                    holds.add(secret)
                    for frame in frames:
                        frame[2].discard(secret)
            elif isinstance(op, Call):
                assert set(op.secrets) <= users[op.target] and set(op.secrets) <= holds
                frames.append(current)
                current = [by_start[(op.target, op.at)], 0, set(op.secrets)]
            else:
                assert set(op.secrets) <= users[op.target] and set(op.secrets) <= holds
                current = frames.pop()
                current[2] |= set(op.secrets)
