"""The plan as data: what the reader (sl2s.plan) produces and every other part consumes.

Pure value objects, no I/O (frozen; derived tuples are computed once, on first use).
Identifiers here are already normalised (see sl2s.names): they are valid, non-keyword Python
identifiers that are also safe file names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Placeholder:
    """`:name` (a field) or `#name` (a secret field) inside a log template."""

    name: str  # normalised identifier
    secret: bool
    spelling: str  # as written in the plan, e.g. ":userName"


# A template is literal text and placeholders, in order. Literal text is already unescaped
# (`::x` in the plan is the literal text `:x`).
TemplatePart = str | Placeholder


@dataclass(frozen=True)
class Step:
    """One row of the plan: one log line on one machine."""

    flow: str  # normalised flow identifier
    id: str  # stable identity within the flow: the `id` column, or a slug of the log text
    # the log text exactly as written in the plan (the decorator's argument)
    template: str
    parts: tuple[TemplatePart, ...]
    machine: str  # normalised machine identifier
    line: int  # physical line in the plan file where the row starts
    explicit_id: bool = False  # True when the plan has an `id` column

    @cached_property
    def fields(self) -> tuple[str, ...]:
        """Non-secret fields the log line shows, in order of first appearance."""
        return _unique(
            p.name for p in self.parts if isinstance(p, Placeholder) and not p.secret
        )

    @cached_property
    def secrets(self) -> tuple[str, ...]:
        """Secret fields the log line references, in order of first appearance."""
        return _unique(
            p.name for p in self.parts if isinstance(p, Placeholder) and p.secret
        )

    @cached_property
    def placeholders(self) -> tuple[str, ...]:
        """Every field the log line references (secret or not), in order of first appearance."""
        return _unique(p.name for p in self.parts if isinstance(p, Placeholder))


@dataclass(frozen=True)
class Flow:
    """The rows of one request, in file order."""

    name: str  # normalised identifier (also the user module's file name)
    spelling: str  # as written in the plan
    steps: tuple[Step, ...]

    @cached_property
    def machines(self) -> tuple[str, ...]:
        """Machines taking part, in order of first appearance."""
        return _unique(s.machine for s in self.steps)

    @cached_property
    def fields(self) -> tuple[str, ...]:
        return _unique(f for s in self.steps for f in s.fields)

    @cached_property
    def secrets(self) -> tuple[str, ...]:
        return _unique(f for s in self.steps for f in s.secrets)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


@dataclass(frozen=True)
class Plan:
    """A validated plan."""

    path: str  # as the user named it (used in messages and in `plan.csv:4` locations)
    flows: tuple[Flow, ...]  # in order of first appearance
    digest: str  # sha256 hex of the file's bytes
    machine_spellings: tuple[
        tuple[str, str], ...
    ] = ()  # (identifier, as written), first seen

    @cached_property
    def machines(self) -> tuple[str, ...]:
        return _unique(s.machine for f in self.flows for s in f.steps)

    @cached_property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for f in self.flows for s in f.steps)

    def flow(self, name: str) -> Flow:
        for f in self.flows:
            if f.name == name:
                return f
        raise KeyError(name)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return tuple(seen)
