"""The hop client: stdlib `http.client`, one keep-alive connection per (thread, origin).

Chosen by measurement (bench/peers.py measures it again): on loopback a hop to a Starlette/uvicorn
server costs ~0.43 ms with `http.client` against ~1.25 ms with `httpx.Client`. A connection is
never shared between threads, so no locking is needed; each thread keeps its own small pool.

Retries (docs/hop-protocol.md, "Retries"): connection failures (refused, reset, closed while idle)
are retried always; timeouts and 409/429/502/503/504 are retried too because the idempotency key
makes a repeated hop safe — the server answers a repeat from its store and never runs a step twice.
`timeout` bounds each attempt (connect, send, every wait for the answer). With a `deadline` (the
flow's, sl2s.runtime.transport.http.deadlines) attempts go on until it, each cut to the time left; without one a
hop makes at most `attempts` tries. Backoff is exponential with full jitter, never past the
deadline. When the attempts or the time run out, `HopUnreachable` names the target, its URL, the
attempts, the last failure and the idempotency key, and keeps what the caller needs to say what
became of the hop (`delivered`, the last refusal's status and body).

Replicas (docs/deploy.md, "Replicas"): `base_url` may be a tuple of a machine's replicas' URLs. A
hop starts on the next replica in turn (round robin per client) and each retry of it — same
idempotency key — goes to the following one, at once while the round has replicas left, with the
backoff only between rounds. That is safe because replicas share the flow store: one that finds the
key running under a live process answers 409 in_progress, one whose owner died takes it over.
A replica that failed (no connection, timed out, 502/503/504) rests for `REST_SECONDS`: hops do not
start on it while another one is not resting, so a dead or hung replica costs one failed attempt,
not one per second hop. A single URL skips all of this.
"""

from __future__ import annotations

import http.client
import itertools
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

# CLIENT_IDLE_SECONDS: idle time after which a pooled connection is dropped instead of reused.
# Servers close idle keep-alive connections after SERVER_KEEPALIVE_SECONDS (`sl2s serve` sets
# uvicorn's `timeout_keep_alive` to it); staying well below avoids sending on a closing connection.
from sl2s.runtime.transport.http import deadlines
from sl2s.runtime.transport.http.protocol import CLIENT_IDLE_SECONDS

RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0
# seconds a replica that failed is not chosen to start a hop on (retries may still reach it)
REST_SECONDS = 5.0
REST_STATUSES = frozenset({502, 503, 504})


class HopUnreachable(Exception):
    """Every attempt of a hop failed at the transport level, or its deadline passed."""

    def __init__(
        self,
        target: str,
        url: str,
        attempts: int,
        last: str,
        idempotency_key: str,
        *,
        deadline_passed: bool = False,
        delivered: bool = False,
        last_status: int = 0,
        last_body: bytes = b"",
        replicas: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.url = url  # the last replica tried, when there are several
        self.replicas = tuple(replicas)
        self.attempts = attempts
        self.last = last
        self.idempotency_key = idempotency_key
        self.deadline_passed = deadline_passed
        # some attempt's request reached the machine (it may have run)
        self.delivered = delivered
        self.last_status = last_status  # the last retryable answer's status (0: none)
        self.last_body = last_body
        within = (
            f"before the flow's deadline ({attempts} attempt(s))"
            if deadline_passed
            else f"after {attempts} attempt(s)"
        )
        at = f"replicas {', '.join(replicas)}" if len(replicas) > 1 else url
        super().__init__(
            f"machine '{target}' at {at} did not answer {within}: {last}"
            f" (idempotency key {idempotency_key})"
        )


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    attempts: int


class _OneWrite:
    """Send the request line, headers and body in one write.

    `http.client` writes the headers and the body separately: two packets, and on the server a
    wake-up with half a request. Joining them saves a system call and an event-loop turn on both
    ends of every hop. Relies on `HTTPConnection._send_output`/`_buffer` (stable since Python 3.6);
    anything unexpected falls back to the standard path.
    """

    def _send_output(self, message_body=None, encode_chunked=False):  # noqa: ANN001
        buffer = getattr(self, "_buffer", None)
        if (
            isinstance(message_body, bytes)
            and not encode_chunked
            and isinstance(buffer, list)
        ):
            buffer.extend((b"", b""))
            message = b"\r\n".join(buffer)
            del buffer[:]
            self.send(message + message_body)
            return
        super()._send_output(message_body, encode_chunked)


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


class _Pooled:
    __slots__ = ("conn", "last_used")

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self.conn = conn
        self.last_used = time.monotonic()


class HopClient:
    """POSTs hop bodies with retries. Thread-safe: every thread has its own connections."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        attempts: int | None = 4,
        idle_seconds: float = CLIENT_IDLE_SECONDS,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.timeout = timeout
        self.attempts = None if attempts is None else max(1, attempts)
        self.idle_seconds = idle_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._jitter = jitter
        self._local = threading.local()
        self._turn = itertools.count()  # round robin over replicas (next() is atomic)
        # replica URL -> monotonic time until which hops do not start on it (shared by threads:
        # single dict operations, atomic under the GIL; a lost update costs one extra attempt)
        self._resting: dict[str, float] = {}

    # -- connections ---------------------------------------------------------------------------

    def _pool(self) -> dict[tuple[str, str, int], _Pooled]:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        return pool

    def _connection(
        self, origin: tuple[str, str, int], timeout: float
    ) -> tuple[http.client.HTTPConnection, bool]:
        pool = self._pool()
        pooled = pool.get(origin)
        if pooled is not None:
            if time.monotonic() - pooled.last_used < self.idle_seconds:
                pooled.conn.timeout = timeout
                if pooled.conn.sock is not None:
                    pooled.conn.sock.settimeout(timeout)
                return pooled.conn, True
            pooled.conn.close()
            del pool[origin]
        scheme, host, port = origin
        cls = _HTTPSConnection if scheme == "https" else _HTTPConnection
        conn = cls(host, port, timeout=timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool[origin] = _Pooled(conn)
        return conn, False

    def _drop(self, origin: tuple[str, str, int]) -> None:
        pooled = self._pool().pop(origin, None)
        if pooled is not None:
            pooled.conn.close()

    def close(self) -> None:
        """Close this thread's connections."""
        for origin in list(self._pool()):
            self._drop(origin)

    def _send_once(
        self,
        origin: tuple[str, str, int],
        path: str,
        body: bytes,
        sign: Callable[[], Mapping[str, str]],
        timeout: float,
    ) -> tuple[int, dict[str, str], bytes]:
        """One attempt; `sign()` gives fresh signed headers for each send (a resend of the same
        signature would be refused as a replay by a server that saw the first one)."""
        for fresh_try in (False, True):
            conn, reused = self._connection(origin, timeout)
            try:
                conn.request("POST", path, body=body, headers=dict(sign()))
                resp = conn.getresponse()
                data = resp.read()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
            ):
                self._drop(origin)
                if reused and not fresh_try:
                    continue  # the server closed an idle connection: one immediate fresh try
                raise
            except BaseException:
                self._drop(origin)
                raise
            if resp.will_close:
                self._drop(origin)
            else:
                self._pool()[origin].last_used = time.monotonic()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")  # pragma: no cover

    # -- hops ----------------------------------------------------------------------------------

    def _first(self, replicas: Sequence[str]) -> int:
        """The replica a hop starts on: the next in turn, passing over resting ones (all resting:
        the next in turn anyway)."""
        count = len(replicas)
        turn = next(self._turn) % count
        if self._resting:
            now = time.monotonic()
            for step in range(count):
                if self._resting.get(replicas[(turn + step) % count], 0.0) <= now:
                    return (turn + step) % count
        return turn

    def post(
        self,
        *,
        target: str,
        base_url: str | Sequence[str],
        path: str,
        body: bytes,
        idempotency_key: str,
        headers_for: Callable[[float], Mapping[str, str]],
        deadline: float | None = None,
    ) -> Response:
        """POST `body` to `base_url + path`, retrying; `headers_for(now)` signs each attempt anew.

        `base_url`: one URL, or a sequence of replicas' URLs (each attempt on the next one).
        `deadline` (epoch seconds): retry until then, each attempt cut to the time left (and
        `attempts`, when set, caps the tries); None: at most `attempts` tries (4 when unset).
        Returns the first response that is not retryable. Raises HopUnreachable when the attempts
        or the time run out.
        """
        if isinstance(base_url, str):
            replicas: Sequence[str] = ()
            origin, full_path = _where(base_url, path)
        else:
            replicas = base_url
            if len(replicas) == 1:
                base_url, replicas = replicas[0], ()
                origin, full_path = _where(base_url, path)
            else:
                turn = self._first(replicas)
                base_url = replicas[turn]
                origin, full_path = _where(base_url, path)
        cap = self.attempts if deadline is not None else (self.attempts or 4)
        out_of_time = False
        last_stamp = 0.0
        last = "no attempt made"
        last_status, last_body, delivered = 0, b"", False
        attempt = 0

        def sign() -> Mapping[str, str]:
            nonlocal last_stamp  # every send gets a new signature (a later timestamp)
            last_stamp = max(time.time(), last_stamp + 0.001)
            return headers_for(last_stamp)

        while True:
            now = time.time()
            timeout = self.timeout
            if deadline is not None:
                timeout = deadlines.attempt_timeout(self.timeout, deadline - now)
                if timeout < deadlines.MIN_ATTEMPT:
                    out_of_time = True
                    break
            attempt += 1
            retry_after = 0.0
            try:
                status, resp_headers, data = self._send_once(
                    origin, full_path, body, sign, timeout
                )
            except (OSError, http.client.HTTPException) as error:
                last = _describe(error)
                # refused or unresolvable: nothing reached the machine; otherwise it may have
                delivered = delivered or not isinstance(
                    error, (ConnectionRefusedError, socket.gaierror)
                )
                if replicas:
                    self._resting[base_url] = time.monotonic() + REST_SECONDS
            else:
                if status not in RETRY_STATUSES:
                    if replicas and self._resting:
                        self._resting.pop(base_url, None)
                    return Response(status, resp_headers, data, attempt)
                if replicas and status in REST_STATUSES:
                    self._resting[base_url] = time.monotonic() + REST_SECONDS
                delivered = True
                # the next attempt on a new connection: behind a load balancer (a Kubernetes
                # Service during a rollout) it may reach another replica, of the right version
                self._drop(origin)
                last = f"HTTP {status} {_reason(data)}"
                last_status, last_body = status, data
                retry_after = _retry_after(resp_headers.get("retry-after"))
            if cap is not None and attempt >= cap:
                break
            rounds = attempt
            if replicas:
                turn = (turn + 1) % len(replicas)
                base_url = replicas[turn]
                origin, full_path = _where(base_url, path)
                if attempt % len(replicas):
                    continue  # replicas left in this round: the next one at once
                rounds = attempt // len(replicas)
            remaining = float("inf") if deadline is None else deadline - time.time()
            delay = deadlines.backoff(
                rounds,
                remaining,
                base=self.backoff_base,
                cap=self.backoff_cap,
                jitter=self._jitter(),
                retry_after=retry_after,
            )
            if delay > 0:
                self._sleep(delay)
        if attempt == 0:
            last = "the flow's deadline had passed before the hop was sent"
        raise HopUnreachable(
            target,
            base_url,
            attempt,
            last,
            idempotency_key,
            deadline_passed=out_of_time,
            delivered=delivered,
            last_status=last_status,
            last_body=last_body,
            replicas=replicas,
        )


def _where(base_url: str, path: str) -> tuple[tuple[str, str, int], str]:
    """The (scheme, host, port) origin of `base_url` and the request path under it."""
    parts = urlsplit(base_url)
    scheme = parts.scheme or "http"
    origin = (
        scheme,
        parts.hostname or "127.0.0.1",
        parts.port or (443 if scheme == "https" else 80),
    )
    return origin, (parts.path.rstrip("/") + path) if parts.path else path


def _describe(error: BaseException) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without a response"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


def _reason(data: bytes) -> str:
    text = data[:200].decode("utf-8", "replace")
    return text


def _retry_after(value: str | None) -> float:
    if value and value.strip().isdigit():
        return min(float(value.strip()), BACKOFF_CAP)
    return 0.0
