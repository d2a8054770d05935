"""What `sl2s run` prints while and after a flow runs (not imported by sl2s.runtime itself).

- `user_traceback(error)`: the traceback without the frames of sl2s and of the import machinery.
- `story_line(evt)`: the line for one event (`sl2s.step`, `sl2s.log`), or None for other events;
  `StoryPrinter(echo)` is the hooks listener that prints them and counts the steps.
- `shown_context(result, secrets)`: the final context as sorted compact JSON, masked like an
  event's fields (secret fields `***`, their values `***` wherever else they occur).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Collection, Mapping

import orjson

from sl2s.runtime.redact import mask_context


def user_traceback(error: BaseException) -> str:
    """The traceback without the frames of sl2s and of the import machinery."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if "importlib" not in frame.filename
        and not frame.filename.startswith(__import__("sl2s").__path__[0] + os.sep)
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines).rstrip("\n")


def story_line(evt: Mapping) -> str | None:
    """One printed line for an event as written (secrets are already `***` in events)."""
    attributes = evt.get("attributes", {})
    name = evt.get("event_name")
    machine = attributes.get("sl2s.machine", "?")
    if name == "sl2s.step":
        where = ", ".join(
            x for x in (attributes.get("sl2s.step"), attributes.get("sl2s.plan")) if x
        )
        failed = "  FAILED" if evt.get("severity_text") == "ERROR" else ""
        return f"{machine}: {evt.get('body', '')}  ({where}){failed}"
    if name == "sl2s.log":
        return f"{machine}:   {evt.get('severity_text', '')} {evt.get('body', '')}"
    return None


class StoryPrinter:
    """A hooks listener: prints each event of the run as it is written; counts the steps."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.steps = 0

    def event(self, evt: dict) -> None:
        if evt.get("event_name") == "sl2s.step":
            self.steps += 1
        line = story_line(evt)
        if line is not None:
            self.echo(line)


def shown_context(
    result: Mapping[str, object],
    secrets: Collection[str],
    given: Mapping[str, object] | None = None,
) -> str:
    """The final context as printed: keys sorted, compact JSON, masked (sl2s.runtime.redact),
    the secrets' values in `given` (the flow's input) too."""
    shown = mask_context(dict(result), secrets, dict(given) if given else None)
    return orjson.dumps(shown, option=orjson.OPT_SORT_KEYS, default=repr).decode()
