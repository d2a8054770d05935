"""Synthetic events in the documented format (docs/architecture.md, "Events").

For tests and benchmarks of the observe tools when no generated service has run yet (kept in
bench/, not in the package: tests/conftest.py puts bench/ on the path):
`flow_run` emits what the runtime emits for one run of a flow — one `sl2s.step` event per step,
each caused by the previous one, optionally failing at a step or with user log lines.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from sl2s.model import Step

_EPOCH = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)


def ts(offset_ms: float) -> str:
    return (_EPOCH + timedelta(milliseconds=offset_ms)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )


def hexid(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


def event(
    *,
    flow: str,
    step: str,
    machine: str,
    template: str,
    body: str,
    cid: str,
    cause: str | None,
    eid: str,
    at_ms: float,
    trace_id: str = "0" * 32,
    span_id: str = "0" * 16,
    plan: str = "",
    severity: str = "INFO",
    event_name: str = "sl2s.step",
    fields: dict | None = None,
    exception: tuple[str, str, str] | None = None,
    code: tuple[str, int, str] | None = None,
) -> dict:
    number = {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}[severity]
    attributes = {
        "sl2s.event_id": eid,
        "sl2s.correlation_id": cid,
        "sl2s.causation_id": cause,
        "sl2s.flow": flow,
        "sl2s.step": step,
        "sl2s.machine": machine,
        "sl2s.template": template,
        "sl2s.plan": plan,
        "sl2s.fields": fields or {},
        "sl2s.unset": [],
    }
    if code:
        (
            attributes["code.filepath"],
            attributes["code.lineno"],
            attributes["code.function"],
        ) = code
    if exception:
        (
            attributes["exception.type"],
            attributes["exception.message"],
            attributes["exception.stacktrace"],
        ) = exception
    return {
        "timestamp": ts(at_ms),
        "severity_text": severity,
        "severity_number": number,
        "body": body,
        "trace_id": trace_id,
        "span_id": span_id,
        "event_name": event_name,
        "resource": {"service.name": machine},
        "attributes": attributes,
    }


def flow_run(
    steps: Sequence[Step],
    *,
    cid: str,
    start_ms: float,
    rng: random.Random,
    plan_path: str = "plan.csv",
    fail_at: str | None = None,
    log_lines: dict[str, list[str]] | None = None,
    step_ms: float = 1.5,
) -> list[dict]:
    """Events of one run of the flow whose steps are `steps`, in emission order.

    `fail_at`: the step id that raises (an ERROR event, then the run stops). `log_lines`: user log
    lines (`sl2s.log` events) emitted inside the step with that id, before its step event.
    """
    out: list[dict] = []
    trace_id = hexid(rng, 32)
    cause: str | None = None
    at = start_ms
    for s in steps:
        span = hexid(rng, 16)
        for text in (log_lines or {}).get(s.id, ()):
            eid = hexid(rng, 32)
            out.append(
                event(
                    flow=s.flow,
                    step=s.id,
                    machine=s.machine,
                    template="",
                    body=text,
                    cid=cid,
                    cause=cause,
                    eid=eid,
                    at_ms=at,
                    trace_id=trace_id,
                    span_id=span,
                    plan=f"{plan_path}:{s.line}",
                    event_name="sl2s.log",
                    severity="WARN",
                )
            )
            cause = eid
            at += 0.2
        eid = hexid(rng, 32)
        failing = s.id == fail_at
        out.append(
            event(
                flow=s.flow,
                step=s.id,
                machine=s.machine,
                template=s.template,
                body=_render(s),
                cid=cid,
                cause=cause,
                eid=eid,
                at_ms=at,
                trace_id=trace_id,
                span_id=span,
                plan=f"{plan_path}:{s.line}",
                severity="ERROR" if failing else "INFO",
                exception=(("ValueError", "boom", _stacktrace(s)) if failing else None),
                code=(f"services/{s.machine}/{s.flow}.py", 10 + s.line, s.id),
            )
        )
        cause = eid
        at += step_ms
        if failing:
            break
    return out


def _render(s: Step) -> str:
    if not s.parts:
        return s.template
    return "".join(
        p if isinstance(p, str) else ("***" if p.secret else f"<{p.name}>")
        for p in s.parts
    )


def _stacktrace(s: Step) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/sl2s/runtime/run.py", line 120, in step\n'
        "    result = function(**kwargs)\n"
        f'  File "/srv/app/services/{s.machine}/{s.flow}.py", line {10 + s.line}, in {s.id}\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom\n"
    )


def demo_plan(path: str = "login.csv"):
    """The sample login plan (sample_plans/login.csv) as a model.Plan, without reading a file."""
    from sl2s.model import Flow, Placeholder, Plan
    from sl2s.names import step_slug

    rows = [
        (
            "login",
            [
                "User attempted login as ",
                Placeholder("username", False, ":username"),
                " and ",
                Placeholder("password", True, "#password"),
            ],
            "client",
        ),
        (
            "login",
            [
                "Received request to login as ",
                Placeholder("username", False, ":username"),
            ],
            "server",
        ),
        (
            "login",
            ["Testing password for ", Placeholder("username", False, ":username")],
            "server",
        ),
        (
            "login",
            ["Setting session for ", Placeholder("username", False, ":username")],
            "server",
        ),
        ("login", ["Finish handling user login"], "server"),
        ("login", ["Login successful"], "client"),
        ("feed", ["Fetching feed information"], "client"),
        ("feed", ["Retrieving feed information"], "server"),
    ]
    steps: dict[str, list[Step]] = {}
    for line, (flow, parts, machine) in enumerate(rows, start=2):
        template = "".join(p if isinstance(p, str) else p.spelling for p in parts)
        steps.setdefault(flow, []).append(
            Step(flow, step_slug(template), template, tuple(parts), machine, line)
        )
    flows = tuple(Flow(name, name, tuple(s)) for name, s in steps.items())
    return Plan(path, flows, "0" * 64)
