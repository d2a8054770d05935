"""Stdlib `logging` records emitted while a step runs become `sl2s.log` events of that step.

The runtime wraps the log-record factory (chaining whatever factory was installed before) instead
of adding a handler, so the user's logging configuration, its handlers and the "last resort" stderr
output behave exactly as without sl2s. Only records that the logging configuration enables are
created, hence captured: `logging.getLogger(__name__).info(...)` is captured when INFO is enabled
for that logger (`sl2s run` enables INFO on the root logger when logging is not configured).
"""

from __future__ import annotations

import logging
import threading

# CURRENT.step: (run, prepared step) while a step function runs in this thread; None otherwise and
# while an event is being emitted. (Thread-local, not a ContextVar: a step is a synchronous call, so
# nothing else runs in its thread meanwhile, and this is cheaper on the per-step path.)
class _Current(threading.local):
    step = None  # the default in every thread


CURRENT = _Current()

_installed = False
_lock = threading.Lock()


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
            current = CURRENT.step
            if current is not None:
                CURRENT.step = None  # a listener that logs must not recurse
                try:
                    current[0]._emit_log(current[1], record)
                except Exception:  # noqa: BLE001 - capturing a log line never breaks the step
                    pass
                finally:
                    CURRENT.step = current
            return record

        logging.setLogRecordFactory(sl2s_record_factory)
        _installed = True
