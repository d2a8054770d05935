"""In-process listeners on a running system: the plug-in point for the flight recorder, OTel export,
`sl2s run`'s story printer and anything else that wants to see what happens as it happens.

    from sl2s.runtime import hooks

    class Recorder:
        def event(self, evt: dict) -> None: ...                 # every event, as written (secrets ***)
        def segment_started(self, info: dict) -> None: ...      # a machine activation begins
        def segment_finished(self, info: dict, error) -> None:  # ... ends; error: exception or None

    hooks.subscribe(Recorder())

A listener defines any subset of the three methods (a plain callable is taken as `event`). They are
called synchronously, in subscription order, in the thread running the step, after the event has been
written. `evt` is a fresh dict equal to the written line decoded (JSON types only), so a listener
may keep it. `info` holds `kind` ("entry" or "segment"), `machine`, `flow`, `at` (None for an entry),
`correlation_id`, `trace_id`, `span_id`, `parent_span_id` (None for an entry) and `system`.

A listener that raises never breaks the flow: the exception is reported once per listener on stderr
and otherwise ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

# Bound methods, rebuilt on (un)subscribe; the runtime reads these lists directly (hot path:
# an empty list costs one truth test per event).
event_fns: list[Callable[[dict], object]] = []
started_fns: list[Callable[[dict], object]] = []
finished_fns: list[Callable[[dict, BaseException | None], object]] = []

_listeners: list[object] = []
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


def emit_event(evt: dict) -> None:
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
