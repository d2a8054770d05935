"""Run metadata: who started a flow run and why (`actor`, `ticket`, `reason`, or any other name),
kept apart from the plan's fields. Every event of the run carries it as `sl2s.run_meta`, on every
machine the run reaches; a flow started inside a step of another flow inherits it.

    from sl2s.runtime import run_metadata

    with run_metadata(actor="bob", ticket="JIRA-12", reason="refund for order 17"):
        login(username="ann", password=...)

Metadata is ambient (a context variable, like OpenTelemetry baggage) rather than parameters of the
generated entry functions: a plan may well have a field called `actor` or `reason`, and the
entry's parameters are the plan's fields. `sl2s run ... --actor bob --ticket JIRA-12` sets it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from sl2s.runtime.errors import WiringError

MAX_ENTRIES = 16
MAX_VALUE = 1024  # characters per value
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_current: ContextVar[dict[str, str] | None] = ContextVar("sl2s_run_meta", default=None)


def checked(meta: Mapping[str, object]) -> dict[str, str]:
    """`meta` as run metadata: ASCII identifier names, string values (`None` drops a name), at most
    MAX_ENTRIES names of at most MAX_VALUE characters each. WiringError otherwise."""
    out: dict[str, str] = {}
    for name, value in meta.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise WiringError(f"run metadata name {name!r} is not an identifier")
        if value is None:
            continue
        if not isinstance(value, str):
            raise WiringError(
                f"run metadata '{name}' is {type(value).__name__}; values are strings"
            )
        if len(value) > MAX_VALUE:
            raise WiringError(
                f"run metadata '{name}' is {len(value)} characters long (at most {MAX_VALUE})"
            )
        out[name] = value
    if len(out) > MAX_ENTRIES:
        raise WiringError(f"run metadata has {len(out)} names (at most {MAX_ENTRIES})")
    return out


@contextmanager
def run_metadata(**meta: str | None) -> Iterator[dict[str, str]]:
    """Flow runs started inside this block carry `meta` (merged over any metadata already set)."""
    merged = {**(_current.get() or {}), **checked(meta)}
    merged = {k: v for k, v in merged.items() if meta.get(k, v) is not None}
    token = _current.set(merged or None)
    try:
        yield merged
    finally:
        _current.reset(token)


def current() -> dict[str, str] | None:
    """The metadata that a flow run started now carries (None: none)."""
    return _current.get()
