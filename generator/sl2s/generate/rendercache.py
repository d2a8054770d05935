"""Memo of rendered, checked wiring chunks, keyed by everything their rendering reads.

A chunk of a `_wiring.py` (an entry function or a segment function, one per activation) is a pure
function of its template inputs: the kind, flow, machine, `at`, function name, fields, the module's
`machine` variable and the activation's ops. `key()` hashes exactly those; the memo maps the key to
the chunk as `BlackCheck.ensure` returned it. The session persists it per machine under
`<out>/.sl2s/cache/render/` with the same cache key as the rest of the cache (sl2s code, templates
and black version), so when only some flows changed, the chunks of the others are reused instead of
rendered and checked again. A hit returns the very text a miss would produce: deleting the memo
changes no output, only the time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from sl2s.projection import Activation, Call, Return, RunStep


def _op_key(op) -> tuple:
    if isinstance(op, RunStep):
        return ("step", op.step.id)
    if isinstance(op, Call):
        return ("call", op.target, op.at, op.resume_at, tuple(op.secrets))
    if isinstance(op, Return):
        return ("return", op.target, op.resume_at, tuple(op.secrets))
    raise TypeError(f"unknown op {op!r}")


def key(
    kind: str,
    activation: Activation,
    function: str,
    fields: Iterable[str],
    machine_var: str,
    allowed: Iterable[str],
) -> str:
    """The memo key of one wiring chunk (`kind`: "entry" or "segment")."""
    data = (
        kind,
        activation.flow,
        activation.machine,
        activation.at,
        function,
        tuple(fields),
        machine_var,
        tuple(sorted(allowed)),
        tuple(_op_key(op) for op in activation.ops),
    )
    return hashlib.sha256(repr(data).encode("utf-8")).hexdigest()


class RenderCache:
    """`{group: {key: chunk}}`; `group` is the machine. Groups may be loaded lazily."""

    def __init__(self, load: Callable[[str], dict[str, str]] | None = None) -> None:
        self._load = load
        self.loaded: dict[str, dict[str, str]] = {}
        self.used: dict[str, dict[str, str]] = {}
        self.hits = 0
        self.misses = 0

    def _group(self, group: str) -> dict[str, str]:
        chunks = self.loaded.get(group)
        if chunks is None:
            chunks = dict(self._load(group)) if self._load is not None else {}
            self.loaded[group] = chunks
        return chunks

    def get(self, group: str, key: str, render: Callable[[], str]) -> str:
        """The memoised chunk for `key`, or `render()` (then remembered)."""
        chunks = self._group(group)
        chunk = chunks.get(key)
        if chunk is None:
            self.misses += 1
            chunk = render()
            chunks[key] = chunk
        else:
            self.hits += 1
        self.used.setdefault(group, {})[key] = chunk
        return chunk
