"""The hop server's idempotency on the flow store (docs/hop-protocol.md, docs/durability.md).

Every inbound hop is claimed in the store under its idempotency key (insert-or-get, committed)
before its segment runs — in one transaction with the read of the flow's state (is it
cancelled?); on SQLite that transaction is shared with the claims and answers of the process's
other hops at the same moment (`durable.GroupCommit`), on PostgreSQL it is one statement
(`store.hop_claim`) — and its answer is stored before it is sent, so:

- a retry of a hop that was answered gets the stored answer (`sl2s-replayed: true`), from this
  process or any other sharing the store — also after a restart;
- a retry of a hop still running gets `409 in_progress`;
- a retry of a hop whose process died while running it (same host: its pid is gone or was reused;
  another host: its lease passed, see `durable.owner_gone`) takes the record over and runs the
  segment again, replaying the steps it had committed;
- the same key with another body is `422 key_reused`, the same signature twice `401 replayed`
  (the signature that began a hop is kept in its record; a retry's signature is recorded in the
  store's nonces, so only retries pay for a second write).

All of it runs in the hop's worker thread (the store blocks), nothing per hop stays in memory once
it is answered, and answered hops and nonces are expired by the store's index from a timer, not per
request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import orjson

from sl2s.runtime.core import durable
from sl2s.runtime.redact import mask_context
from sl2s.runtime.store.records import HopRecord
from sl2s.runtime.transport import HopRequest
from sl2s.runtime.transport.http import protocol as p

log = logging.getLogger("sl2s.http")

EXPIRE_EVERY = 60.0  # seconds between two expiry passes of a server's store

Answer = tuple[int, Mapping[str, str], bytes]
H_MASKED = "sl2s-masked"  # on a stored answer: secret fields were masked out of it
H_NONCE = "sl2s-nonce"  # on a stored hop: the signature of the request that began it (not sent)


def _without_secrets(body: bytes) -> bytes | None:
    """The answer with its secret fields `***`, or None when it carries none (the common case,
    told without decoding: the answer lists no secret names)."""
    if b'"secrets":[]' in body:
        return None
    try:
        answer = orjson.loads(body)
        fields, names = answer.get("fields") or {}, answer.get("secrets") or []
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not any(name in fields for name in names):
        return None
    # the secret fields `***`, and their values wherever else they occur
    answer["fields"] = mask_context(fields, names)
    return orjson.dumps(answer)


def _rejected(rejection: p.Rejection, extra: Mapping[str, str] | None = None) -> Answer:
    return (
        rejection.status,
        {p.H_OUTCOME: "rejected", **(extra or {})},
        rejection.body(),
    )


def _in_progress() -> Answer:
    return _rejected(
        p.Rejection(
            409, "in_progress", "a hop with this idempotency key is still running"
        ),
        {"retry-after": "1"},
    )


class DurableHops:
    """Answers hops of one server from a flow store (replaces the in-memory IdempotencyStore)."""

    def __init__(
        self,
        store,
        *,
        nonce_retention: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.nonce_retention = nonce_retention
        self.clock = clock
        self._expirer: threading.Thread | None = None
        self._lock = threading.Lock()

    def answer(
        self,
        call: Callable[[HopRequest], tuple[int, dict[str, str], bytes]],
        request: HopRequest,
        digest: str,
        nonce: str | None,
    ) -> Answer:
        """Run in a worker thread: the stored answer, a refusal, or the segment's own answer
        (stored before it is returned)."""
        self._start_expiry()
        store, now, key = self.store, self.clock(), request.idempotency_key
        me = durable.owner()
        claim = HopRecord(
            key=key,
            digest=digest,
            correlation_id=request.correlation_id,
            flow=request.flow,
            target=request.target,
            at=request.at,
            state="running",
            status=0,
            headers={H_NONCE: nonce} if nonce else {},
            body=None,
            created=now,
            owner=me,
        )
        # The claim is committed before the segment runs, visible to every process: a caller
        # whose deadline passed asks the store whether this segment is pending or never
        # started. On SQLite it joins the process's group commit (durable.GroupCommit.claim).
        group = durable.group_for(store)
        writer = group.writer  # this process's writers one at a time
        found, flow_state = group.claim(claim)
        taken_over, first = False, nonce
        if found is not None:
            # the signature that began the hop is kept with it; later ones (retries) are
            # remembered in the store's nonces: only a retry pays for that write
            first = found.headers.get(H_NONCE)
            if found.digest != digest:
                return _rejected(
                    p.Rejection(
                        422,
                        "key_reused",
                        "this idempotency key was used for a different hop body",
                    )
                )
            if nonce is not None and (nonce == first or self._seen(writer, nonce, now)):
                return _rejected(
                    p.Rejection(
                        401, "replayed", "this exact signed hop was already received"
                    )
                )
            if found.state == "answered":
                if found.headers.get(H_MASKED):
                    # the answer carried secrets, which the store never keeps: run the segment
                    # again (its recorded steps replay) to answer this retry
                    with durable.taken_over():
                        return call(request)
                stored = {k: v for k, v in found.headers.items() if k != H_NONCE}
                stored["sl2s-replayed"] = "true"
                return found.status, stored, found.body or b""
            if not durable.owner_gone(found.owner, found.created, now) or not (
                self._take_over(writer, key, me, found.owner)
            ):
                return _in_progress()
            taken_over = True
            log.warning(
                "hop %s: its process (%s) is gone; running the segment again, replaying its "
                "recorded steps",
                key,
                found.owner,
            )
        headers: Mapping[str, str]
        try:
            with durable.answering(store, request.correlation_id, flow_state):
                if taken_over:
                    with durable.taken_over():
                        status, headers, body = call(request)
                else:
                    status, headers, body = call(request)
        except BaseException:
            status, headers, body = _rejected(
                p.Rejection(500, "internal", "hop crashed")
            )
            self._finish(key, status, headers, body, first)
            raise
        self._finish(key, status, headers, body, first)
        return status, headers, body

    def _seen(self, writer, nonce: str, now: float) -> bool:
        with writer:
            return self.store.nonce_seen(nonce, now + self.nonce_retention)

    def _take_over(self, writer, key: str, me: str, stale: str) -> bool:
        with writer:
            return self.store.hop_takeover(key, me, stale)

    def _finish(
        self, key: str, status: int, headers, body: bytes, nonce: str | None
    ) -> None:
        """Store the answer, in one transaction with the segment's step checkpoints."""
        stored_headers, stored_body = dict(headers), body
        if nonce:
            stored_headers[H_NONCE] = nonce
        masked = _without_secrets(body)
        if masked is not None:
            stored_headers[H_MASKED], stored_body = "true", masked
        durable.buffer_for(self.store).commit(
            answered=(key, status, stored_headers, stored_body, self.clock())
        )

    # -- expiry -----------------------------------------------------------------------------

    def _start_expiry(self) -> None:
        if self._expirer is not None:
            return
        with self._lock:
            if self._expirer is None:
                self._expirer = threading.Thread(
                    target=self._expire_forever, name="sl2s-store-expiry", daemon=True
                )
                self._expirer.start()

    def _expire_forever(self) -> None:
        while True:
            try:
                self.store.expire(self.clock())
            except (
                Exception
            ) as error:  # noqa: BLE001 - expiry is housekeeping; say it, go on
                log.warning(
                    "expiring the flow store %s failed: %s", self.store.url, error
                )
            time.sleep(EXPIRE_EVERY)
