"""Event plumbing: ids, timestamps, and the JSON-lines sink (one file per machine).

Hot path: an event is serialised once with orjson and appended to an in-memory buffer; the
buffer is written with one `os.write` on an `O_APPEND` descriptor (whole lines only, so several
processes may append to one file) when it holds `FLUSH_LINES` lines, at the end of every outermost
activation (a flow's entry, or an inbound hop) and at interpreter exit.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import time

import orjson

FLUSH_LINES = (
    256  # lines buffered per file before a write (also flushed at every flow end)
)

SEVERITY = {  # OpenTelemetry severity numbers
    "DEBUG": 5,
    "INFO": 9,
    "WARNING": 13,
    "ERROR": 17,
    "CRITICAL": 21,
}

dumps = orjson.dumps
APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE

# -- ids ----------------------------------------------------------------------------------------

# An event id is 32 decimal digits: an 18-digit random prefix drawn per process (~60 bits; first
# digit non-zero) followed by a 14-digit counter: `str()` of one integer from a counter. `ids` holds
# the counter; it is replaced in place after a fork, so the runtime's hot path may hold the list.
_COUNTER_DIGITS = 14
ids: list = [itertools.count(10**31)]


def _reseed() -> None:
    prefix = 10**17 + int.from_bytes(os.urandom(8), "big") % (9 * 10**17)
    ids[0] = itertools.count(prefix * 10**_COUNTER_DIGITS)


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_event_id() -> str:
    """32 decimal digits: a per-process random prefix (18 digits) and a counter (14 digits):
    unique, cheap, ordered within a process."""
    return str(next(ids[0]))


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_correlation_id() -> str:
    """32 hex digits, time-ordered: the time in milliseconds (12 digits) then 80 random bits
    (20 digits), as UUIDv7 lays them out. The flow store keys its rows by correlation id, and
    time-ordered keys are inserted at the right edge of its b-trees: a group commit of many
    flows writes a few pages instead of one per flow and b-tree, and those pages stay cached.
    """
    return f"{_time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def new_span_id() -> str:
    return os.urandom(8).hex()


# -- timestamps ---------------------------------------------------------------------------------

_time_ns = time.time_ns
# [(first microsecond of the cached second, first microsecond of the next, b"2026-11-23T10:00:00.")]
# The tuple is swapped whole, so a reader in another thread sees one consistent second.
clock: list[tuple[int, int, bytes]] = [(0, 0, b"")]


def tick(us: int) -> tuple[int, int, bytes]:
    """The `clock` entry for the second holding `us` (microseconds since the epoch, UTC)."""
    second = us // 1_000_000
    start = second * 1_000_000
    text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
    cached = clock[0] = (start, start + 1_000_000, text.encode())
    return cached


def now() -> str:
    """UTC time as `2026-11-23T10:00:00.000000Z` (the date/time text is cached per second; the
    runtime's step event formats the same way, inline)."""
    us = _time_ns() // 1000
    start, end, prefix = clock[0]
    if not start <= us < end:
        start, end, prefix = tick(us)
    return f"{prefix.decode()}{us - start:06d}Z"


# -- sinks --------------------------------------------------------------------------------------


class Sink:
    """Buffered appender of JSON lines to one file.

    Writers append whole lines to `lines` (a list: an append is atomic, so threads need no lock) and
    call `flush()` when `len(lines) >= FLUSH_LINES`; `flush()` joins the first `len(lines)` lines
    and deletes them (lines appended meanwhile by other threads stay for the next flush).
    """

    __slots__ = ("path", "lines", "_fd", "_lock", "_failed")

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: list[bytes] = []
        self._fd = -1
        self._lock = threading.Lock()
        self._failed = False

    def write(self, line: bytes) -> None:
        lines = self.lines
        lines.append(line)
        if len(lines) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        lines = self.lines
        if not lines:
            return
        with self._lock:
            count = len(lines)
            if not count:
                return
            data = b"".join(lines[:count])
            del lines[:count]
            try:
                if self._fd < 0:
                    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                    self._fd = os.open(
                        self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
                    )
                view = memoryview(data)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as error:
                # like logging's handleError: an unwritable log never breaks a flow; say it once
                if not self._failed:
                    self._failed = True
                    try:
                        sys.stderr.write(
                            f"sl2s: cannot write events to {self.path}: {error}; "
                            "dropping them (set SL2S_LOG_DIR)\n"
                        )
                    except Exception:  # noqa: BLE001
                        pass

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


_sinks: dict[str, Sink] = {}
_sinks_lock = threading.Lock()


def sink(log_dir: str, machine: str) -> Sink:
    path = os.path.join(log_dir, f"{machine}.jsonl")
    found = _sinks.get(path)
    if found is None:
        with _sinks_lock:
            found = _sinks.setdefault(path, Sink(path))
    return found


def flush_all() -> None:
    for s in list(_sinks.values()):
        s.flush()


def close_all() -> None:
    """Flush and close every sink (tests, and interpreter exit)."""
    with _sinks_lock:
        sinks = list(_sinks.values())
        _sinks.clear()
    for s in sinks:
        try:
            s.close()
        except OSError:
            pass


def _forget_after_fork() -> None:
    # the child must not write the parent's buffered lines a second time
    for s in _sinks.values():
        s.lines.clear()


atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
