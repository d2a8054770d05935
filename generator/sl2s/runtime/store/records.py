"""The flow store's contract: its records, its errors, its retention, the `FlowStore` protocol that
both backends implement, and the check that nothing stored holds a secret in clear. Imports nothing
of the runtime (the backends import this; `sl2s.runtime.store` re-exports it)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from sl2s.diagnostics import Sl2sError

HOP_RETENTION = 3 * 24 * 3600.0  # answered hops: long enough for any caller's retries

FLOW_RETENTION = 7 * 24 * 3600.0  # completed and cancelled flows, with their steps

FLOW_STATES = ("pending", "completed", "failed", "cancelled")

ENDED_STATES = (
    "completed",
    "cancelled",
)  # what retention removes; failed flows wait for resume

MASK = "***"


class StoreError(Sl2sError):
    """The store cannot be opened or used: a user-facing, one-line message."""


class AmbiguousPrefix(StoreError):
    """`flow(prefix)` matched more than one flow."""


@dataclass(frozen=True)
class HopRecord:
    """One inbound hop, by idempotency key (what `http_server.IdempotencyStore` kept in memory)."""

    key: str
    digest: str  # sha256 of the request body
    correlation_id: str
    flow: str
    target: str  # machine that runs it
    at: str  # step it starts at
    state: str  # "running" | "answered"
    status: int  # HTTP status of the stored answer (0 while running)
    headers: dict[str, str]
    body: bytes | None  # the stored answer (None while running)
    created: float
    owner: str  # process that runs it ("host:pid:start-time"), for takeover


@dataclass(frozen=True)
class StepRecord:
    correlation_id: str
    step: str  # step id
    machine: str
    outcome: dict  # the fields the step set (JSON data, masked), {} for none
    replayable: bool  # False when the outcome set a secret (not kept): re-run on resume
    event_id: str | None
    completed: float


@dataclass(frozen=True)
class FlowRecord:
    correlation_id: str
    system: str
    flow: str
    machine: str  # entry machine
    state: str  # "pending" | "completed" | "failed" | "cancelled"
    context: dict  # the entry's starting context, masked (secret fields absent)
    secrets: tuple[str, ...]  # names of secret fields the entry had (not kept)
    position: str | None  # last step completed (any machine)
    error: dict | None  # failure.to_dict() of the failure, masked
    deadline: float | None  # epoch seconds
    created: float
    updated: float  # last change of state, or last step checkpoint
    attempt: int = (
        0  # resume generation: +1 on each `flow_resumed` (hop keys include it)
    )

    @property
    def has_secrets(self) -> bool:
        """True when the entry had secrets that the store did not keep (resume asks for them)."""
        return bool(self.secrets)


class FlowStore(Protocol):
    """What the runtime asks of a store. Every method commits before it returns."""

    url: str  # for messages (no password in it)

    # flows
    def flow_started(self, rec: FlowRecord) -> None: ...
    def flow_ended(
        self, correlation_id: str, state: str, error: dict | None, now: float
    ) -> None: ...
    def flow(self, correlation_id: str) -> FlowRecord | None: ...
    def flows(
        self,
        *,
        state: str | None = None,
        flow: str | None = None,
        machine: str | None = None,
        older_than: float | None = None,
        limit: int = 100,
    ) -> list[FlowRecord]: ...
    def set_state(self, correlation_id: str, state: str, now: float) -> bool: ...
    def flow_resumed(self, correlation_id: str, now: float) -> FlowRecord | None: ...

    # step checkpoints
    def steps_done(
        self,
        records: Sequence[StepRecord],
        position: tuple[str, str] | Sequence[tuple[str, str]] | None,
    ) -> None: ...
    def steps_of(self, correlation_id: str) -> dict[str, StepRecord]: ...

    def commit(
        self,
        flows: Sequence[FlowRecord] = (),
        steps: Sequence[StepRecord | tuple] = (),
        ended: Sequence[tuple[str, str, dict | None, float]] = (),
        answered: tuple[str, int, dict[str, str], bytes, float] | None = None,
        answers: Sequence[tuple[str, int, dict[str, str], bytes, float]] = (),
        claims: Sequence[HopRecord] = (),
    ) -> list[tuple[HopRecord | None, str | None]]: ...

    # hops (idempotency)
    def hop_begin(self, rec: HopRecord) -> HopRecord | None: ...
    def hop_claim(self, rec: HopRecord) -> tuple[HopRecord | None, str | None]: ...
    def hop_finish(
        self,
        key: str,
        status: int,
        headers: dict[str, str],
        body: bytes,
        now: float,
        *,
        steps: Sequence[StepRecord] = (),
        position: tuple[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> None: ...
    def hop_get(self, key: str) -> HopRecord | None: ...
    def hop_takeover(self, key: str, owner: str, stale_owner: str) -> bool: ...
    def hops_of(self, correlation_id: str) -> list[HopRecord]: ...
    def nonce_seen(self, nonce: str, expires: float) -> bool: ...

    # housekeeping
    def expire(self, now: float) -> int: ...
    def prune(self, before: float, states: Sequence[str] = ENDED_STATES) -> int: ...
    def close(self) -> None: ...


def redact(url: str) -> str:
    """`url` without its password (in the authority or as a `password=` parameter)."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return url.split("@")[-1]
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        url = url.replace(netloc, f"{user.split(':', 1)[0]}:***@{host}", 1)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def check_masked(rec: FlowRecord) -> None:
    """Refuse a flow record whose context still holds a value for a field it names as secret:
    the store must never receive a secret in clear."""
    leaked = sorted(
        name
        for name in rec.secrets
        if name in rec.context and rec.context[name] != MASK
    )
    if leaked:
        raise StoreError(
            f"flow {rec.correlation_id}: the context holds secret field(s) {', '.join(leaked)}"
            " in clear; the store keeps only masked data (drop them or write ***)"
        )
