"""The `http` transport: `SL2S_TRANSPORT=http` sends every hop as a signed POST (see
docs/hop-protocol.md) to the machine's address from `sl2s.runtime.http_config`.

Importing this module registers the transport; `select_transport("http")` imports it by name.
"""

from __future__ import annotations

import os
import threading

import orjson

from sl2s.runtime import http_protocol as p
from sl2s.runtime import registry, system
from sl2s.runtime.errors import HopFailed
from sl2s.runtime.http_client import HopClient, HopUnreachable
from sl2s.runtime.http_config import HttpConfig, load_config
from sl2s.runtime.transport import HopRequest, HopResponse, register_transport


class HttpTransport:
    """Hops over HTTP. One instance per process (the registry makes it); thread-safe."""

    name = "http"

    def __init__(self, config: HttpConfig | None = None) -> None:
        self._fixed = config
        self._configs: dict[str, HttpConfig] = {}
        self._clients: dict[tuple[float, int], HopClient] = {}
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

    def call(self, request: HopRequest) -> HopResponse:
        config = self.config_for(request.system, request.source)
        where = _Where(request)  # the plan line, looked up only for an error message
        url = config.url(request.target)
        if url is None:
            raise _failed(
                request,
                where,
                f"no address for machine '{request.target}': set SL2S_URL_{request.target.upper()}"
                f' or add `{request.target} = "http://host:port"` under [machines] in sl2s.toml',
            )
        body = _body(request)
        path = p.hop_path(request.flow, request.at)
        key = request.idempotency_key

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
            )
        except HopUnreachable as error:
            raise _failed(
                request,
                where,
                f"{error} [address from {config.sources.get(request.target, '?')}]",
            ) from None
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


def _body(request: HopRequest) -> bytes:
    """The wire body (docs/hop-protocol.md): like `p.request_body(request.to_dict())`, without
    `dataclasses.asdict`'s deep copy (~80 µs here, more than the rest of the client's work).
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
        }
    )


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
        return registry.machine(system_package, source).info.dir
    except Exception:  # noqa: BLE001 - no tree: environment only
        return None


def _plan_location(request: HopRequest) -> str | None:
    try:
        return registry.machine(request.system, request.source).info.plan_location(
            request.flow, request.at
        )
    except Exception:  # noqa: BLE001
        return system.info(
            request.system, f"{request.system}.{request.source}"
        ).plan_location(request.flow, request.at)


register_transport("http", HttpTransport)


def use_http(services_dir: str) -> HttpConfig:
    """Make this process hop over HTTP to the machines of the tree at `services_dir`
    (`sl2s run --remote`). Raises HopConfigError when no machine has an address."""
    from sl2s.runtime.http_config import HopConfigError

    config = load_config(services_dir)
    if not config.urls:
        raise HopConfigError(
            f"{services_dir}: no machine addresses: start the machines with `sl2s up {services_dir}`,"
            " or list them under [machines] in sl2s.toml, or set SL2S_URL_<MACHINE>"
        )
    os.environ["SL2S_TRANSPORT"] = "http"
    os.environ["SL2S_SERVICES"] = str(services_dir)
    return config
