"""Reading event JSON lines (docs/architecture.md, "Events") without loading them all.

Pure helpers: accessors for the attributes every part of sl2s.observe needs, and streaming
readers over files and directories (plain `.jsonl` or `.jsonl.gz`). A line that is not a JSON
object (a torn last line of a killed process, a stray print) is skipped and counted, never fatal.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from sl2s.diagnostics import Diagnostic, Sl2sError

STEP = "sl2s.step"
LOG = "sl2s.log"

# OpenTelemetry severity numbers: 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL
WARN = 13
ERROR = 17
SEVERITY_BUCKETS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def attrs(event: Mapping[str, Any]) -> dict[str, Any]:
    a = event.get("attributes")
    return a if isinstance(a, dict) else {}


def event_id(event: Mapping[str, Any]) -> str | None:
    return attrs(event).get("sl2s.event_id")


def correlation_id(event: Mapping[str, Any]) -> str | None:
    return attrs(event).get("sl2s.correlation_id")


def causation_id(event: Mapping[str, Any]) -> str | None:
    return attrs(event).get("sl2s.causation_id")


def machine(event: Mapping[str, Any]) -> str:
    a = attrs(event)
    m = a.get("sl2s.machine")
    if m:
        return m
    resource = event.get("resource")
    if isinstance(resource, dict) and resource.get("service.name"):
        return resource["service.name"]
    return "?"


def severity_number(event: Mapping[str, Any]) -> int:
    n = event.get("severity_number")
    if isinstance(n, int):
        return n
    text = str(event.get("severity_text") or "").upper()
    return {
        "TRACE": 1,
        "DEBUG": 5,
        "INFO": 9,
        "WARN": 13,
        "WARNING": 13,
        "ERROR": 17,
    }.get(text, 21 if text in ("FATAL", "CRITICAL") else 9)


def severity_bucket(number: int) -> int:
    """Index into SEVERITY_BUCKETS for an OpenTelemetry severity number."""
    if number <= 0:
        return 2
    return min((number - 1) // 4, 5)


def is_failure(event: Mapping[str, Any]) -> bool:
    return severity_number(event) >= ERROR or "exception.type" in attrs(event)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def utc_now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------------------------- files


def is_incident_file(path: Path) -> bool:
    return path.name.startswith("incident-")


def event_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The event files named: files as given, directories expanded to their `*.jsonl(.gz)`.

    Incident files inside a directory are left out (their events are copies of the machine logs);
    named explicitly, they are read. A path that does not exist is a user error.
    """
    files: list[Path] = []
    missing: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz"))
                and not is_incident_file(p)
            )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            missing.append(Diagnostic(str(raw), 0, "no such file or directory"))
    if missing:
        raise Sl2sError(missing)
    seen: dict[Path, None] = {}
    for f in files:
        seen.setdefault(f, None)
    return list(seen)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def files_size(files: Iterable[Path]) -> int:
    """The files' sizes on disk: what ReadStats.progress counts up to for one pass over them."""
    return sum(_size(p) for p in files)


def open_lines(path: Path):
    """A binary line iterator over a plain or gzip file (a truncated gzip ends quietly)."""
    if path.name.endswith(".gz"):
        return _gzip_lines(path)
    return path.open("rb")


def _gzip_lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as handle:
        try:
            yield from handle
        except (EOFError, OSError, gzip.BadGzipFile):
            return


PROGRESS_EVERY = 1 << 14  # lines between two progress reports within a file


@dataclass
class ReadStats:
    files: int = 0
    lines: int = 0
    skipped: int = 0
    skipped_at: list[str] = field(default_factory=list)
    # told `(bytes read so far, total)` (of the files' sizes on disk), every PROGRESS_EVERY lines
    # of a plain file and at the end of each file; `total` is what the reader announced
    progress: Callable[[int, int], None] | None = None
    total: int = 0
    read: int = 0  # bytes of the files finished

    def tell_of(self, lines: object) -> Callable[[], int] | None:
        """How far into its file an open line iterator is, when progress is asked for and the
        iterator can say (a plain file; not a gzip stream)."""
        return getattr(lines, "tell", None) if self.progress is not None else None

    def reached(self, offset: int) -> None:
        """Report `offset` bytes into the file being read."""
        if self.progress is not None:
            self.progress(self.read + offset, self.total)

    def finished(self, path: Path) -> None:
        """Report the end of `path`."""
        if self.progress is not None:
            self.read += _size(path)
            self.progress(self.read, self.total)

    def skip(self, source: str, lineno: int) -> None:
        self.skipped += 1
        if len(self.skipped_at) < 5:
            self.skipped_at.append(f"{source}:{lineno}")


def iter_events(
    files: Iterable[Path],
    stats: ReadStats | None = None,
    contains: bytes | None = None,
) -> Iterator[tuple[str, int, dict]]:
    """(source file, line number, event) for every event line; `contains` pre-filters raw lines."""
    stats = stats if stats is not None else ReadStats()
    loads = orjson.loads
    for path in files:
        stats.files += 1
        source = str(path)
        lines = open_lines(path)
        tell = stats.tell_of(lines)
        try:
            for lineno, line in enumerate(lines, 1):
                stats.lines += 1
                if tell is not None and not lineno % PROGRESS_EVERY:
                    stats.reached(tell())
                if contains is not None and contains not in line:
                    continue
                try:
                    event = loads(line)
                except orjson.JSONDecodeError:
                    if line.strip():
                        stats.skip(source, lineno)
                    continue
                if not isinstance(event, dict) or "attributes" not in event:
                    continue
                yield source, lineno, event
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()
        stats.finished(path)
