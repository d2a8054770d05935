"""Error fingerprints: the same bug, wherever and however often it fires, is one group.

A fingerprint is the exception type plus the in-app frames of its traceback (file and function,
innermost last) — no line numbers (an edit above the bug must not split the group) and no message
(it carries data: ids, names, values). Files are reduced to their last two path components, so one
bug deployed under different roots is still one group. In-app means: not the standard library,
not site-/dist-packages, and not sl2s's own runtime/observe code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sl2s.observe import events as ev
from sl2s.runtime.core.crash import is_user_file

_FRAME = re.compile(
    r'^\s*File "(?P<file>[^"]+)", line \d+, in (?P<function>.+?)\s*$', re.M
)
# which frames are the user's code: one rule for fingerprints and crash details
in_app = is_user_file


def short_path(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:])


def frames_from_stacktrace(text: str) -> list[tuple[str, str]]:
    """(file, function) of every frame of a formatted Python traceback, outermost first."""
    return [(m.group("file"), m.group("function")) for m in _FRAME.finditer(text or "")]


def fingerprint(exception_type: str, frames: Iterable[tuple[str, str]]) -> str:
    app_frames = [
        f"{short_path(file)}:{function}" for file, function in frames if in_app(file)
    ]
    text = "\n".join([exception_type, *app_frames])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def app_frames(frames: Iterable[tuple[str, str]]) -> list[str]:
    return [
        f"{short_path(file)}:{function}" for file, function in frames if in_app(file)
    ]


def event_frames(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The frames an event carries: its `exception.stacktrace`, else the step's own function."""
    a = ev.attrs(event)
    frames = frames_from_stacktrace(a.get("exception.stacktrace") or "")
    if not frames and a.get("code.filepath"):
        frames = [(str(a["code.filepath"]), str(a.get("code.function") or ""))]
    return frames


def event_fingerprint(event: Mapping[str, Any]) -> str | None:
    """The fingerprint of an event that carries an exception, else None."""
    a = ev.attrs(event)
    exception_type = a.get("exception.type")
    if not exception_type:
        return None
    return fingerprint(str(exception_type), event_frames(event))


@dataclass
class ErrorGroup:
    fingerprint: str
    exception_type: str
    frames: list[str]
    count: int = 0
    first_seen: str = ""
    last_seen: str = ""
    example: str = ""
    machines: set[str] = field(default_factory=set)
    incidents: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "exception_type": self.exception_type,
            "frames": self.frames,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "example": self.example,
            "machines": sorted(self.machines),
            "incidents": self.incidents,
        }


class ErrorGroups:
    """Errors grouped by fingerprint, with count and first/last seen (event timestamps)."""

    def __init__(self) -> None:
        self.groups: dict[str, ErrorGroup] = {}

    def add(self, event: dict, incident: str | None = None) -> str | None:
        fp = event_fingerprint(event)
        if fp is None:
            return None
        a = ev.attrs(event)
        group = self.groups.get(fp)
        if group is None:
            group = self.groups[fp] = ErrorGroup(
                fp,
                str(a.get("exception.type")),
                app_frames(event_frames(event)),
                example=str(a.get("exception.message") or ""),
            )
        when = str(event.get("timestamp") or "")
        group.count += 1
        if when and (not group.first_seen or when < group.first_seen):
            group.first_seen = when
        if when > group.last_seen:
            group.last_seen = when
        group.machines.add(ev.machine(event))
        if incident and incident not in group.incidents:
            group.incidents.append(incident)
        return fp

    def sorted(self) -> list[ErrorGroup]:
        return sorted(
            self.groups.values(), key=lambda g: (-g.count, g.first_seen, g.fingerprint)
        )
