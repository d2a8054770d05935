"""The `http` transport: `SL2S_TRANSPORT=http` sends every hop as a signed POST (see
docs/hop-protocol.md) to the machine's address from `sl2s.runtime.transport.http.config`.

Every hop carries the flow run's deadline and this machine's digest of the flow (the signed
envelope's `deadline` and `version`; sl2s.runtime.transport.http.deadlines, sl2s.runtime.transport.http.version), and is
retried until the deadline — on the machine's next replica when it has several (`[machines]` lists
of URLs, sl2s.runtime.transport.http.client). When it passes, the HopFailed says what became of the segment the hop
asked for (`remote_state`: asked of the flow store when there is one) and how to resume the flow.

Importing this module registers the transport; `select_transport("http")` imports it by name.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from urllib.parse import urlsplit

import orjson

from sl2s.runtime.core import system
from sl2s.runtime.core.machine import load_machine
from sl2s.runtime.errors import HopFailed
from sl2s.runtime.transport import HopRequest, HopResponse, register_transport
from sl2s.runtime.transport.http import deadlines
from sl2s.runtime.transport.http import protocol as p
from sl2s.runtime.transport.http import version as flow_version
from sl2s.runtime.transport.http.client import HopClient, HopUnreachable
from sl2s.runtime.transport.http.config import HttpConfig, load_config


class HttpTransport:
    """Hops over HTTP. One instance per process (the registry makes it); thread-safe."""

    name = "http"

    def __init__(self, config: HttpConfig | None = None) -> None:
        self._fixed = config
        self._configs: dict[str, HttpConfig] = {}
        self._clients: dict[tuple[float, int | None], HopClient] = {}
        # (system, machine) -> that machine's lock's `flows`
        self._digests: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def config_for(self, system_package: str, source: str) -> HttpConfig:
        if self._fixed is not None:
            return self._fixed
        found = self._configs.get(system_package)
        if found is None:
            with self._lock:
                found = self._configs.get(system_package)
                if found is None:
                    services = os.environ.get("SL2S_SERVICES") or _system_dir(
                        system_package, source
                    )
                    found = self._configs[system_package] = load_config(services)
        return found

    def _client(self, config: HttpConfig) -> HopClient:
        key = (config.timeout, config.attempts)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.setdefault(
                    key, HopClient(timeout=config.timeout, attempts=config.attempts)
                )
        return client

    def flow_digests(self, request: HopRequest) -> dict[str, str]:
        """This machine's `{flow: digest}` (its lock's `flows`; {} for a tree without them)."""
        key = (request.system, request.source)
        found = self._digests.get(key)
        if found is None:
            found = self._digests[key] = _system_info(request).flow_digests
        return found

    def deadline(self, request: HopRequest) -> float:
        """The flow run's deadline for this hop (its first hop starts it: `deadlines.for_hop`);
        `call` then sends the same one."""
        config = self.config_for(request.system, request.source)
        return deadlines.for_hop(
            request.correlation_id,
            request.idempotency_key,
            config.deadline_for(request.flow),
            time.time(),
        )

    def call(self, request: HopRequest) -> HopResponse:
        config = self.config_for(request.system, request.source)
        where = _Where(request)  # the plan line, looked up only for an error message
        url = config.addresses(request.target)  # a URL, or a tuple of replicas' URLs
        if url is None:
            raise _failed(
                request,
                where,
                f"no address for machine '{request.target}': set SL2S_URL_{request.target.upper()}"
                f' or add `{request.target} = "http://host:port"` under [machines] in sl2s.toml',
            )
        key = request.idempotency_key
        deadline = self.deadline(request)
        version = self.flow_digests(request).get(request.flow)
        body = _body(request, deadlines.to_wire(deadline), version)
        path = p.hop_path(request.flow, request.at)

        def headers_for(now: float) -> dict[str, str]:
            return p.request_headers(
                keys=config.keys,
                idempotency_key=key,
                path=path,
                body=body,
                now=now,
                traceparent=request.traceparent,
                causation_id=request.causation_id,
            )

        try:
            response = self._client(config).post(
                target=request.target,
                base_url=url,
                path=path,
                body=body,
                idempotency_key=key,
                headers_for=headers_for,
                deadline=deadline,
            )
        except HopUnreachable as error:
            raise _unreachable(request, where, error, config, version) from None
        outcome = response.headers.get(p.H_OUTCOME)
        if response.status in (200, 500) and outcome in ("returned", "failed"):
            try:
                return HopResponse.from_dict(orjson.loads(response.body))
            except (orjson.JSONDecodeError, TypeError, AttributeError) as error:
                raise _failed(
                    request,
                    where,
                    f"machine '{request.target}' sent an unreadable answer ({error}); idempotency key {key}",
                ) from None
        raise _failed(
            request,
            where,
            _refusal(request, response.status, response.body, config, key),
        )


def _body(request: HopRequest, deadline: int, version: str | None) -> bytes:
    """The wire body (docs/hop-protocol.md): like `p.request_body(request.to_dict())`, without
    `dataclasses.asdict`'s deep copy (~80 µs here, more than the rest of the client's work).
    `deadline`: epoch milliseconds; `version`: this machine's digest of the flow (None: no lock).
    """
    return orjson.dumps(
        {
            "v": 1,
            "system": request.system,
            "flow": request.flow,
            "source": request.source,
            "target": request.target,
            "at": request.at,
            "resume_at": request.resume_at,
            "fields": request.fields,
            "secrets": request.secrets,
            "correlation_id": request.correlation_id,
            "stack": request.stack,
            "deadline": deadline,
            "version": version,
            "meta": request.meta,
            "parent": request.parent,
        }
    )


_STATE_TEXT = {
    "completed": "completed (its steps are recorded: resuming the flow replays them)",
    "pending": "is still pending (the machine took it and has not answered)",
    "not started": "had not started",
    "unknown": "may or may not have run (no flow store here that holds its record)",
}


def _unreachable(
    request: HopRequest,
    where: _Where,
    error: HopUnreachable,
    config: HttpConfig,
    version: str | None,
) -> HopFailed:
    """The HopFailed of a hop whose attempts or time ran out: which machine, which segment, what
    became of it, and how to go on."""
    store = _store(request)
    state = _remote_state(store if _shared(store, error.url) else None, error)
    refusal = _refusal_data(error.last_body) if error.last_status == 409 else {}
    if refusal.get("code") == flow_version.CODE:
        text = (
            flow_version.skew_message(
                request.flow, version, request.target, refusal.get("digest")
            )
            + f" (refused {error.attempts} time(s)"
            + (" until the flow's deadline passed" if error.deadline_passed else "")
            + f"; idempotency key {error.idempotency_key})"
        )
    else:
        text = f"{error} [address from {config.sources.get(request.target, '?')}]"
    text += (
        f"; the segment of flow '{request.flow}' at step '{request.at}' on machine "
        f"'{request.target}' {_STATE_TEXT[state]}"
    )
    if store is not None:
        text += (
            f"; the flow stays resumable: sl2s flows resume {request.correlation_id}"
        )
    failure = _failed(request, where, text)
    failure.remote_state = state
    return failure


def _refusal_data(body: bytes) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(body: bytes) -> str | None:
    return _refusal_data(body).get("code")


def _remote_state(store, error: HopUnreachable) -> str:
    """completed / pending / not started / unknown: the flow store's record of the hop when there
    is a store shared with the target (`_shared`), else what the attempts showed."""
    if error.last_status == 409 and _code(error.last_body) == "in_progress":
        return "pending"
    if store is not None:
        try:
            record = store.hop_get(error.idempotency_key)
        except Exception:  # noqa: BLE001 - the failure being reported matters more
            record = None
        else:
            if record is None:
                return "not started"
            return "completed" if record.state == "answered" else "pending"
    return "unknown" if error.delivered else "not started"


def _shared(store, url: str) -> bool:
    """Whether the target's hop records can be in `store`: PostgreSQL (every host's), or the
    default SQLite file when the target is on this host (`sl2s up`, `sl2s serve` here).
    """
    if store is None:
        return False
    if str(getattr(store, "url", "")).startswith("postgres"):
        return True
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store(request: HopRequest):
    """This side's flow store (None when durability is off or it cannot be opened)."""
    from sl2s.runtime.core import durable

    try:
        directory = os.environ.get("SL2S_SERVICES") or _system_dir(
            request.system, request.source
        )
        return durable.store_for(directory) if directory else None
    except Exception:  # noqa: BLE001 - reported when a flow uses it, not here
        return None


def _refusal(
    request: HopRequest, status: int, body: bytes, config: HttpConfig, key: str
) -> str:
    try:
        data = orjson.loads(body)
        code, message = data.get("code", "?"), data.get("message", "")
    except (orjson.JSONDecodeError, AttributeError):
        code, message = "?", body[:200].decode("utf-8", "replace")
    text = (
        f"machine '{request.target}' refused the hop: HTTP {status} {code}: {message}"
    )
    if status == 401:
        if config.keys:
            text += f" (is SL2S_HOP_KEY the same on both machines? this one's key is from {config.key_source})"
        else:
            text += " (the target requires signed hops: set SL2S_HOP_KEY here too)"
    return f"{text}; idempotency key {key}"


class _Where:
    """The plan location of the step a hop goes to, computed on first use (errors only)."""

    def __init__(self, request: HopRequest) -> None:
        self.request = request

    def __call__(self) -> str | None:
        return _plan_location(self.request)


def _failed(request: HopRequest, where_of: _Where, message: str) -> HopFailed:
    """A HopFailed whose message ends with the plan row of the step the hop goes to.

    The row is in the message (not only in `.location`, which the ERROR event records as
    `sl2s.plan`) because a failure crosses machines as `to_dict()` data: the caller of a machine
    whose own hop failed still sees where in the plan it happened."""
    where = where_of()
    plan = f" (plan: {where})" if where else ""
    failure = HopFailed(
        f"{message}{plan}",
        source=request.source,
        target=request.target,
        flow=request.flow,
        at=request.at,
    )
    failure.location = where
    failure.idempotency_key = request.idempotency_key
    return failure


def _system_dir(system_package: str, source: str) -> str | None:
    try:
        return load_machine(system_package, source).info.dir
    except Exception:  # noqa: BLE001 - no tree: environment only
        return None


def _system_info(request: HopRequest) -> system.SystemInfo:
    try:
        return load_machine(request.system, request.source).info
    except Exception:  # noqa: BLE001
        return system.info(request.system, f"{request.system}.{request.source}")


def _plan_location(request: HopRequest) -> str | None:
    return _system_info(request).plan_location(request.flow, request.at)


register_transport("http", HttpTransport)


def use_http(services_dir: str) -> HttpConfig:
    """Make this process hop over HTTP to the machines of the tree at `services_dir`
    (`sl2s run --remote`). Raises HopConfigError when no machine has an address."""
    from sl2s.runtime.transport.http.config import HopConfigError

    config = load_config(services_dir)
    if not config.urls:
        raise HopConfigError(
            f"{services_dir}: no machine addresses: start the machines with `sl2s up {services_dir}`,"
            " or list them under [machines] in sl2s.toml, or set SL2S_URL_<MACHINE>"
        )
    os.environ["SL2S_TRANSPORT"] = "http"
    os.environ["SL2S_SERVICES"] = str(services_dir)
    return config
