"""In-process listeners on a running system: the plug-in point for the flight recorder, OTel export,
`sl2s run`'s story printer and anything else that wants to see what happens as it happens.

    from sl2s.runtime import hooks

    class Recorder:
        def event(self, evt: LazyEvent) -> None: ...            # every event as written (***)
        def segment_started(self, info: dict) -> None: ...      # a machine activation begins
        def segment_finished(self, info: dict, error) -> None:  # ... ends; error: exception or None

    hooks.subscribe(Recorder())

A listener defines any subset of the three methods (a plain callable is taken as `event`). They are
called synchronously, in subscription order, in the thread running the step, after the event has
been written. `evt` is a `LazyEvent`: a read-only `Mapping` equal to the written line decoded (JSON
types only). It holds the line's bytes (`evt.line`, exactly as written, newline included) and the
scalars a qualifier needs (`severity_number`, `severity_text`, `event_name`, `has_exception`) as
attributes; the line is decoded only when anything else is read (once, then cached). It is
immutable, so a listener may keep it (a later in-place change of the context does not change it);
the nested values it returns are shared by the listeners of that event: do not change them
(`orjson.loads(evt.line)` gives a private copy). `info` holds `kind` ("entry" or "segment"),
`machine`, `flow`, `at` (None for an entry), `correlation_id`, `trace_id`, `span_id`,
`parent_span_id` (None for an entry) and `system`.

A listener that raises never breaks the flow: the exception is reported once per listener on stderr
and otherwise ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping

import orjson

_loads = orjson.loads

# Bound methods, rebuilt on (un)subscribe; the runtime reads these lists directly (hot path:
# an empty list costs one truth test per event).
event_fns: list[Callable[[LazyEvent], object]] = []
started_fns: list[Callable[[dict], object]] = []
finished_fns: list[Callable[[dict, BaseException | None], object]] = []

_listeners: list[object] = []

# keys of the envelope a LazyEvent answers without decoding its line
_SCALARS = {
    "severity_number": "severity_number",
    "severity_text": "severity_text",
    "event_name": "event_name",
}


class LazyEvent(Mapping):
    """One event as listeners see it: a read-only mapping equal to the written JSON line decoded.

    `line` is the line's bytes exactly as written (newline included); `severity_number`,
    `severity_text`, `event_name` and `has_exception` (the event carries `exception.type`) are
    attributes, answered without decoding, as are the same keys of the mapping. Reading any other
    key, iterating, `len`, `==` decode the line once (orjson; the result is cached). Immutable: safe
    to keep.
    """

    __slots__ = (
        "line",
        "severity_number",
        "severity_text",
        "event_name",
        "has_exception",
        "_decoded",
    )

    _decoded: dict

    def __init__(
        self,
        line: bytes,
        severity_number: int = 9,
        severity_text: str = "INFO",
        event_name: str = "sl2s.step",
        has_exception: bool = False,
    ) -> None:
        self.line = line
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.event_name = event_name
        self.has_exception = has_exception

    def decoded(self) -> dict:
        """The line decoded (cached: the same dict on every call; do not change it)."""
        try:
            return self._decoded
        except AttributeError:
            found = self._decoded = _loads(self.line)
            return found

    def __getitem__(self, key: str):
        name = _SCALARS.get(key)
        if name is not None:
            return getattr(self, name)
        return self.decoded()[key]

    def __contains__(self, key: object) -> bool:
        return key in _SCALARS or key in self.decoded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.decoded())

    def __len__(self) -> int:
        return len(self.decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyEvent):
            return self.line == other.line or self.decoded() == other.decoded()
        if isinstance(other, Mapping):
            return self.decoded() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a mapping: unhashable

    def __repr__(self) -> str:
        return f"LazyEvent({self.line.rstrip().decode('utf-8', 'replace')})"

    def __reduce__(self):
        return (
            LazyEvent,
            (
                self.line,
                self.severity_number,
                self.severity_text,
                self.event_name,
                self.has_exception,
            ),
        )


class StepEvent(LazyEvent):
    """The event of a step that returned (`run.step`): INFO `sl2s.step`, no exception. The
    runtime creates it without `__init__` (`object.__new__` and one attribute: the line).
    """

    __slots__ = ()
    severity_number = 9
    severity_text = "INFO"
    event_name = "sl2s.step"
    has_exception = False

    def __init__(self, line: bytes) -> None:
        self.line = line


_complained: set[int] = set()


def _rebuild() -> None:
    events, started, finished = [], [], []
    for listener in _listeners:
        fn = getattr(listener, "event", None)
        if (
            fn is None
            and callable(listener)
            and not hasattr(listener, "segment_started")
        ):
            fn = listener
        if fn is not None:
            events.append(fn)
        if hasattr(listener, "segment_started"):
            started.append(listener.segment_started)
        if hasattr(listener, "segment_finished"):
            finished.append(listener.segment_finished)
    # mutate in place: other modules hold references to these lists
    event_fns[:] = events
    started_fns[:] = started
    finished_fns[:] = finished


def subscribe(listener: object) -> object:
    """Call `listener` for every event / activation from now on. Returns the listener."""
    if listener not in _listeners:
        _listeners.append(listener)
        _rebuild()
    return listener


def unsubscribe(listener: object) -> None:
    """Stop calling `listener` (no error when it was not subscribed)."""
    if listener in _listeners:
        _listeners.remove(listener)
        _rebuild()


def listeners() -> tuple[object, ...]:
    return tuple(_listeners)


def _complain(fn: Callable, error: BaseException) -> None:
    owner = getattr(fn, "__self__", fn)
    key = id(owner)
    if key in _complained:
        return
    _complained.add(key)
    try:
        sys.stderr.write(
            f"sl2s: listener {owner!r} raised {type(error).__name__}: {error}; ignored\n"
        )
    except Exception:  # noqa: BLE001 - stderr may be closed; still never break the flow
        pass


def emit_event(evt: LazyEvent) -> None:
    for fn in event_fns:
        try:
            fn(evt)
        except Exception as error:  # noqa: BLE001 - a listener never breaks the flow
            _complain(fn, error)


def emit_started(info: dict) -> None:
    for fn in started_fns:
        try:
            fn(info)
        except Exception as error:  # noqa: BLE001
            _complain(fn, error)


def emit_finished(info: dict, failure: BaseException | None) -> None:
    for fn in finished_fns:
        try:
            fn(info, failure)
        except Exception as error:  # noqa: BLE001
            _complain(fn, error)
