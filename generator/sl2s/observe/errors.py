"""Error groups with a life cycle: the pure part (what an occurrence does to a group).

A group is every failure with one fingerprint (sl2s.observe.fingerprint). Its state:

- `open` — new, or back after it was resolved (`reactivated` is then set);
- `acknowledged` — someone is on it: occurrences are counted, nothing is announced;
- `ignored` — occurrences are counted, nothing is announced, it never reactivates;
- `resolved` — fixed, optionally `in` a revision. An occurrence after the resolution
  **reactivates** it (state `open`, `reactivated` set, announced), unless the occurrence comes from
  a revision that already had the error before it was resolved (old code still running somewhere,
  e.g. a replica not yet updated). Resolved in revision R, the error coming back in R or in any
  revision not seen with it before is a regression.

`observe(group, occurrence)` returns the group after the occurrence and what happened:
`new`, `reactivated`, `seen` (counted) or `ignored`. The SQLite store (sl2s.observe.errorstore)
keeps groups across runs; `sl2s watch` announces `new` and `reactivated`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sl2s.observe import events as ev
from sl2s.observe.fingerprint import app_frames, event_fingerprint, event_frames

STATES = ("open", "acknowledged", "ignored", "resolved")
FACETS = ("machine", "host", "revision", "environment")


@dataclass(frozen=True)
class Occurrence:
    """One failure event, with where it ran (from its incident's header or the watcher)."""

    fingerprint: str
    exception_type: str
    message: str
    frames: tuple[str, ...]
    timestamp: str
    machine: str
    flow: str | None = None
    step: str | None = None
    raised_at: str | None = None
    event_id: str | None = None
    correlation_id: str | None = None
    host: str | None = None
    revision: str | None = None
    environment: str | None = None
    incident: str | None = None

    def facets(self) -> dict[str, str]:
        values = {
            "machine": self.machine,
            "host": self.host,
            "revision": self.revision,
            "environment": self.environment,
        }
        return {k: v for k, v in values.items() if v}


def occurrence(event: dict, **where) -> Occurrence | None:
    """The occurrence of a failure event (None when it carries no exception)."""
    fp = event_fingerprint(event)
    if fp is None:
        return None
    a = ev.attrs(event)
    return Occurrence(
        fingerprint=fp,
        exception_type=str(a.get("exception.type")),
        message=str(a.get("exception.message") or ""),
        frames=tuple(app_frames(event_frames(event))),
        timestamp=str(event.get("timestamp") or ev.utc_now_text()),
        machine=ev.machine(event),
        flow=a.get("sl2s.flow"),
        step=a.get("sl2s.step") or event.get("event_name"),
        raised_at=a.get("sl2s.raised_at")
        or (
            f"{a['code.filepath']}:{a.get('code.lineno') or 0}"
            if a.get("code.filepath")
            else None
        ),
        event_id=a.get("sl2s.event_id"),
        correlation_id=a.get("sl2s.correlation_id"),
        **{k: (str(v) if v else None) for k, v in where.items()},
    )


@dataclass(frozen=True)
class Group:
    fingerprint: str
    exception_type: str
    frames: tuple[str, ...]
    message: str
    flow: str | None
    step: str | None
    raised_at: str | None
    first_seen: str
    last_seen: str
    count: int
    first_revision: str | None
    state: str = "open"
    state_at: str | None = None
    resolved_in: str | None = None
    revisions_before: tuple[
        str, ...
    ] = ()  # revisions seen with it when it was resolved
    reactivated_at: str | None = None
    reactivations: int = 0
    example_event: str | None = None
    example_incident: str | None = None
    correlation_id: str | None = None
    facets: dict[str, dict[str, int]] = field(default_factory=dict, compare=False)

    @property
    def shown_state(self) -> str:
        if self.state == "resolved" and self.resolved_in:
            return f"resolved in {self.resolved_in}"
        if self.state == "open" and self.reactivated_at:
            return "reactivated"
        return self.state


def new_group(o: Occurrence) -> Group:
    return Group(
        fingerprint=o.fingerprint,
        exception_type=o.exception_type,
        frames=o.frames,
        message=o.message,
        flow=o.flow,
        step=o.step,
        raised_at=o.raised_at,
        first_seen=o.timestamp,
        last_seen=o.timestamp,
        count=1,
        first_revision=o.revision,
        example_event=o.event_id,
        example_incident=o.incident,
        correlation_id=o.correlation_id,
    )


def observe(group: Group | None, o: Occurrence) -> tuple[Group, str]:
    """The group after occurrence `o`, and `new`, `reactivated`, `seen` or `ignored`."""
    if group is None:
        return new_group(o), "new"
    counted = replace(
        group,
        count=group.count + 1,
        first_seen=min(group.first_seen, o.timestamp),
        last_seen=max(group.last_seen, o.timestamp),
        message=o.message or group.message,
        raised_at=o.raised_at or group.raised_at,
        correlation_id=o.correlation_id or group.correlation_id,
        example_event=o.event_id or group.example_event,
        example_incident=o.incident or group.example_incident,
    )
    if group.state == "ignored":
        return counted, "ignored"
    if group.state == "resolved" and reactivates(group, o):
        return (
            replace(
                counted,
                state="open",
                state_at=o.timestamp,
                reactivated_at=o.timestamp,
                reactivations=group.reactivations + 1,
            ),
            "reactivated",
        )
    return counted, "seen"


def reactivates(group: Group, o: Occurrence) -> bool:
    """Whether an occurrence of a resolved group is a regression (see the module doc)."""
    if group.state_at and o.timestamp <= group.state_at:
        return False  # from before the resolution (logs read late)
    if (
        o.revision
        and o.revision in group.revisions_before
        and o.revision != group.resolved_in
    ):
        return False  # old code still running
    return True


def transition(
    group: Group,
    state: str,
    at: str,
    *,
    revision: str | None = None,
    revisions_seen: tuple[str, ...] = (),
) -> Group:
    """Set a group's state by hand (`sl2s errors resolve|ignore|ack|reopen`)."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r} ({', '.join(STATES)})")
    return replace(
        group,
        state=state,
        state_at=at,
        resolved_in=revision if state == "resolved" else None,
        revisions_before=(
            tuple(sorted(set(revisions_seen))) if state == "resolved" else ()
        ),
        reactivated_at=None if state != "open" else group.reactivated_at,
    )
