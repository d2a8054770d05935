"""The flight recorder: recent events in memory, written out as an incident when something goes wrong.

Hot path (`FlightRecorder.event`, called for every event by the runtime hooks): append the event
to the ring buffer of its severity (bounded, default 100 each) and, when the qualifier says so
(default: WARNING or above), open an incident. It never does I/O and never raises into the flow.
Events from the runtime are `sl2s.runtime.hooks.LazyEvent`s: the recorder reads only their severity
and exception flag (no decoding), keeps them as they are, and writes their line's bytes — exactly
what the log has — into incidents. Plain dicts (tests, other sources) work too and are serialised.

A writer thread owns the files. An incident is `incident-<UTC time>-<random>.jsonl` in the log dir:

1. a header line (`"sl2s.incident": "header"`): incident id, trigger event, pid, service instance
   id, sl2s + Python versions, plan digest, git revision when known, links (plan file:line of the
   failing step, source file:line of its function), exception and error fingerprint;
2. the buffered events, oldest first (`"sl2s.incident": "before"`), then the trigger (`"trigger"`);
3. the events of the following `trailing_seconds` (5 s) or `trailing_events` (100), whichever comes
   first (`"after"`); a trigger among them is recorded there and marked `"sl2s.trigger": true`;
4. a footer (`"sl2s.incident": "end"`) with the reason it closed.

Every line is flushed as it is written, so a process that dies mid-incident leaves a readable plain
file. When the incident closes, a gzip copy is written to `….jsonl.gz.tmp`, fsynced, renamed to
`….jsonl.gz` (directory fsynced), and only then is the plain file removed.

The one wait on the flow: when an incident opens, the thread that raised waits up to
`durable_timeout` (0.25 s) for the header and the buffered events to reach the OS, so that a process
killed (or exiting) right after an error still leaves its incident. 0 makes it fully asynchronous.
"""

from __future__ import annotations

import atexit
import gzip
import itertools
import os
import platform
import queue
import secrets
import shutil
import socket
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from sl2s import __version__
from sl2s.observe import events as ev
from sl2s.observe.fingerprint import ErrorGroups, event_fingerprint
from sl2s.observe.provenance import plan_digest
from sl2s.observe.revision import path_prefix, revision_of, source_template, source_url

Qualifier = Callable[[Mapping], bool]

_WARN = ev.WARN
_HOST = socket.gethostname()
DEFAULT_CAPACITY = 100
DEFAULT_TRAILING_SECONDS = 5.0
DEFAULT_TRAILING_EVENTS = 100


RECORDER_OPTIONS = frozenset(
    {
        "capacity",
        "qualifier",
        "trailing_seconds",
        "trailing_events",
        "compress",
        "durable_timeout",
        "context",
    }
)

# the names a capacity mapping may use for a severity bucket: the buckets, the severity texts
# events carry (`WARNING`, `CRITICAL`: Python's level names) and any case of them
_CAPACITY_NAMES = {
    **{name: i for i, name in enumerate(ev.SEVERITY_BUCKETS)},
    "WARNING": 3,
    "CRITICAL": 5,
}


def capacities(capacity: int | Mapping[str, int]) -> list[int]:
    """Ring buffer sizes per severity bucket from an int or a {severity: size} mapping.

    Keys are severity texts in any case: the buckets (TRACE DEBUG INFO WARN ERROR FATAL) and the
    texts events carry (WARNING, CRITICAL). An unknown key or a negative size is a ValueError,
    never silently ignored."""
    if not isinstance(capacity, Mapping):
        size = int(capacity)
        if size < 0:
            raise ValueError(f"capacity {size}: must be 0 or more")
        return [size] * len(ev.SEVERITY_BUCKETS)
    caps = [DEFAULT_CAPACITY] * len(ev.SEVERITY_BUCKETS)
    for key, value in capacity.items():
        index = _CAPACITY_NAMES.get(str(key).strip().upper())
        if index is None:
            known = ", ".join([*ev.SEVERITY_BUCKETS, "WARNING", "CRITICAL"])
            raise ValueError(f"capacity key {key!r}: not a severity ({known})")
        size = int(value)
        if size < 0:
            raise ValueError(f"capacity {key}={size}: must be 0 or more")
        caps[index] = size
    return caps


def warning_or_above(event: Mapping) -> bool:
    """The default qualifier: severity WARNING (13) or above, or any event with an exception."""
    has_exception = getattr(event, "has_exception", None)  # a LazyEvent: no decoding
    if has_exception is not None:
        return has_exception or ev.severity_number(event) >= ev.WARN
    return ev.severity_number(event) >= ev.WARN or "exception.type" in ev.attrs(event)


def new_incident_id(now: float | None = None) -> str:
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return f"incident-{stamp.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(4)}"


@dataclass
class _Open:
    """An incident the hot path is still feeding (owned by the hot path under the lock)."""

    id: str
    trigger: Mapping
    deadline: float
    directory: Path
    after: int = 0
    durable: threading.Event = field(default_factory=threading.Event)


class FlightRecorder:
    """A runtime hooks listener (`event(evt)`): ring buffers per severity and incident files."""

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        *,
        capacity: int | Mapping[str, int] = DEFAULT_CAPACITY,
        qualifier: Qualifier | None = None,
        trailing_seconds: float = DEFAULT_TRAILING_SECONDS,
        trailing_events: int = DEFAULT_TRAILING_EVENTS,
        compress: bool = True,
        durable_timeout: float = 0.25,
        context: Mapping[str, object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # None: follow the runtime's rule per incident (SL2S_LOG_DIR, else <system dir>/.sl2s/logs
        # of the trigger's machine, learnt from segment_started), so one recorder serves a process
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._systems: dict[str, str] = (
            {}
        )  # machine -> system package (when log_dir is None)
        self._provenance_cache: dict[str, dict] = {}
        self._set_capacity(capacity)
        self._qualifier = qualifier
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._open: _Open | None = None
        self.trailing_seconds = trailing_seconds
        self.trailing_events = trailing_events
        self.compress = compress
        self.durable_timeout = durable_timeout
        self.context = dict(context or {})
        self.context.setdefault("service.instance.id", uuid.uuid4().hex)
        self._clock = clock
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.errors = ErrorGroups()  # written by the writer thread only
        self.written: list[Path] = []  # closed incidents, in order
        self.failures = (
            0  # I/O errors swallowed by the writer (never raised into the flow)
        )

    def _set_capacity(self, capacity: int | Mapping[str, int]) -> None:
        caps = capacities(capacity)
        self._buffers: list[deque[tuple[int, Mapping]]] = [
            deque(maxlen=c) for c in caps
        ]
        # severity_number (0..24) -> its buffer, so the hot path does one index, no arithmetic
        self._by_number = [self._buffers[ev.severity_bucket(n)] for n in range(25)]

    def configure(self, **options) -> None:
        """Change options of a recorder already installed (what `install(...)` does when the
        generated system installed the default one first). Buffered events are kept when the
        capacity changes, up to the new sizes."""
        unknown = set(options) - RECORDER_OPTIONS
        if unknown:
            raise TypeError(f"unknown recorder option(s): {', '.join(sorted(unknown))}")
        with self._lock:
            if "capacity" in options:
                old = self._buffers
                self._set_capacity(options["capacity"])
                for buffer, previous in zip(self._buffers, old):
                    buffer.extend(previous)
            if "qualifier" in options:
                self._qualifier = options["qualifier"]
            for name in (
                "trailing_seconds",
                "trailing_events",
                "compress",
                "durable_timeout",
            ):
                if name in options:
                    setattr(self, name, options[name])
            if options.get("context"):
                self.context.update(options["context"])

    # ---------------------------------------------------------------------------- hot path

    def segment_started(self, info) -> None:
        if self.log_dir is None:
            machine, system = info.get("machine"), info.get("system")
            if machine and self._systems.get(machine) != system:
                self._systems[machine] = system

    def directory_for(self, trigger: Mapping) -> Path:
        """Where the incident of `trigger` goes (docs/architecture.md: the machine's log dir)."""
        if self.log_dir is not None:
            return self.log_dir
        configured = os.environ.get("SL2S_LOG_DIR")
        if configured:
            return Path(configured)
        system_dir = self.system_dir(ev.machine(trigger))
        return (system_dir or Path(".")) / ".sl2s" / "logs"

    def system_dir(self, machine: str) -> Path | None:
        """The generated system package's directory of a machine seen in segment_started."""
        system = self._systems.get(machine)
        module = sys.modules.get(system) if system else None
        path = getattr(module, "__file__", None)
        return Path(path).resolve().parent if path else None

    def _provenance(self, machine: str) -> dict:
        """plan digest and git revision for the header (computed on the writer thread, cached)."""
        where = self.system_dir(machine)
        key = str(where)
        found = self._provenance_cache.get(key)
        if found is None:
            found = {}
            try:
                if where is not None:
                    found["plan.digest"] = plan_digest(where)
                revision, origin = revision_of(where)
                found["git.revision"] = revision
                found["git.revision.from"] = origin
                template, repo = source_template(where)
                if template:
                    found["links.template"] = (template, repo, path_prefix(where))
            except (OSError, ValueError):
                pass
            self._provenance_cache[key] = found
        return found

    def event(self, evt: Mapping) -> None:
        try:
            seq = next(self._seq)
            try:  # a LazyEvent (what the runtime hands over): read without decoding
                number = evt.severity_number  # type: ignore[attr-defined]
                exception = evt.has_exception  # type: ignore[attr-defined]
            except AttributeError:  # a plain mapping
                number = evt.get("severity_number", 9)
                exception = None
            try:
                self._by_number[number].append((seq, evt))
            except (IndexError, TypeError):
                number = ev.severity_number(evt)
                self._buffers[ev.severity_bucket(number)].append((seq, evt))
            if self._open is not None:
                self._during(seq, evt)
            elif self._qualifier is None:
                if number >= _WARN or (
                    exception
                    if exception is not None
                    else "exception.type" in evt.get("attributes", ())
                ):
                    self._trigger(seq, evt)
            elif self._qualifier(evt):
                self._trigger(seq, evt)
        except Exception:  # noqa: BLE001 - a recorder must never break the flow
            self.failures += 1

    def _qualifies(self, evt: Mapping) -> bool:
        return (self._qualifier or warning_or_above)(evt)

    def _during(self, seq: int, evt: Mapping) -> None:
        with self._lock:
            current = self._open
            if current is None:
                pass
            elif self._clock() >= current.deadline:
                self._open = None
                self._queue.put(("close", current, "window"))
            else:
                current.after += 1
                self._queue.put(("event", current, evt, self._qualifies(evt)))
                if current.after >= self.trailing_events:
                    self._open = None
                    self._queue.put(("close", current, "limit"))
                return
        if self._qualifies(evt):
            self._trigger(seq, evt)

    def _trigger(self, seq: int, evt: Mapping) -> None:
        with self._lock:
            if self._open is not None:  # another thread opened one meanwhile: join it
                current = self._open
                current.after += 1
                self._queue.put(("event", current, evt, True))
                return
            before = sorted(
                (
                    item
                    for buffer in self._buffers
                    for item in tuple(buffer)
                    if item[0] < seq
                ),
                key=lambda item: item[0],
            )
            opened = _Open(
                new_incident_id(),
                evt,
                self._clock() + self.trailing_seconds,
                self.directory_for(evt),
            )
            self._open = opened if self.trailing_events > 0 else None
            self._queue.put(("open", opened, [e for _, e in before], evt))
            if self.trailing_events <= 0:
                self._queue.put(("close", opened, "limit"))
            self._ensure_thread()
        if self.durable_timeout > 0:
            opened.durable.wait(self.durable_timeout)

    # ---------------------------------------------------------------------------- lifecycle

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=_writer_loop,
                args=(weakref.proxy(self), self._queue),
                name="sl2s-flight-recorder",
                daemon=True,
            )
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> None:
        """Close the open incident now (reason "shutdown") and wait until everything is on disk."""
        with self._lock:
            current, self._open = self._open, None
            if current is not None:
                self._queue.put(("close", current, "shutdown"))
        if self._thread is None or not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(("sync", done))
        done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(("stop",))
            self._thread.join(timeout)

    def register_atexit(self) -> None:
        atexit.register(self.close, 5.0)

    # ---------------------------------------------------------------------------- writer side

    def header(self, incident_id: str, trigger: Mapping, buffered: int) -> dict:
        a = ev.attrs(trigger)
        links = {}
        if a.get("sl2s.plan"):
            links["plan"] = a["sl2s.plan"]
        if a.get("sl2s.raised_at"):  # the line that raised, in the user's code
            links["source"] = str(a["sl2s.raised_at"])
        elif a.get("code.filepath"):
            links["source"] = f"{a['code.filepath']}:{a.get('code.lineno') or 0}"
        provenance = dict(self._provenance(ev.machine(trigger)))
        template = provenance.pop("links.template", None)
        if template and links.get("source"):
            url = source_url(
                template[0],
                revision=str(
                    self.context.get("git.revision")
                    or provenance.get("git.revision")
                    or ""
                )
                or None,
                location=links["source"],
                repo=template[1],
                prefix=template[2],
            )
            if url:
                links["source_url"] = url
        header = {
            "sl2s.incident": "header",
            "id": incident_id,
            "opened_at": ev.utc_now_text(),
            "pid": os.getpid(),
            "host.name": _HOST,
            "deployment.environment": os.environ.get("SL2S_ENVIRONMENT") or None,
            "trailing_seconds": self.trailing_seconds,
            "service.name": ev.machine(trigger),
            "sl2s.version": __version__,
            "python.version": platform.python_version(),
            "plan.digest": None,
            "git.revision": None,
            **provenance,
            **{k: v for k, v in self.context.items() if v is not None},
            "links": links,
            "exception": (
                {"type": a.get("exception.type"), "message": a.get("exception.message")}
                if a.get("exception.type")
                else None
            ),
            "fingerprint": event_fingerprint(trigger),
            "buffered": buffered,
            "trigger": _as_json(trigger),
        }
        return header


def _event_json(event: Mapping) -> bytes:
    """The event's JSON on one line, no newline: a LazyEvent's line as written, else dumped."""
    line = getattr(event, "line", None)
    if type(line) is bytes:
        return line[:-1] if line.endswith(b"\n") else line
    return orjson.dumps(event if isinstance(event, dict) else dict(event))


def _as_json(event: Mapping):
    """The event as a value orjson writes as is (a LazyEvent's line, unchanged)."""
    if isinstance(event, dict):
        return event
    return orjson.Fragment(_event_json(event))


def _marked(
    event: Mapping, phase: str, trigger: bool, fingerprint: str | None
) -> bytes:
    """The event's JSON with the incident markers spliced in front (no copy of the event)."""
    mark: dict[str, object] = {"sl2s.incident": phase}
    if trigger:
        mark["sl2s.trigger"] = True
    if fingerprint:
        mark["sl2s.fingerprint"] = fingerprint
    body = _event_json(event)
    prefix = orjson.dumps(mark)
    if body == b"{}":
        return prefix + b"\n"
    return prefix[:-1] + b"," + body[1:] + b"\n"


class _File:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = path.open("wb")
        self.after = 0
        self.triggers = 1
        self.closed = False

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.handle.flush()


def _writer_loop(recorder, inbox: queue.SimpleQueue) -> None:
    files: dict[str, _File] = {}
    out: _File | None
    deadlines: dict[str, float] = {}
    while True:
        timeout = None
        if deadlines:
            try:
                timeout = max(min(deadlines.values()) - recorder._clock(), 0.0)
            except ReferenceError:
                return
        try:
            message = inbox.get(timeout=timeout)
        except queue.Empty:
            try:
                now = recorder._clock()
            except ReferenceError:
                return
            for incident_id, deadline in list(deadlines.items()):
                if now >= deadline:
                    _close(recorder, files.pop(incident_id), "window")
                    del deadlines[incident_id]
            continue
        except ReferenceError:
            return
        kind = message[0]
        try:
            if kind == "open":
                _, opened, before, trigger = message
                out = _open_file(recorder, opened, before, trigger)
                files[opened.id] = out
                deadlines[opened.id] = opened.deadline
            elif kind == "event":
                _, current, event, is_trigger = message
                out = files.get(current.id)
                if out is not None:
                    fp = recorder.errors.add(event, current.id) if is_trigger else None
                    out.after += 1
                    out.triggers += bool(is_trigger)
                    out.write(_marked(event, "after", is_trigger, fp))
            elif kind == "close":
                _, current, reason = message
                out = files.pop(current.id, None)
                deadlines.pop(current.id, None)
                if out is not None:
                    _close(recorder, out, reason)
            elif kind == "sync":
                message[1].set()
            elif kind == "stop":
                for incident_id in list(files):
                    _close(recorder, files.pop(incident_id), "shutdown")
                return
        except ReferenceError:
            return
        except Exception:  # noqa: BLE001 - disk full, permissions: count, never raise
            try:
                recorder.failures += 1
            except ReferenceError:
                return
            if kind == "open":
                message[1].durable.set()


def _open_file(
    recorder, opened: _Open, before: list[Mapping], trigger: Mapping
) -> _File:
    try:
        opened.directory.mkdir(parents=True, exist_ok=True)
        out = _File(opened.directory / f"{opened.id}.jsonl")
        fp = recorder.errors.add(trigger, opened.id)
        out.write(
            orjson.dumps(recorder.header(opened.id, trigger, len(before)), default=str)
            + b"\n"
        )
        out.write(b"".join(_marked(e, "before", False, None) for e in before))
        out.write(_marked(trigger, "trigger", True, fp))
        return out
    finally:
        opened.durable.set()


def _close(recorder, out: _File, reason: str) -> None:
    if out.closed:
        return
    out.closed = True
    footer = {
        "sl2s.incident": "end",
        "reason": reason,
        "events_after": out.after,
        "triggers": out.triggers,
        "closed_at": ev.utc_now_text(),
    }
    out.write(orjson.dumps(footer) + b"\n")
    os.fsync(out.handle.fileno())
    out.handle.close()
    final = out.path
    if recorder.compress:
        final = _compress(out.path)
    recorder.written.append(final)


def _compress(plain: Path) -> Path:
    gz = plain.with_name(plain.name + ".gz")
    tmp = plain.with_name(plain.name + ".gz.tmp")
    with plain.open("rb") as source, tmp.open("wb") as raw:
        with gzip.GzipFile(
            filename=plain.name, mode="wb", fileobj=raw, mtime=0
        ) as zipped:
            shutil.copyfileobj(source, zipped)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, gz)
    _fsync_dir(plain.parent)
    plain.unlink()
    return gz


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
