"""Stdlib `logging` records emitted while a step runs become `sl2s.log` events of that step.

The runtime wraps the log-record factory (chaining whatever factory was installed before) instead
of adding a handler, so the user's logging configuration, its handlers and the "last resort" stderr
output behave exactly as without sl2s, except that a record whose text holds a secret of the run has
it masked in place before any handler sees it (`Run._emit_log`, docs/runtime.md "Secrets"). Only records that the logging configuration enables are
created, hence captured: `logging.getLogger(__name__).info(...)` is captured when INFO is enabled
for that logger (`sl2s run` enables INFO on the root logger when logging is not configured).

Finding the step costs nothing per step: every step function is called through a small generated
function compiled with the file name `CALLER_FILE`, whose caller is `Run.step`. When a record is
created, the factory walks up the stack to that frame (only frames of this thread: a step's own
threads are not followed) and takes the run and step from `Run.step`'s locals. Records created while
an event is being emitted (by a listener) are not captured.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import FrameType
from typing import Any

CALLER_FILE = "<sl2s step call>"


class _State(threading.local):
    emitting = False  # the default in every thread


_state = _State()
_installed = False
_lock = threading.Lock()


def current_step(frame: FrameType | None) -> tuple[Any, Any] | None:
    """(run, prepared step) of the step running below `frame` in this thread, or None."""
    while frame is not None:
        if frame.f_code.co_filename == CALLER_FILE:
            outer = frame.f_back
            if outer is None or outer.f_code.co_name != "step":
                return None
            local = outer.f_locals
            run, step = local.get("self"), local.get("p")
            return (run, step) if run is not None and step is not None else None
        frame = frame.f_back
    return None


def install() -> None:
    """Wrap the log-record factory once per process (idempotent)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def sl2s_record_factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            if _state.emitting:
                return record
            try:
                current = current_step(sys._getframe(1))
            except Exception:  # noqa: BLE001 - never break a logging call
                current = None
            if current is not None:
                _state.emitting = True  # a listener that logs must not recurse
                try:
                    current[0]._emit_log(current[1], record)
                except (
                    Exception
                ):  # noqa: BLE001 - capturing a log line never breaks the step
                    pass
                finally:
                    _state.emitting = False
            return record

        logging.setLogRecordFactory(sl2s_record_factory)
        _installed = True
