"""`Run`: one activation of one machine in one flow run: the entry (`Machine.start`) or a segment
run for an inbound hop (`Machine.handle`). It holds the context (a dict of JSON data), runs steps,
writes one event per step, hops with `call`, and ends with `return_to` (segment) or `finish`
(entry). What generated wiring drives (docs/runtime.md).

Its concerns, one class each, from the bottom up (each only calls those below it):
`RunContext` (context.py: the context and its masked mirror), `RunActivation` (activation.py: who
and where, begin/end, commits), `RunEvents` (events.py: event lines), `RunFailures` (failures.py),
`RunHops` (hops.py: `call`, `return_to`) and `Run` here: `step`, replay of recorded steps, `finish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sl2s.runtime import hooks
from sl2s.runtime.core import events
from sl2s.runtime.core.registry import UNSET
from sl2s.runtime.core.run.activation import FINISHED, OPEN
from sl2s.runtime.core.run.events import dumps
from sl2s.runtime.core.run.hops import RunHops
from sl2s.runtime.errors import WiringError

if TYPE_CHECKING:
    from sl2s.runtime.core.prepare import Prepared

_MISSING = object()
_NOTHING_SET = ("{}", True)  # checkpoint of a step that returned None
_FLUSH_LINES = events.FLUSH_LINES
_time_ns = events._time_ns
_clock = events.clock
_tick = events.tick
_ids = events.ids  # [event id counter] (replaced in place after a fork)
_event_fns = hooks.event_fns
_StepEvent = hooks.StepEvent
_new = object.__new__


class Run(RunHops):
    """One activation of one machine in one flow run."""

    __slots__ = ()

    def step(self, step_id: str) -> None:
        """Run the step `step_id` of this flow on this machine and write its event."""
        if self._state is not OPEN:
            self._check_open("step")
        p = self._steps.get(step_id)
        if p is None:
            try:
                p = self.machine._prepare(self.flow, step_id)
            except WiringError as failure:
                self._raise(failure)
        if self._replay is not None and self._replayed(p):
            return  # completed before a crash or a failure: its recorded outcome, no new event
        try:
            result = p.call(self.fields)
        except (
            Exception
        ) as exc:  # noqa: BLE001 - the user's step failed: report and end the flow
            self._step_raised(p, exc)
        self._last_step = p
        if result is not None:
            if type(result) is dict and len(result) == 1:
                # the common case, inline: one plain, non-secret field set
                ((key, value),) = result.items()
                if (
                    key in p.keys_ok
                    and value is not UNSET
                    and key not in self.secret_names
                ):
                    # (masked, if it holds a secret, when the event is written)
                    self.fields[key] = self._masked[key] = value
                    self.set_by[key] = step_id
                else:
                    self._merge_result(p, result)
            else:
                self._merge_result(p, result)
        # -- the event (hot path: keep it flat) --
        # The parts of the line that do not change within this activation are serialised once
        # (per step, its ids put in per activation: RunEvents._static_parts);
        # a step joins them with its timestamp, message, ids, fields and unset list. (Joined here:
        # keeping the small orjson outputs alive until the buffer is written costs more.)
        masked = self._masked
        body, unset = p.render(masked)
        static = self._static.get(step_id)
        if static is None:
            static = self._static[step_id] = self._static_parts(p)
        try:
            fields = dumps(masked)
        except TypeError:
            self._not_json(p, masked.copy())
        masker = self._masker
        if masker is not None:  # Masker.stale, inline
            for probe in masker.encoded:
                if fields.find(probe) >= 0:
                    # a field set or changed in place may hold a secret: mask the mirror
                    self._mask_data()
                    body, unset = p.render(masked)
                    fields = dumps(masked)
                    break
        event_id = str(next(_ids[0]))  # events.new_event_id(), inline
        us = _time_ns() // 1000
        start, end, second = _clock[0]
        if not start <= us < end:
            start, end, second = _tick(us)
        cause = self.causation_id
        s0, s1, s2, s3, s4, s5, s6 = static
        micro = b"%06d" % (us - start)
        line = b"".join(
            (
                s0,
                second,
                micro,
                s1,
                dumps(body),
                s2,
                event_id.encode(),
                s3,
                dumps(cause),
                s4,
                fields,
                s5,
                dumps(unset) if unset else b"[]",
                s6,
            )
        )
        lines = self._lines
        lines.append(line)
        if len(lines) >= _FLUSH_LINES:
            self._sink.flush()
        self.causation_id = event_id
        if (
            self._buf is not None
        ):  # the step's checkpoint, committed with the next group commit
            outcome, replayable = (
                _NOTHING_SET if result is None else self._outcome(result)
            )
            self._buf.steps.append(
                (
                    self.correlation_id,
                    step_id,
                    self.machine.name,
                    outcome,
                    replayable,
                    event_id,
                    us / 1e6,
                )
            )
        if _event_fns:
            # listeners get the written line, decoded only if they read more than the severity
            # and the event name (hooks.LazyEvent); hooks.emit_event, inline
            evt = _new(_StepEvent)
            evt.line = line
            for fn in _event_fns:
                try:
                    fn(evt)
                except (
                    Exception
                ) as error:  # noqa: BLE001 - a listener never breaks the flow
                    hooks._complain(fn, error)

    def _outcome(self, result: Mapping) -> tuple[str, bool]:
        """What a step's checkpoint keeps: (JSON text of the fields it set, as the masked view
        has them; whether replaying it restores the context). Not replayable when it set a secret
        (never stored), unset a field, or set a value that a secret had to be masked out of.
        """
        ctx, masked, names = self.fields, self._masked, self.secret_names
        if (
            type(result) is dict and len(result) == 1
        ):  # the common case: one plain field
            for key in result:
                if key not in names and masked.get(key, _MISSING) is ctx.get(
                    key, masked
                ):
                    return dumps(result).decode(), True
        kept, replayable = {}, True
        for key in result:
            if key in names or key not in ctx:
                replayable = False
                continue
            value = masked.get(key, _MISSING)
            if value is not ctx[key]:
                replayable = False
                if value is _MISSING:
                    continue
            kept[key] = value
        return dumps(kept).decode(), replayable

    def _replayed(self, p: Prepared) -> bool:
        """Replay step `p` from its checkpoint when it has a replayable one: merge the recorded
        outcome, continue causation from its recorded event, write nothing."""
        record = self._replay.get(p.id) if self._replay is not None else None
        if record is None or not record.replayable:
            return False
        outcome = record.outcome
        if outcome:
            self.fields.update(outcome)
            for key in outcome:
                self.set_by[key] = p.id
            self._remask()
        if record.event_id:
            self.causation_id = record.event_id
        self._last_step = p
        return True

    def _merge_result(self, p: Prepared, result: object) -> None:
        if not isinstance(result, dict):
            if not isinstance(result, Mapping):
                self._contract(
                    p,
                    f"step function {p.function} returned {type(result).__name__}; a step returns "
                    "None or a mapping of field names to values",
                )
            result = dict(result)
        ctx, set_by, names, masked = (
            self.fields,
            self.set_by,
            self.secret_names,
            self._masked,
        )
        remask = False
        step_id = p.id
        for key, value in result.items():
            if type(key) is not str or not key.isidentifier():
                self._contract(
                    p,
                    f"step function {p.function} returned the key {key!r}; field names are "
                    "identifiers",
                )
            p.keys_ok.add(key)
            set_by[key] = step_id
            if value is UNSET:
                ctx.pop(key, None)
                masked.pop(key, None)
                remask = remask or key in names
                continue
            ctx[key] = value
            if key in names:
                remask = True
            else:
                masked[key] = value  # masked if need be when the event is written
        if remask:
            self._remask()

    def finish(self) -> dict:
        """End the flow run on its entry machine; returns the final context (secrets included)."""
        if self._state is not OPEN:
            self._check_open("finish")
        if self.at is not None:
            self._raise(
                WiringError(
                    f"run.finish() in a segment of machine '{self.machine.name}' (flow "
                    f"'{self.flow}' at '{self.at}'); segments end with run.return_to(...)"
                )
            )
        self._state = FINISHED
        self._end(None)
        return dict(self.fields)
