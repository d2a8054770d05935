"""What `sl2s flows` does (list / show / resume / cancel / prune), on a system's flow store.

The CLI (sl2s.cli.flows) only parses, calls these and prints. Every problem is an `Sl2sError` with
a one-line message. Flows are named by correlation id or a unique prefix or suffix of at
least 6 characters.

Resume re-runs the flow's entry function in this process under the same correlation id, with the
recorded starting context: steps whose completion was recorded replay (not run again), the rest
run, so a failed flow continues from the failed step once the code is fixed. Secrets were never
stored; they are given again as `NAME=VALUE`, and a secret that a step still to run needs, when not
given, fails the resume before anything runs.
"""

from __future__ import annotations

import datetime
import inspect
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.runtime.core import durable, registry
from sl2s.runtime.launch import Entry, load_entry, parse_values
from sl2s.runtime.store import FlowRecord
from sl2s.template import parse

STATES = ("pending", "failed", "completed", "cancelled")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """`90`, `90s`, `10m`, `2h`, `3d` -> seconds."""
    found = _AGE.match(text or "")
    if not found:
        raise Sl2sError(
            f"--older-than {text!r}: expected a number of seconds or e.g. 10m, 2h, 3d"
        )
    return float(found.group(1)) * _UNIT[found.group(2)]


def open_flows(directory: str):
    """The flow store of the system at `directory` (as its machines open it)."""
    path = os.path.abspath(directory)
    if not os.path.isdir(path):
        raise Sl2sError(f"{directory}: no such directory (a generated services tree)")
    store = durable.store_for(path)
    if store is None:
        raise Sl2sError(
            "no flow store: durability is off (SL2S_STORE=none), so no flow is recorded"
        )
    return store


def find(store, flow_id: str):
    """The flow record named by `flow_id` (full id or unique prefix)."""
    found = store.flow(flow_id.strip())
    if found is None:
        raise Sl2sError(f"no flow run {flow_id!r} in {store.url}")
    return found


# -- list ----------------------------------------------------------------------------------------


def list_flows(
    directory: str,
    *,
    state: str | None = None,
    flow: str | None = None,
    machine: str | None = None,
    older_than: str | None = None,
    limit: int = 100,
) -> list:
    if state is not None and state not in STATES:
        raise Sl2sError(f"--state {state!r}: one of {', '.join(STATES)}")
    store = open_flows(directory)
    before = None if older_than is None else time.time() - parse_age(older_than)
    return store.flows(
        state=state, flow=flow, machine=machine, older_than=before, limit=limit
    )


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def list_lines(records: Sequence, now: float | None = None) -> list[str]:
    """A table: id, state, flow, entry machine, age (since last progress), last step."""
    now = time.time() if now is None else now
    rows = [("ID", "STATE", "FLOW", "MACHINE", "AGE", "LAST STEP")]
    rows += [
        (
            r.correlation_id,
            r.state,
            r.flow,
            r.machine,
            age(now - r.updated),
            r.position or "-",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
        for row in rows
    ]


# -- show ----------------------------------------------------------------------------------------


def _when(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def show_lines(directory: str, flow_id: str) -> list[str]:
    """A flow run: its record, the steps done (machine, time, replayable), its hops, its error."""
    store = open_flows(directory)
    rec = find(store, flow_id)
    steps = sorted(
        store.steps_of(rec.correlation_id).values(), key=lambda s: s.completed
    )
    hops = store.hops_of(rec.correlation_id)
    lines = [
        f"flow run {rec.correlation_id}: flow '{rec.flow}' from machine '{rec.machine}', "
        f"{rec.state} (attempt {rec.attempt})",
        f"  started {_when(rec.created)}, last progress {_when(rec.updated)}"
        + (f", last step '{rec.position}'" if rec.position else ""),
        *(
            [f"  deadline {_when(rec.deadline)} (its waits on other machines end then)"]
            if rec.deadline is not None
            else []
        ),
        f"  context: {orjson.dumps(rec.context, option=orjson.OPT_SORT_KEYS).decode()}"
        + (
            f"; secrets not kept (give them to resume): {', '.join(rec.secrets)}"
            if rec.secrets
            else ""
        ),
        f"steps done ({len(steps)}):",
    ]
    for s in steps:
        note = "" if s.replayable else "  (runs again on resume: it set a secret)"
        lines.append(f"  {_when(s.completed)}  {s.machine:<12} {s.step}{note}")
    lines.append(f"hops ({len(hops)}):")
    for h in sorted(hops, key=lambda h: h.created):
        state = (
            f"answered {h.status}" if h.state == "answered" else f"running ({h.owner})"
        )
        lines.append(f"  {_when(h.created)}  -> {h.target:<12} at '{h.at}': {state}")
    if rec.error:
        lines.append(f"error: {rec.error.get('message') or rec.error}")
    return lines


# -- cancel --------------------------------------------------------------------------------------


def cancel(directory: str, flow_id: str):
    """Mark a flow run cancelled: its further hops are refused and it cannot be resumed."""
    store = open_flows(directory)
    rec = find(store, flow_id)
    if rec.state == "completed":
        raise Sl2sError(
            f"flow run {rec.correlation_id} already completed; nothing to cancel"
        )
    if rec.state != "cancelled":
        store.set_state(rec.correlation_id, "cancelled", time.time())
    return find(store, rec.correlation_id)


# -- prune ---------------------------------------------------------------------------------------


def prune(directory: str, older_than: str, states: Sequence[str] = ()) -> int:
    """Delete flow runs (with their steps) in `states` (default: completed and cancelled) with
    no progress for `older_than`; how many went. Failed and pending flows go only when named.
    """
    chosen = tuple(states) or ("completed", "cancelled")
    for state in chosen:
        if state not in STATES:
            raise Sl2sError(f"--state {state!r}: one of {', '.join(STATES)}")
    store = open_flows(directory)
    return store.prune(time.time() - parse_age(older_than), chosen)


# -- resume --------------------------------------------------------------------------------------


@dataclass
class Resumed:
    entry: Entry
    record: FlowRecord  # the FlowRecord as resumed (state pending, attempt incremented)
    fields: dict  # what the entry function is called with (secrets included)
    replayable: int  # steps recorded that will replay


def prepare_resume(directory: str, flow_id: str, values: Sequence[str]) -> Resumed:
    """Everything checked before a resume runs anything: the flow can be resumed, its system
    loads, the given values are its secrets, and no step still to run needs a secret not given.
    Marks the flow pending with a new attempt (its hops get new idempotency keys)."""
    store = open_flows(directory)
    rec = find(store, flow_id)
    cid = rec.correlation_id
    if rec.state == "completed":
        raise Sl2sError(f"flow run {cid} already completed; nothing to resume")
    if rec.state == "cancelled":
        raise Sl2sError(f"flow run {cid} was cancelled; it cannot be resumed")
    given = parse_values(list(values))
    unknown = sorted(n for n in given if n not in rec.secrets)
    if unknown:
        kept = ", ".join(rec.secrets) or "none"
        raise Sl2sError(
            f"flow run {cid}: {', '.join(unknown)} is not a secret of this run (its context is "
            f"recorded; only secrets, which never are, are given again: {kept})"
        )
    entry = load_entry(directory, rec.flow)
    done = store.steps_of(cid)
    for name in rec.secrets:
        if name in given:
            continue
        step = _step_needing(entry, rec.flow, name, done)
        if step is not None:
            raise Sl2sError(
                f"flow run {cid}: step '{step}', still to run, needs the secret '{name}', which "
                f"the store never keeps: give it as {name}=VALUE"
            )
    fields = {**rec.context, **given}
    resumed = store.flow_resumed(cid, time.time())
    if resumed is None:
        raise Sl2sError(f"flow run {cid} vanished from {store.url} while resuming")
    replayable = sum(1 for s in done.values() if s.replayable)
    return Resumed(entry, resumed, fields, replayable)


def run_resumed(resumed: Resumed) -> dict:
    """Run the entry again under the flow's correlation id (recorded steps replay)."""
    rec = resumed.record
    with durable.resuming(rec.correlation_id, rec.attempt):
        return resumed.entry.function(**resumed.fields)


def _step_needing(entry: Entry, flow: str, name: str, done: dict) -> str | None:
    """A step of `flow` that will run (not replayable from the record) and uses the field `name`
    (in its template or as a parameter of its function); None if there is none."""
    info = entry.machine.info
    machines = info.machines.get(flow, {})
    order = info.plan_lines.get(flow, {})
    for step_id in sorted(machines, key=lambda s: order.get(s, 0)):
        record = done.get(step_id)
        if record is not None and record.replayable:
            continue
        template = info.templates.get(flow, {}).get(step_id, "")
        try:
            names = {p.name for p in parse(template) if not isinstance(p, str)}
        except ValueError:
            names = set()
        spec = registry.steps_of(f"{entry.machine.system}.{machines[step_id]}").get(
            (flow, step_id)
        )
        if spec is not None:
            try:
                names |= set(inspect.signature(spec.func).parameters)
            except (TypeError, ValueError):
                pass
        if name in names:
            return step_id
    return None
