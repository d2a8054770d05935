"""Version skew between machines is refused, never silent.

Every hop carries its sender's digest of the flow's projection (`version` in the signed envelope,
from the sender's sl2s.lock.json `flows`, written by `sl2s generate`). A hop server whose own digest
for that flow differs answers `409 version_skew`, naming both, before anything is stored or run:
running a segment of another version could skip a step the caller's version has, or run one it has
not. The caller retries until the flow's deadline (a rollout in progress ends the skew) and then
fails with `skew_message`. A tree generated before digests existed has none: nothing is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from sl2s.runtime.transport.http import protocol as p

CODE = "version_skew"
_DIGEST = re.compile(r"[0-9a-f]{1,64}")


class VersionSkew(p.Rejection):
    """The 409 answer to a hop from another version of its flow; its body also carries both
    digests as data (`digest`: this machine's, `sent`: the caller's)."""

    def __init__(self, machine: str, flow: str, ours: str, sent: str) -> None:
        super().__init__(
            409,
            CODE,
            f"machine '{machine}' runs flow '{flow}' {ours}, the hop comes from flow '{flow}' "
            f"{sent}: finish the rollout or roll back",
        )
        self.machine, self.flow, self.ours, self.sent = machine, flow, ours, sent

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "outcome": "rejected",
                "code": self.code,
                "message": self.message,
                "digest": self.ours,
                "sent": self.sent,
            }
        )


def check(
    machine: str, flow: str, sent: str | None, ours: Callable[[str], str | None]
) -> None:
    """Raise VersionSkew when the hop's digest `sent` and this machine's `ours(flow)` are both known
    and differ (a `sent` that is no digest at all: 400 bad_envelope, without echoing it).
    """
    if sent is None:
        return
    if not _DIGEST.fullmatch(sent):
        raise p.Rejection(
            400,
            "bad_envelope",
            "envelope member 'version' is not a flow digest (1..64 lower-case hex digits)",
        )
    mine = ours(flow)
    if mine is not None and mine != sent:
        raise VersionSkew(machine, flow, mine, sent)


def check_body(
    machine: str, flow: str, body: bytes, ours: Callable[[str], str | None]
) -> None:
    """`check` for a hop whose envelope is not parsed yet (a segment this machine lacks: when the
    versions differ, that is why, and the caller should wait for the rollout, not give up).
    """
    try:
        sent = orjson.loads(body).get("version")
    except (orjson.JSONDecodeError, AttributeError):
        return
    check(machine, flow, sent if type(sent) is str else None, ours)


def skew_message(flow: str, ours: str | None, target: str, theirs: str | None) -> str:
    """What a caller says when the deadline passed while `target` still refused its version."""
    return (
        f"version skew: this machine runs flow '{flow}' {ours or '?'}, machine '{target}' runs "
        f"{theirs or '?'}: finish the rollout or roll back"
    )
