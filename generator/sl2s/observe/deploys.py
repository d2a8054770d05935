"""Deploys: what was deployed when, and which deploy an error group probably came with.

A deploy is (revision, time, target, environment, how it was recorded). `sl2s deploy` records one
for the manifests it writes; any other pipeline records one with `sl2s deploys record`. They are
kept in the error store (sl2s.observe.errorstore) next to the logs.

The **suspected deploy** of an error group is the first deploy after which it appeared: the
latest deploy at or before the group's first occurrence — preferring, among those, the latest
deploy of the revision the first occurrence ran (when that revision was deployed at all before
it). A group that appeared before any recorded deploy has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Deploy:
    id: int
    revision: str
    at: str  # UTC, ISO 8601 with Z (sorts as text)
    target: str = ""
    environment: str = ""
    how: str = ""

    def short(self) -> str:
        where = "/".join(x for x in (self.target, self.environment) if x)
        return f"deploy #{self.id} of {self.revision} at {self.at}" + (
            f" ({where})" if where else ""
        )

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "revision": self.revision,
            "at": self.at,
            "target": self.target,
            "environment": self.environment,
            "how": self.how,
        }


def suspected(
    deploys: Iterable[Deploy], first_seen: str, first_revision: str | None = None
) -> Deploy | None:
    """The deploy an error first seen at `first_seen` (in `first_revision`) came with."""
    before = sorted(
        (d for d in deploys if d.at <= first_seen), key=lambda d: (d.at, d.id)
    )
    if not before:
        return None
    if first_revision:
        same = [d for d in before if d.revision == first_revision]
        if same:
            return same[-1]
    return before[-1]
