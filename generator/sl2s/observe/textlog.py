"""Plain-text application logs: one message per line, their common prefixes stripped.

A line like `2026-11-23 10:00:01,234 ERROR [php] app.db: PHP Fatal error: …` has a prefix — a
timestamp, a level, a thread or logger name — before its message. `split_line` strips it:

- the default prefix (`DEFAULT_PREFIX`) is any run, at the start of the line, of timestamps (ISO
  8601 with `T` or a space, syslog's `Nov 23 10:00:01`, `081109 203615`-style digits, times),
  `[bracketed]` or `<angled>` fields, numbers (pids), levels (TRACE … FATAL, WARNING, CRITICAL,
  SEVERE, NOTICE; with a `:`, or `[bracketed]`), then one `name:` or `name[pid]:` (a logger or
  program), and a host name after a syslog timestamp — but only when that run holds a timestamp
  or a level (so `12 apples` keeps its number);
- `prefix=` replaces it with the user's regular expression, matched at the start of the line:
  the message is its named group `message` when it has one, else what follows the match. A level
  is its named group `level` when it has one.

The level found (else INFO) becomes the line's severity. Each line is an event-like dict with
`event_name` `text.line`, so the pattern analysis and `sl2s watch` treat text and sl2s events
alike; its source is `FILE:LINE`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from sl2s.diagnostics import Diagnostic, Sl2sError

TEXT = "text.line"

_LEVELS = {
    "TRACE": (1, "TRACE"),
    "DEBUG": (5, "DEBUG"),
    "INFO": (9, "INFO"),
    "NOTICE": (10, "INFO"),
    "WARN": (13, "WARN"),
    "WARNING": (13, "WARN"),
    "ERROR": (17, "ERROR"),
    "ERR": (17, "ERROR"),
    "SEVERE": (17, "ERROR"),
    "CRITICAL": (21, "FATAL"),
    "CRIT": (21, "FATAL"),
    "FATAL": (21, "FATAL"),
}

_TIME = (
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\d{4}/\d{2}/\d{2}(?: \d{2}:\d{2}:\d{2}(?:[.,]\d+)?)?"
    r"|\d{2}/\d{2}/\d{2,4}(?: \d{2}:\d{2}:\d{2}(?:[.,]\d+)?)?"
    r"|\d{6} \d{6}"
    r"|\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
)
_SYSLOG = (
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d{2}:\d{2}:\d{2}"
)
_LEVEL = r"(?:" + "|".join(sorted(_LEVELS, key=len, reverse=True)) + r")"
DEFAULT_PREFIX = (
    r"(?:\s*(?:"
    rf"(?P<t>{_SYSLOG}(?: [\w.-]+(?= ))?|{_TIME})"  # a timestamp (syslog: with its host)
    rf"|\[(?:(?i:{_LEVEL}))\]"  # [notice], [error]
    r"|\[(?:[^\[\]\n]|\[[^\[\]\n]*\]){0,120}\]|<[^>\n]{0,40}>"  # [thread], [level], <pri>
    rf"|(?P<level>(?i:{_LEVEL}))(?::|(?=\s|$))"  # a level
    r"|-?\d+(?= )"  # a pid or a counter
    r"|-(?= )"  # a dash separator
    r"))+"
)
_DEFAULT = re.compile(DEFAULT_PREFIX)
_NAME = re.compile(r"\s*[\w.$/@-]+(?:\[\d+\])?:(?=\s|$)")


class TextLine(NamedTuple):
    message: str
    level: str  # the bucket text: TRACE DEBUG INFO WARN ERROR FATAL
    severity: int


def compile_prefix(prefix: str | None) -> re.Pattern | None:
    """The user's prefix regex compiled, or None for the default; an Sl2sError when invalid."""
    if prefix is None:
        return None
    try:
        return re.compile(prefix)
    except re.error as error:
        raise Sl2sError(
            f"--prefix {prefix!r}: not a regular expression ({error})"
        ) from None


def split_line(line: str, prefix: re.Pattern | None = None) -> TextLine:
    """Strip the prefix of one log line; its message, level and severity number."""
    text = line.rstrip("\r\n")
    if prefix is None and not _may_have_prefix(text):
        return TextLine(
            text if text[-1:] != " " and text[:1] != " " else text.strip(), "INFO", 9
        )
    level = None
    if prefix is not None:
        match = prefix.match(text)
        if match:
            groups = match.groupdict()
            level = groups.get("level")
            text = (
                groups["message"]
                if groups.get("message") is not None
                else text[match.end() :]
            )
    elif _may_have_prefix(text):
        match = _DEFAULT.match(text)
        if match and match.end() > 0:
            seen_time = False
            for m in _DEFAULT_PARTS.finditer(text, 0, match.end()):
                found = m.group("level") or m.group("blevel")
                if found and level is None:
                    level = found
                seen_time = seen_time or bool(m.group("t"))
            if seen_time or level:  # else not a prefix: `12 apples` keeps its number
                rest = text[match.end() :]
                name = _NAME.match(rest)
                if name:
                    rest = rest[name.end() :]
                if (
                    rest.strip()
                ):  # a line that is all prefix (`warning`) is its own message
                    text = rest
    severity, bucket = _LEVELS.get((level or "INFO").upper(), (9, "INFO"))
    return TextLine(text.strip(), bucket, severity)


_MONTHS = {
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
}
_WORD = re.compile(r"[A-Za-z]+")


def _may_have_prefix(text: str) -> bool:
    """A cheap test before the prefix regex: a prefix starts with a digit, a bracket, a dash or a
    space, or with a level or a month name (most messages start with another word)."""
    if not text:
        return False
    first = text[0]
    if not first.isalpha():
        return True
    word = _WORD.match(text)
    head = word.group().upper() if word else ""
    return head in _LEVELS or head[:3] in _MONTHS and len(head) == 3


_DEFAULT_PARTS = re.compile(
    r"\s*(?:"
    rf"(?P<t>{_SYSLOG}(?: [\w.-]+(?= ))?|{_TIME})"
    rf"|\[(?P<blevel>(?i:{_LEVEL}))\]"  # [notice], [error]
    r"|\[(?:[^\[\]\n]|\[[^\[\]\n]*\]){0,120}\]|<[^>\n]{0,40}>"
    rf"|(?P<level>(?i:{_LEVEL}))(?::|(?=\s|$))"
    r"|-?\d+(?= )"
    r"|-(?= )"
    r")"
)


def as_event(source: str, lineno: int, line: TextLine, name: str | None = None) -> dict:
    """An event-like dict for a text line (what the analysers and `sl2s watch` read); its
    machine is the file's name (`name`, computed once per file by callers)."""
    name = name or Path(source).name
    return {
        "event_name": TEXT,
        "severity_text": line.level,
        "severity_number": line.severity,
        "body": line.message,
        "attributes": {"text.file": source, "text.line": lineno, "sl2s.machine": name},
    }


def text_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as named; directories expanded to their `*.log` and `*.txt` files."""
    files: list[Path] = []
    missing: list[Diagnostic] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file()
                    and (p.suffix in (".log", ".txt") or p.name.endswith(".log.gz"))
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            missing.append(Diagnostic(str(raw), 0, "no such file or directory"))
    if missing:
        raise Sl2sError(missing)
    return list(dict.fromkeys(files))


def iter_text(
    files: Iterable[Path], prefix: re.Pattern | None = None, stats=None
) -> Iterator[tuple[str, int, dict]]:
    """(file, line number, event-like dict) for every non-blank line of the files."""
    from sl2s.observe.events import PROGRESS_EVERY, open_lines

    split = split_line
    for path in files:
        source, name = str(path), path.name
        lines = open_lines(path)
        tell = stats.tell_of(lines) if stats is not None else None
        lineno = 0
        try:
            for lineno, raw in enumerate(lines, 1):
                if tell is not None and not lineno % PROGRESS_EVERY:
                    stats.reached(tell())
                text = raw.decode("utf-8", errors="replace").strip()
                if not text:
                    continue
                line = split(text, prefix)
                yield source, lineno, {
                    "event_name": TEXT,
                    "severity_text": line.level,
                    "severity_number": line.severity,
                    "body": line.message,
                    "attributes": {
                        "text.file": source,
                        "text.line": lineno,
                        "sl2s.machine": name,
                    },
                }
        finally:
            if stats is not None:
                stats.files += 1
                stats.lines += lineno
            close = getattr(lines, "close", None)
            if close is not None:
                close()
        if stats is not None:
            stats.finished(path)
