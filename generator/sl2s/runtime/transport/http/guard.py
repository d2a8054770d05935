"""What a hop server allows a request before it is authenticated: time, bytes, connections.

A hop's signature covers the SHA-256 of its body, so the body must be read before it can be
verified; everything else is checked first (sl2s.runtime.transport.http.protocol.check_signed_headers).
What is left to bound is what reading costs, and this module bounds it:

- `read_body`: the body of one request, at most `limit` bytes, complete within `timeout` seconds
  of its head (else 408 `body_timeout`), and only while the bytes of all bodies being read and
  not yet verified stay within a `BodyBudget` (else 503 `busy`, which clients retry);
- `GuardedH11Protocol`: uvicorn's HTTP/1.1 protocol with a header timeout: a request head must be
  complete within `head_timeout` seconds of the connection opening or of the previous answer
  ending, else the connection is closed (slow-header clients hold nothing for long);
- `uvicorn_config`: the server settings `sl2s serve` and `sl2s up` run with, these included, plus
  the keep-alive timeout and the connection cap.

The numbers are in http_protocol (HEADER_TIMEOUT_SECONDS, BODY_TIMEOUT_SECONDS,
PREAUTH_BODY_BUDGET, MAX_CONNECTIONS) and docs/hop-protocol.md ("Before authentication").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from sl2s.runtime.transport.http import protocol as p


class BodyBudget:
    """Bytes of request bodies being read but not yet verified, over all connections.

    Used only from the event loop's thread, so it needs no lock. `take` reserves or refuses;
    whoever took bytes gives them back once the body is verified or dropped.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


def declared_length(headers: Mapping[str, str], limit: int) -> int | None:
    """The `content-length` of a request (None when absent: a chunked body), checked against
    `limit` before any of the body is read: 400 `bad_length`, 413 `too_large`."""
    length = headers.get("content-length")
    if length is None:
        return None
    if not (length.isascii() and length.isdigit()) or len(length) > 18:
        raise p.Rejection(400, "bad_length", "content-length is not a number")
    size = int(length)
    if size > limit:
        raise p.Rejection(
            413, "too_large", f"hop body of {size} bytes exceeds the limit of {limit}"
        )
    return size


def _busy() -> p.Rejection:
    return p.Rejection(
        503,
        "busy",
        "too many unverified request bodies are being read; try again shortly",
    )


async def read_body(
    receive,
    declared: int | None,
    limit: int,
    budget: BodyBudget,
    timeout: float,
) -> tuple[bytes, int]:
    """Read one request body; returns it and the bytes it holds of `budget` (the caller gives
    them back once the body is verified). Raises 408 `body_timeout`, 413 `too_large`, 503 `busy`
    or 400 `disconnected` (having given back what it took).

    A declared length is reserved whole before the first byte is read (a lying `content-length`
    holds its claim until the timeout); a chunked body reserves as it arrives. The timeout is a
    timer that cancels this task, not `asyncio.wait_for`: no second task on the hot path.
    """
    reserved = 0
    if declared is not None:
        if not budget.take(declared):
            raise _busy()
        reserved = declared
    task = asyncio.current_task()
    assert task is not None  # (called inside a request's task)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise p.Rejection(
                    400, "disconnected", "the client went away mid-request"
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise p.Rejection(
                    413, "too_large", f"hop body exceeds the limit of {limit} bytes"
                )
            if size > reserved:
                if not budget.take(size - reserved):
                    raise _busy()
                reserved = size
            chunks.append(chunk)
            if not message.get("more_body", False):
                timer.cancel()
                return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), reserved
    except asyncio.CancelledError:
        budget.give(reserved)
        if not expired:  # the server is stopping, or the client went away
            timer.cancel()
            raise
        if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled here
            task.uncancel()
        raise p.Rejection(
            408,
            "body_timeout",
            f"the request body did not arrive within {timeout:g} s "
            f"({size} of {declared if declared is not None else 'an unknown number of'} bytes)",
        ) from None
    except BaseException:
        timer.cancel()
        budget.give(reserved)
        raise


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout (uvicorn has only a keep-alive timeout, which
    any byte received cancels, so a client sending one header byte at a time was never closed).

    The timer runs from the connection opening, and from the end of each answer, until the next
    request head is complete (a new request cycle starts); if it fires first, the connection is
    closed without an answer. It is not reset by data: a slow head, or a body left unread after
    an early answer (a rejection) that trickles in, counts against the same timeout.
    """

    head_timeout: float = p.HEADER_TIMEOUT_SECONDS
    read_size: int = 64 * 1024  # asyncio reads up to 256 KiB at a time

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: Any = None
        # What a connection buffers before the app decides about its request is about one read
        # (uvicorn pauses reading past 64 KiB). Measured with 200 unsigned 1 MiB bodies at once:
        # +25 MiB peak with asyncio's 256 KiB reads, +5-7 MiB with 64 KiB reads and unread
        # bodies dropped when the answer is sent (below). Hop bodies are small: no cost to them.
        if hasattr(transport, "max_size"):
            transport.max_size = self.read_size
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None and self.cycle is not self._head_cycle:
            self._disarm_head_timer()  # a new request head is complete

    def on_response_complete(self) -> None:
        before = self.cycle
        if before is not None and before.body:
            before.body = (
                bytearray()
            )  # a body answered before it was read: drop it now, not
            #                            when the connection's next request replaces the cycle
        super().on_response_complete()
        if self.cycle is before and not self.transport.is_closing():
            self._arm_head_timer()  # (a pipelined request that already started needs none)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)


def connection_cap() -> int:
    """MAX_CONNECTIONS, or fewer when this process may open fewer files (keeping 100 for logs,
    stores and outgoing hops): past the file limit `accept` fails instead of answering 503.
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return p.MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return p.MAX_CONNECTIONS
    return max(16, min(p.MAX_CONNECTIONS, soft - 100))


def uvicorn_config(app, **options: Any):
    """The uvicorn.Config a machine is served with: the guarded h11 protocol (header timeout),
    the keep-alive timeout, the connection cap (`limit_concurrency`: further requests get 503).
    """
    import uvicorn

    settings: dict[str, Any] = {
        "http": GuardedH11Protocol,
        "lifespan": "off",
        "log_level": "warning",
        "access_log": False,
        "timeout_keep_alive": p.SERVER_KEEPALIVE_SECONDS,
        "timeout_graceful_shutdown": 10,
        "limit_concurrency": connection_cap(),
        "backlog": 1024,
    }
    settings.update(options)
    return uvicorn.Config(app, **settings)
