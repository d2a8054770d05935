"""An activation's identity and life: which machine, flow run and place it is; its begin and end
(listeners told, events flushed, the flow store's checkpoints committed before anything is
acknowledged).
"""

from __future__ import annotations

import threading
from typing import Protocol

from sl2s.runtime import hooks
from sl2s.runtime.core import durable, events, system
from sl2s.runtime.core.prepare import Prepared, StepHost
from sl2s.runtime.core.run.context import RunContext
from sl2s.runtime.errors import WiringError
from sl2s.runtime.store import FlowStore, StepRecord


class RunHost(StepHost, Protocol):
    """What a run needs of its machine (`Machine` is one): its names, its system's settings, its
    prepared steps."""

    resource: dict[str, str]

    def _prepare(self, flow: str, step_id: str) -> Prepared: ...


OPEN, RETURNED, FINISHED, FAILED = "open", "returned", "finished", "failed"
_local = threading.local()


def depth() -> int:
    """How many activations this thread is inside (0: none: no step is running here)."""
    return _depth()


def _depth() -> int:
    return getattr(_local, "depth", 0)


class RunActivation(RunContext):
    """One activation of one machine in one flow run: the entry or the segment of an inbound hop."""

    __slots__ = (
        "machine",
        "flow",
        "trace_id",
        "span_id",
        "parent_span_id",
        "correlation_id",
        "causation_id",
        "stack",
        "at",
        "_state",
        "_return",
        "_sink",
        "_lines",
        "_static",
        "_info",
        "_steps",
        "_last_step",
        "_ended",
        "_store",  # the flow store (None: durability off)
        "_buf",  # this thread's uncommitted step records for that store (durable.Buffer)
        "_replay",  # recorded steps of this flow run, by id, when it may have history
        "_attempt",  # the flow run's resume attempt (part of its hops' idempotency keys)
        "meta",  # who started the flow run and why (None: nobody said)
        "parent",  # (correlation id, step id) of the step whose code started this flow run
    )

    _sink: events.Sink
    _lines: list[bytes]

    def __init__(
        self,
        machine: RunHost,
        flow: str,
        fields: dict,
        *,
        trace_id: str,
        parent_span_id: str | None,
        correlation_id: str,
        causation_id: str | None,
        secret_names: set[str],
        stack: list[str],
        at: str | None,
        meta: dict[str, str] | None = None,
        parent: tuple[str, str] | None = None,
    ) -> None:
        RunContext.__init__(self, fields, secret_names)
        self.machine = machine
        self.flow = flow
        self.trace_id = trace_id
        self.span_id = events.new_span_id()
        self.parent_span_id = parent_span_id
        self.correlation_id = correlation_id
        # the id of the last event of this flow run (the next one's cause)
        self.causation_id = causation_id
        self.stack = stack  # machines waiting for this one, outermost first
        self.at = at
        self._state = OPEN
        self._return: tuple[str | None, dict] | None = None
        # (`_sink` and its line buffer `_lines`, appended to directly on the hot path: set by
        # `_begin`, which comes first)
        self._static: dict[str, tuple[bytes, ...]] = {}
        self._info: dict = {}
        self._steps = machine.prepared(flow)
        self._last_step: Prepared | None = None
        self._ended = False
        self._store: FlowStore | None = None
        self._buf: durable.Buffer | None = None
        self._replay: dict[str, StepRecord] | None = None
        self._attempt = 0
        self.meta = meta
        self.parent = parent

    def __repr__(self) -> str:
        return (
            f"<Run {self.machine.name} flow={self.flow!r} at={self.at!r} {self._state}>"
        )

    def _begin(self, kind: str) -> None:
        machine = self.machine
        store = durable.store_for(machine.info.dir)  # opened once per process
        if store is not None:
            self._store, self._buf = store, durable.buffer_for(store)
        _local.depth = _depth() + 1
        self._sink = events.sink(system.log_dir(machine.info), machine.name)
        self._lines = self._sink.lines
        self._info = {
            "kind": kind,
            "system": machine.system,
            "machine": machine.name,
            "flow": self.flow,
            "at": self.at,
            "correlation_id": self.correlation_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
        }
        if hooks.started_fns:
            hooks.emit_started(self._info)

    def _end(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            self._state = FAILED
        depth = _local.depth = max(_depth() - 1, 0)
        if hooks.finished_fns:
            hooks.emit_finished(self._info, error)
        buf = self._buf
        if buf is not None and self.at is None:  # the entry: the flow run ends here
            buf.ended.append(durable.ending(self._store, self.correlation_id, error))
        if depth == 0:
            events.flush_all()
        if buf and not (self.at is not None and durable.defers_commit(self._store)):
            # an entry's end, or an inbound hop's answer: commit before acknowledging (the HTTP
            # server commits a hop's checkpoints together with its stored answer instead)
            self._commit(error)

    def _commit(self, error: BaseException | None = None) -> None:
        """Commit this thread's step records (one transaction). A store that fails fails the run
        (nothing is acknowledged), unless it is failing already. The buffered events are written
        first: a crash between the two leaves an event whose step runs again (at-least-once),
        never a recorded step without its event."""
        events.flush_all()
        try:
            self._buf.commit()  # type: ignore[union-attr]  # (called only with a buffer)
        except (
            Exception
        ) as problem:  # noqa: BLE001 - sqlite3/psycopg errors, one message
            failure = WiringError(
                f"the flow store {getattr(self._store, 'url', '')} failed to record flow run "
                f"{self.correlation_id}: {type(problem).__name__}: {problem}"
            )
            if error is None:
                raise failure from problem
            durable.complain(failure.message)
