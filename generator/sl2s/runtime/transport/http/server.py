"""One machine as a Starlette ASGI app: the hop endpoint, a health endpoint, an idempotency store.

`create_app(handler, machine=..., keys=...)` builds the app around any hop handler (a function
from request envelope to response envelope); `machine_app(services_dir, machine)` binds it to a
generated machine's `Machine.handle`. The module-level `app` is configured by environment, so
`uvicorn sl2s.runtime.transport.http.server:app` serves a machine with no code of its own:

    SL2S_SERVICES=path/to/services SL2S_MACHINE=server SL2S_HOP_KEY=... \\
        uvicorn sl2s.runtime.transport.http.server:app --host 127.0.0.1 --port 8001

Every machine also serves its incidents (`GET /sl2s/v1/incidents/…`, `SignedReads`: signed like
hops). The protocol (statuses, headers, idempotency, signed reads) is in docs/hop-protocol.md.
A hop reaches the idempotency store and the machine only once it is authenticated and its
envelope valid; what an unauthenticated request may cost (time, bytes, connections) is bounded by
sl2s.runtime.transport.http.guard, which also makes the uvicorn config `run_server` uses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, Router

from sl2s.runtime.core import durable
from sl2s.runtime.core.stdmask import masked_std_streams
from sl2s.runtime.transport import HopRequest, HopResponse
from sl2s.runtime.transport.http import deadlines
from sl2s.runtime.transport.http import guard as http_guard
from sl2s.runtime.transport.http import protocol as p
from sl2s.runtime.transport.http import version as flow_version

log = logging.getLogger("sl2s.http")

JSON = "application/json"


# A handler runs one inbound hop: `Machine.handle`. It reports failures inside the flow as
# `HopResponse.error`; raising is a bug (reported as a 500 "internal" rejection).
Handler = Callable[[HopRequest], HopResponse]


# ---------------------------------------------------------------------------------------------
# idempotency store


@dataclass
class _Entry:
    digest: str  # SHA-256 of the request body
    created: float
    nonces: set[str] = field(default_factory=set)  # signatures seen with this key
    pending: bool = True
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None once evicted for space (a tombstone)


class IdempotencyStore:
    """Responses by idempotency key, kept for `retention` seconds, at most `max_bytes` of bodies.

    Used only from the event loop's thread, so it needs no lock. Keys live at least as long as a
    signature can be valid (twice the allowed skew plus a minute), so a replayed request is always
    recognised. When stored bodies pass `max_bytes`, the oldest bodies are dropped but their keys
    stay as tombstones: a retry then gets 410 instead of running the hop again.
    """

    def __init__(
        self,
        retention: float,
        max_bytes: int = 64 * 1024 * 1024,
        max_entries: int = 500_000,
    ) -> None:
        self.retention = retention
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> _Entry | None:
        self._expire(now)
        return self._entries.get(key)

    def begin(self, key: str, digest: str, nonce: str | None, now: float) -> _Entry:
        entry = _Entry(digest=digest, created=now)
        if nonce:
            entry.nonces.add(nonce)
        self._entries[key] = entry
        return entry

    def finish(
        self, entry: _Entry, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        entry.pending = False
        entry.status, entry.headers, entry.body = status, headers, body
        self._bytes += len(body)
        if self._bytes > self.max_bytes:
            for old in self._entries.values():
                if self._bytes <= self.max_bytes:
                    break
                if old.body is not None and not old.pending and old is not entry:
                    self._bytes -= len(old.body)
                    old.body = None
        while len(self._entries) > self.max_entries:
            _, old = self._entries.popitem(last=False)
            if old.body is not None:
                self._bytes -= len(old.body)
            log.warning(
                "idempotency store full: forgot the oldest key before its retention ended"
            )

    def _expire(self, now: float) -> None:
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if now - oldest.created <= self.retention or oldest.pending:
                return
            del self._entries[key]
            if oldest.body is not None:
                self._bytes -= len(oldest.body)


# ---------------------------------------------------------------------------------------------
# worker threads


class WorkerPool:
    """Threads that run hop handlers (steps block; a nested hop waits on the next machine).

    Measured here: a round trip through this pool costs ~35-50 µs, through anyio's `to_thread`
    (Starlette's `run_in_threadpool`) ~150 µs and through `loop.run_in_executor` ~40-55 µs
    (bench/bench_worker_pool.py) — on a ~0.6 ms loopback hop that margin counts.
    Threads start on demand up to `max_threads`; further work waits in the queue.

    Whether to start a thread is decided by counting work, not idle threads: `_pending` is every
    task submitted and not yet finished, and a thread starts whenever it exceeds `_threads`. (A
    count of idle threads raced: a thread counted idle had often not yet taken the task queued
    before, so a burst of blocking hops ran on a few threads, one after another.) Threads never
    exit, so `_threads` only grows, and at most `max_threads` tasks ever run at once.
    """

    def __init__(self, max_threads: int = 64) -> None:
        self.max_threads = max_threads
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._pending = 0  # submitted and not finished (queued or running)

    def submit(self, fn: Callable, *args: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._pending += 1
            start = self._pending > self._threads < self.max_threads
            if start:
                self._threads += 1
        if start:
            threading.Thread(target=self._work, name="sl2s-hop", daemon=True).start()
        self._queue.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            loop, future, fn, args = self._queue.get()
            try:
                result, error = fn(*args), None
            except (
                BaseException
            ) as caught:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, caught
            with self._lock:
                self._pending -= 1
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: the server is gone
                pass


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# ---------------------------------------------------------------------------------------------
# the app


Answer = tuple[int, Mapping[str, str], bytes]  # status, extra headers, body


def _respond(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> Answer:
    return status, headers or {}, body


# extra headers of the rejections made before authentication ends: a 408 leaves the body unread,
# so the connection cannot carry another request; a 503 `busy` clears up within about a second
_AFTER = {408: {"connection": "close"}, 503: {"retry-after": "1"}}


def _reject(rejection: p.Rejection, extra: Mapping[str, str] | None = None) -> Answer:
    headers = {p.H_OUTCOME: "rejected", **(extra or {})}
    return rejection.status, headers, rejection.body()


async def _send(send, answer: Answer) -> None:
    status, headers, body = answer
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class _Endpoint:
    """A raw ASGI endpoint for Starlette's router (no Request/Response objects: the hop path
    is the hot path, and these save a good part of the server's own time per hop)."""

    def __init__(self, handle) -> None:
        self.handle = handle

    async def __call__(self, scope, receive, send) -> None:
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
        # the target as sent (not the decoded path): what is signed, and what must name the hop
        await _send(send, await self.handle(request_target(scope), headers, receive))


def create_app(
    handler: Handler,
    *,
    machine: str,
    keys: tuple[bytes, ...] = (),
    max_body: int = p.DEFAULT_MAX_BODY,
    max_skew: float = p.MAX_SKEW_SECONDS,
    clock: Callable[[], float] = time.time,
    store: IdempotencyStore | None = None,
    extra_routes: list | None = None,
    max_threads: int = 64,
    flows=None,
    has_segment: Callable[[str, str], bool] | None = None,
    body_timeout: float = p.BODY_TIMEOUT_SECONDS,
    preauth_budget: int = p.PREAUTH_BODY_BUDGET,
    flow_digest: Callable[[str], str | None] | None = None,
) -> Starlette:
    """The ASGI app of one machine. `keys` empty = unauthenticated (only for loopback/--insecure).
    `flows`: the flow store (sl2s.runtime.store) that keeps hops by idempotency key durably;
    without one, answers are kept in this process's memory (`store`).
    `has_segment(flow, at)`: whether the machine runs that segment (else 404 before the handler
    runs); `body_timeout` and `preauth_budget` (bytes of unverified bodies, never less than one
    `max_body`): the limits of sl2s.runtime.transport.http.guard.
    `flow_digest(flow)`: this machine's digest of the flow; a hop from another version is refused
    with 409 version_skew (sl2s.runtime.transport.http.version). The handler's own hops keep to the inbound
    hop's deadline (sl2s.runtime.transport.http.deadlines)."""
    handler = deadlines.serving(handler)
    budget = http_guard.BodyBudget(max(preauth_budget, max_body))
    if store is None:
        store = IdempotencyStore(retention=2 * max_skew + 60)
    pool = WorkerPool(max_threads)
    hops = None
    if flows is not None:
        from sl2s.runtime.transport.http.idempotency import DurableHops

        hops = DurableHops(flows, nonce_retention=2 * max_skew + 60, clock=clock)
        bound = partial(_call, handler)

    async def hop(target: str, headers: Mapping[str, str], receive) -> Answer:
        # Nothing below this block sees a request it has not authenticated and validated: the
        # head is checked before a byte of the body is read, the body is read within the guard's
        # time and byte limits, its MAC verified, and the envelope checked member by member.
        try:
            flow, at = p.parse_hop_path(target)
            if keys:
                signed = p.check_signed_headers(headers, clock(), max_skew)
                ikey = signed[0]
            else:
                ikey = p.check_idempotency_key(headers.get(p.H_IDEMPOTENCY_KEY))
            declared = http_guard.declared_length(headers, max_body)
            body, held = await http_guard.read_body(
                receive, declared, max_body, budget, body_timeout
            )
            try:
                nonce = (
                    p.check_signature(keys, signed, "POST", target, body)
                    if keys
                    else None
                )
            finally:
                budget.give(held)
            if has_segment is not None and not has_segment(flow, at):
                if flow_digest is not None:  # another version of the flow? then 409
                    flow_version.check_body(machine, flow, body, flow_digest)
                raise p.Rejection(
                    404,
                    "no_segment",
                    f"machine '{machine}' has no segment of flow '{flow}' starting at step "
                    f"'{at}' (the caller's wiring is newer or older than this machine's: "
                    "regenerate with `sl2s generate`)",
                )
            hop_request = _hop_request(body, flow, at, machine, headers, ikey)
            if flow_digest is not None:  # a hop from another version of the flow: 409
                flow_version.check(machine, flow, hop_request.version, flow_digest)
        except p.Rejection as rejection:
            return _reject(rejection, _AFTER.get(rejection.status))

        now = clock()
        digest = p.body_digest(body)
        if (
            hops is not None
        ):  # the flow store: durable idempotency (sl2s.runtime.transport.http.idempotency)
            status, out_headers, out_body = await pool.submit(
                hops.answer, bound, hop_request, digest, nonce
            )
            return _respond(status, out_body, out_headers)
        entry = store.get(ikey, now)
        if entry is not None:
            if entry.digest != digest:
                return _reject(
                    p.Rejection(
                        422,
                        "key_reused",
                        "this idempotency key was used for a different hop body",
                    )
                )
            if nonce is not None and nonce in entry.nonces:
                return _reject(
                    p.Rejection(
                        401, "replayed", "this exact signed hop was already received"
                    )
                )
            if nonce is not None:
                entry.nonces.add(nonce)
            if entry.pending:
                return _reject(
                    p.Rejection(
                        409,
                        "in_progress",
                        "a hop with this idempotency key is still running",
                    ),
                    {"retry-after": "1"},
                )
            if entry.body is None:
                return _reject(
                    p.Rejection(
                        410,
                        "forgotten",
                        "the stored answer for this key was evicted; the hop ran once",
                    )
                )
            return _respond(
                entry.status, entry.body, {**entry.headers, "sl2s-replayed": "true"}
            )

        entry = store.begin(ikey, digest, nonce, now)
        try:
            try:
                running = pool.submit(_call, handler, hop_request)
                try:
                    status, out_headers, out_body = await asyncio.shield(running)
                except asyncio.CancelledError:
                    # The server is stopping or the client went away; the hop still runs to its
                    # end in its thread, and its answer is stored for a retry.
                    running.add_done_callback(
                        lambda done: _finish_later(store, entry, done)
                    )
                    raise
            except p.Rejection as rejection:
                status, out_headers, out_body = (
                    rejection.status,
                    {p.H_OUTCOME: "rejected"},
                    rejection.body(),
                )
        except asyncio.CancelledError:
            raise
        except BaseException:
            store.finish(
                entry,
                500,
                {p.H_OUTCOME: "failed"},
                p.Rejection(500, "internal", "hop crashed").body(),
            )
            raise
        store.finish(entry, status, out_headers, out_body)
        return _respond(status, out_body, out_headers)

    async def health(request: Request) -> Response:
        return Response(p.encode({"status": "ok", "machine": machine}), media_type=JSON)

    routes = [
        Route(p.HOP_PREFIX + "{flow}/{at}", _Endpoint(hop), methods=["POST"]),
        Route(p.HEALTH_PATH, health, methods=["GET", "HEAD"]),
        *(extra_routes or []),
    ]
    application = Starlette(routes=routes)
    application.state.store = store
    application.state.machine = machine
    return application


# ---------------------------------------------------------------------------------------------
# signed reads (the incidents endpoint)

INCIDENTS_PATH = "/sl2s/v1/incidents"


def request_target(scope) -> str:
    """The path and query exactly as the client sent them: what a signed read signs."""
    raw = scope.get("raw_path")
    if raw:
        path = raw.decode("latin-1")
    else:
        from urllib.parse import quote

        path = quote(scope.get("path", ""), safe="/")
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


class SignedReads:
    """ASGI wrapper that lets a request through only when it is signed like a hop.

    A read is signed as a hop with an empty body: the signing string's method is the request's
    (`GET`), its path is the request target (path and `?query`, as sent), its body digest is the
    SHA-256 of no bytes, and its `idempotency-key` is a fresh random nonce per request. Reads are
    not stored (they change nothing); a signature is accepted once: the same signature again
    within the time it could be valid is `401 replayed`. Without keys every request passes (the
    same policy as unsigned hops: `sl2s serve` refuses a non-loopback address then).
    """

    def __init__(
        self,
        app,
        keys: tuple[bytes, ...],
        *,
        max_skew: float = p.MAX_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
        max_seen: int = 100_000,
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_skew = max_skew
        self.clock = clock
        self.retention = 2 * max_skew + 60
        self.max_seen = max_seen
        self._seen: OrderedDict[str, float] = (
            OrderedDict()
        )  # signature -> when accepted

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
        }
        try:
            try:
                self.check(scope["method"], request_target(scope), headers)
            except (ValueError, UnicodeError):  # non-ASCII target or digits like '²'
                raise p.Rejection(
                    401, "bad_signature", "the request cannot carry a valid signature"
                ) from None
        except p.Rejection as rejection:
            await _send(send, _reject(rejection))
            return
        await self.app(scope, receive, send)

    def check(self, method: str, target: str, headers: Mapping[str, str]) -> None:
        """Raise a 401 (or 400 for a malformed nonce) Rejection unless the read is signed."""
        if not headers.get(p.H_TIMESTAMP) or not headers.get(p.H_SIGNATURE):
            raise p.Rejection(
                401,
                "unsigned",
                "the request is not signed (sl2s-timestamp/sl2s-signature): sign it with "
                "SL2S_HOP_KEY, as hops are",
            )
        now = self.clock()
        signature = p.verify(
            self.keys, headers, method, target, b"", now, self.max_skew
        )
        seen = self._seen
        while seen:
            oldest, when = next(iter(seen.items()))
            if now - when <= self.retention:
                break
            del seen[oldest]
        if signature in seen:
            raise p.Rejection(
                401, "replayed", "this exact signed request was already received"
            )
        seen[signature] = now
        if len(seen) > self.max_seen:
            seen.popitem(last=False)
            log.warning(
                "signed-read store full: forgot the oldest signature before its retention ended"
            )


def machine_log_dir(services_dir: str | os.PathLike) -> str:
    """The log dir of a served machine, by the runtime's rule: `$SL2S_LOG_DIR`, else
    `<services>/.sl2s/logs`."""
    from pathlib import Path

    return os.environ.get("SL2S_LOG_DIR") or str(
        Path(services_dir).resolve() / ".sl2s" / "logs"
    )


def incidents_mount(
    log_dir: str | os.PathLike,
    keys: tuple[bytes, ...],
    **options: Any,
) -> Mount:
    """`/sl2s/v1/incidents` serving the incidents of `log_dir`, behind `SignedReads`."""
    from sl2s.observe.incidents import routes

    return Mount(
        INCIDENTS_PATH, app=SignedReads(Router(routes=routes(log_dir)), keys, **options)
    )


def events_mount(
    log_dir: str | os.PathLike,
    keys: tuple[bytes, ...],
    **options: Any,
) -> Mount:
    """`/sl2s/v1/events` serving the machine's event logs of `log_dir` incrementally (what
    `sl2s console --url` and `sl2s run --remote` read), behind `SignedReads`."""
    from sl2s.observe.event_routes import EVENTS_PATH, routes

    return Mount(
        EVENTS_PATH, app=SignedReads(Router(routes=routes(log_dir)), keys, **options)
    )


def _finish_later(store: IdempotencyStore, entry: _Entry, done: asyncio.Future) -> None:
    if done.cancelled() or done.exception() is not None:
        store.finish(
            entry,
            500,
            {p.H_OUTCOME: "failed"},
            p.Rejection(500, "internal", "hop crashed").body(),
        )
    else:
        status, headers, body = done.result()
        store.finish(entry, status, headers, body)


def _hop_request(
    body: bytes,
    flow: str,
    at: str,
    machine: str,
    headers: Mapping[str, str],
    ikey: str,
) -> HopRequest:
    """The HopRequest of a hop body and its headers; a Rejection when it is not one for here."""
    envelope = p.decode_object(body, "hop body")
    p.check_request(envelope, flow, at)
    if envelope["target"] != machine:
        raise p.Rejection(
            421,
            "wrong_machine",
            f"hop for machine '{envelope['target']}' reached machine '{machine}'",
        )
    envelope.pop("v")
    traceparent = p.parse_traceparent(headers.get(p.H_TRACEPARENT))
    envelope["traceparent"] = traceparent.header() if traceparent else ""
    envelope["causation_id"] = p.parse_baggage(headers.get(p.H_BAGGAGE)).get(
        p.BAGGAGE_CAUSATION
    )
    envelope["idempotency_key"] = ikey
    return HopRequest.from_dict(envelope)


def _call(handler: Handler, request: HopRequest) -> tuple[int, dict[str, str], bytes]:
    """Run the handler in a worker thread; its response as (status, headers, body)."""
    try:
        response = handler(request)
    except Exception as error:  # noqa: BLE001 - a crash still answers the caller
        log.exception("hop handler crashed")
        rejection = p.Rejection(
            500, "internal", f"machine crashed handling the hop: {type(error).__name__}"
        )
        return 500, {p.H_OUTCOME: "rejected"}, rejection.body()
    body = p.encode(
        response
    )  # orjson serialises the dataclass (asdict would deep-copy)
    if response.error is not None:
        return 500, {p.H_OUTCOME: "failed"}, body
    return 200, {p.H_OUTCOME: "returned"}, body


# ---------------------------------------------------------------------------------------------
# binding to a generated tree


def import_system(services_dir: str | os.PathLike) -> str:
    """Make the generated package at `services_dir` importable; return its package name."""
    import importlib
    import sys
    from pathlib import Path

    from sl2s.runtime.transport.http.config import HopConfigError

    root = Path(services_dir).resolve()
    # as `sl2s run` (launch): hops name the system, an identifier
    if not (root / "__init__.py").is_file() or not root.name.isidentifier():
        raise HopConfigError(
            f"{services_dir}: not a generated system package (needs __init__.py and a "
            "directory name that is a Python identifier)"
        )
    parent = str(root.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    importlib.import_module(root.name)
    return root.name


def machine_names(services_dir: str | os.PathLike) -> list[str]:
    """Machines of a generated tree: its sub-packages that have a `_wiring.py`, sorted."""
    from pathlib import Path

    from sl2s.runtime.transport.http.config import HopConfigError

    root = Path(services_dir)
    if not root.is_dir():
        raise HopConfigError(
            f"{services_dir}: no such directory (a generated services tree)"
        )
    return sorted(d.name for d in root.iterdir() if (d / "_wiring.py").is_file())


def load_machine(services_dir: str | os.PathLike, name: str):
    """Import machine `name` of the tree at `services_dir` and return its runtime `Machine`."""
    from sl2s.runtime.core import machine as core_machine
    from sl2s.runtime.transport.http.config import HopConfigError

    system = import_system(services_dir)
    known = machine_names(services_dir)
    if name not in known:
        raise HopConfigError(
            f"{services_dir}: no machine '{name}' (machines: {', '.join(known) or 'none'})"
        )
    return core_machine.load_machine(system, name)


def serves_inbound(machine) -> bool:
    """Whether a machine has segments, i.e. other machines hop to it (it needs an endpoint)."""
    return bool(getattr(machine, "_segments", None))


def machine_app(services_dir: str | os.PathLike, name: str, config=None) -> Starlette:
    """The app serving machine `name` of the generated tree at `services_dir`.

    `config` (default: `load_config(services_dir)`) gives the hop key and body limit. Besides
    hops it serves the machine's incidents at `/sl2s/v1/incidents/` (signed like hops). Its own
    outgoing hops use `SL2S_TRANSPORT`: a served process calls `serving_defaults` first so that
    they go over HTTP.
    """
    from sl2s.runtime.launch import capture_info_records
    from sl2s.runtime.transport.http.config import load_config

    config = config or load_config(str(services_dir))
    machine = load_machine(services_dir, name)
    capture_info_records()  # the steps' INFO records become events, as under `sl2s run`
    return create_app(
        machine.handle,
        machine=name,
        keys=config.keys,
        max_body=config.max_body,
        extra_routes=[
            incidents_mount(machine_log_dir(services_dir), config.keys),
            events_mount(machine_log_dir(services_dir), config.keys),
        ],
        has_segment=machine.has_segment,
        flow_digest=machine.info.flow_digests.get,
        flows=durable.store_for(
            machine.info.dir
        ),  # SL2S_STORE=none: None, answers in memory
    )


def serving_defaults(services_dir: str | os.PathLike) -> None:
    """In a process that serves a machine: hops to other machines go over HTTP (unless
    `SL2S_TRANSPORT` says otherwise) with the addresses of this tree."""
    os.environ.setdefault("SL2S_TRANSPORT", "http")
    os.environ.setdefault("SL2S_SERVICES", str(services_dir))


def app_from_env() -> Starlette:
    """`machine_app` configured by `SL2S_SERVICES` and `SL2S_MACHINE`."""
    from sl2s.runtime.transport.http.config import HopConfigError

    services = os.environ.get("SL2S_SERVICES")
    name = os.environ.get("SL2S_MACHINE")
    if not services or not name:
        raise HopConfigError(
            "set SL2S_SERVICES (the generated directory) and SL2S_MACHINE (the machine to serve)"
        )
    serving_defaults(services)
    return machine_app(services, name)


class _EnvApp:
    """The module-level `app`: builds `app_from_env()` at startup (lifespan) or first request."""

    def __init__(self) -> None:
        self._app: Starlette | None = None
        self._lock = threading.Lock()

    def _get(self) -> Starlette:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = app_from_env()
        return self._app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._get()
                except (
                    Exception
                ) as error:  # noqa: BLE001 - reported to uvicorn, which exits
                    await send(
                        {"type": "lifespan.startup.failed", "message": str(error)}
                    )
                    return
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
            if message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
            return
        await self._get()(scope, receive, send)


app = _EnvApp()


# ---------------------------------------------------------------------------------------------
# running a server process (`sl2s serve`, and the processes `sl2s up` starts)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(
    directory: str,
    machine: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    insecure: bool = False,
    exposed: bool = False,
    fd: int = -1,
    warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> bool:
    """Serve `machine` of the tree at `directory` until SIGINT/SIGTERM; False if it never started.

    Without a hop key, serving on an address that is not loopback is refused (HopConfigError)
    unless both `insecure` and `exposed` are given (`--insecure --expose-unauthenticated`), and
    then warned about loudly. `fd`: serve on this inherited listening socket instead of binding
    `host:port` (the same rule applies to the address it is bound to). A port that cannot be
    bound is a one-line HopConfigError too. The server runs with sl2s.runtime.transport.http.guard's limits.
    """
    import socket

    import uvicorn

    from sl2s.runtime.transport.http.arenas import limit_arenas
    from sl2s.runtime.transport.http.config import HopConfigError, load_config

    serving_defaults(directory)
    config = load_config(directory)
    sock = socket.socket(fileno=fd) if fd >= 0 else None
    address = sock.getsockname()[0] if sock is not None else host
    public = not is_loopback(address)
    if not config.keys and public:
        if not insecure:
            raise HopConfigError(
                f"refusing to serve machine '{machine}' on {address} without SL2S_HOP_KEY: anyone "
                "who can reach it could run its steps. Set SL2S_HOP_KEY (the same long random "
                "string on every machine), or pass --insecure --expose-unauthenticated."
            )
        if not exposed:
            raise HopConfigError(
                f"refusing to serve machine '{machine}' on {address} without SL2S_HOP_KEY: "
                "--insecure allows that on a non-loopback address only together with "
                "--expose-unauthenticated (anyone who can reach it could run its steps and read "
                "its incidents). Set SL2S_HOP_KEY instead."
            )
        for line in (  # said first, and before binding: nothing is exposed unannounced
            f"WARNING: machine '{machine}' will serve UNAUTHENTICATED hops on {address} "
            "(--insecure --expose-unauthenticated, no SL2S_HOP_KEY):",
            "WARNING: anyone who can reach this address can run its steps and read its "
            "incidents. Set SL2S_HOP_KEY on every machine to stop this.",
        ):
            warn(line)
    if sock is None:
        sock = _listen(
            host, port
        )  # before the other warnings: a busy port is the one message
    try:
        application = machine_app(
            directory, machine, config
        )  # an unknown machine fails here
    except BaseException:
        sock.close()
        raise
    if not config.keys and not public:
        warn(
            f"warning: no SL2S_HOP_KEY: hops to machine '{machine}' (and reads of its "
            "incidents) are not authenticated"
        )
    if not serves_inbound(load_machine(directory, machine)):
        warn(f"warning: no other machine hops to machine '{machine}'")
    server = uvicorn.Server(
        http_guard.uvicorn_config(application, host=host, port=port)
    )
    limit_arenas()  # before the worker threads start
    shown = sock.getsockname()
    where = (
        f"[{shown[0]}]:{shown[1]}"
        if sock.family == socket.AF_INET6
        else f"{shown[0]}:{shown[1]}"
    )
    warn(f"serving machine '{machine}' on http://{where}")
    with masked_std_streams():  # what steps print: their run's secrets masked
        server.run(sockets=[sock])
    return bool(server.started)


def _listen(host: str, port: int):
    """A listening TCP socket. Created with proto=IPPROTO_TCP, without which asyncio does not
    set TCP_NODELAY on accepted connections (and every answer waits ~40 ms for a delayed ACK).
    An address that cannot be resolved or bound is a one-line HopConfigError, not a traceback.
    """
    import errno
    import socket

    from sl2s.runtime.transport.http.config import HopConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
    except (socket.gaierror, UnicodeError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise HopConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as error:
        sock.close()
        hint = ""
        if error.errno == errno.EADDRINUSE:
            hint = " (another process listens there: pick another --port, or 0 for any free one)"
        elif error.errno == errno.EACCES:
            hint = " (ports below 1024 need privileges: pick a higher --port)"
        reason = error.strerror or str(error)
        raise HopConfigError(
            f"cannot listen on {host}:{port}: {reason.lower()}{hint}"
        ) from None
    return sock


def serve_main(argv: list[str] | None = None) -> None:
    """`python -c "from sl2s.runtime.transport.http.server import serve_main; serve_main()" DIR MACHINE
    --fd N`: what `sl2s up` starts per machine (lighter than the whole CLI)."""
    import argparse

    from sl2s.diagnostics import Sl2sError

    parser = argparse.ArgumentParser(prog="sl2s-serve")
    parser.add_argument("directory")
    parser.add_argument("machine")
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        started = run_server(args.directory, args.machine, fd=args.fd)
    except Sl2sError as error:
        print(str(error), file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(0 if started else 1)
