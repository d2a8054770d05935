"""The hop contract the core runs on: `HopRequest`, `HopResponse`, the `Transport` protocol and the
table of transports by name. The core only ever calls `select_transport().call(request)`; the
transports themselves live in `sl2s.runtime.transport` (`local`, `http`) and depend on this module,
never the other way round.

A hop is a `HopRequest` (what the caller sends) answered by a `HopResponse`; both are plain data whose
`to_dict()` is JSON-serialisable and whose `from_dict()` reads it back, so a transport is: encode the
request, get it to the target machine, have that machine run `Machine.handle(request)`, encode the
response, bring it back. Failures inside the callee come back as data (`HopResponse.error`, see
`sl2s.runtime.errors.failure_from_dict`); a transport raises `HopFailed` only when it cannot deliver.

Transports are chosen by name: `SL2S_TRANSPORT` (default `local`). Plugging one in:

    from sl2s.runtime.transport import register_transport

    register_transport("grpc", GrpcTransport)   # a zero-argument factory, called once, lazily

A name that is not registered yet is looked up by importing `sl2s.runtime.transport.<name>`, which
must call `register_transport(name, ...)` when imported (the built-in `local` and `http` do); or give
a dotted path, `SL2S_TRANSPORT=package.module:factory`.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from sl2s.runtime.errors import WiringError


@dataclass
class HopRequest:
    """One hop from `source` to `target`: run the segment of `flow` that starts at step `at`."""

    system: str  # system package of both machines, e.g. "services"
    flow: str
    source: str  # calling machine
    target: str  # called machine
    at: str  # step the target starts at
    # where the caller expects control back (None: the flow is done)
    resume_at: str | None
    fields: dict  # non-secret context plus the secrets the target uses
    # names of every field known to be secret in this flow (for masking)
    secrets: list[str]
    correlation_id: str  # one per flow run
    causation_id: str | None  # id of the caller's last event
    traceparent: str  # W3C: 00-<trace id>-<caller span id>-01
    idempotency_key: str  # unique per hop; a retried delivery carries the same key
    stack: list[str] = field(default_factory=list)  # machines waiting, outermost first
    # set by the HTTP transport (transport/http/deadlines.py, transport/http/version.py):
    deadline: int | None = None  # the flow run's deadline, epoch milliseconds
    version: str | None = None  # the sender's digest of the flow (its lock's `flows`)
    # who started the flow run and why (sl2s.runtime.core.metadata), and the flow run whose step
    # started this one ({"correlation_id": ..., "step": ...}); None when there is none
    meta: dict[str, str] | None = None
    parent: dict[str, str] | None = None

    def to_dict(self) -> dict:
        return {
            "system": self.system,
            "flow": self.flow,
            "source": self.source,
            "target": self.target,
            "at": self.at,
            "resume_at": self.resume_at,
            "fields": self.fields,
            "secrets": self.secrets,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "traceparent": self.traceparent,
            "idempotency_key": self.idempotency_key,
            "stack": self.stack,
            "deadline": self.deadline,
            "version": self.version,
            "meta": self.meta,
            "parent": self.parent,
        }

    @classmethod
    def from_dict(cls, data: dict, *, fresh: bool = False) -> HopRequest:
        """The request in `data` (decoded JSON). Its containers are copied, so the request never
        shares them with `data`, unless `fresh`: `data` was just decoded and is nobody else's.
        """
        deadline, version = data.get("deadline"), data.get("version")
        meta, parent = data.get("meta"), data.get("parent")
        fields, secrets, stack = (
            data.get("fields"),
            data.get("secrets"),
            data.get("stack"),
        )
        return cls(
            system=data["system"],
            flow=data["flow"],
            source=data["source"],
            target=data["target"],
            at=data["at"],
            resume_at=data.get("resume_at"),
            fields=fields if fresh and type(fields) is dict else dict(fields or {}),
            secrets=secrets if fresh and type(secrets) is list else list(secrets or []),
            correlation_id=data["correlation_id"],
            causation_id=data.get("causation_id"),
            traceparent=data.get("traceparent", ""),
            idempotency_key=data.get("idempotency_key", ""),
            stack=stack if fresh and type(stack) is list else list(stack or []),
            deadline=deadline if type(deadline) is int and deadline > 0 else None,
            version=version if type(version) is str else None,
            meta=(
                (meta if fresh else dict(meta)) if type(meta) is dict and meta else None
            ),
            parent=(
                (parent if fresh else dict(parent))
                if type(parent) is dict and parent
                else None
            ),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> HopRequest:
        return cls.from_dict(
            orjson.loads(data), fresh=True
        )  # (decoded here: no copies)


@dataclass
class HopResponse:
    """The answer to a hop: where control resumes and the fields that travel back, or an error."""

    resume_at: str | None
    fields: dict
    # secret names the callee knows of (the caller adds them for masking)
    secrets: list[str]
    # id of the callee's last event: the caller's next event follows it
    causation_id: str | None
    # RuntimeFailure.to_dict() of a failure in the callee (or deeper)
    error: dict | None = None

    def to_dict(self) -> dict:
        # (not dataclasses.asdict: its deep copy of the fields cost more than the hop itself)
        return {
            "resume_at": self.resume_at,
            "fields": self.fields,
            "secrets": self.secrets,
            "causation_id": self.causation_id,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict, *, fresh: bool = False) -> HopResponse:
        """The response in `data` (decoded JSON); copied unless `fresh` (see HopRequest)."""
        fields, secrets = data.get("fields"), data.get("secrets")
        return cls(
            resume_at=data.get("resume_at"),
            fields=fields if fresh and type(fields) is dict else dict(fields or {}),
            secrets=secrets if fresh and type(secrets) is list else list(secrets or []),
            causation_id=data.get("causation_id"),
            error=data.get("error"),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> HopResponse:
        return cls.from_dict(
            orjson.loads(data), fresh=True
        )  # (decoded here: no copies)


class Transport(Protocol):
    """What carries hops. A transport may also have `deadline(request) -> float | None`: the
    epoch time until which the flow run may wait on other machines (starting that clock if this is
    the run's first hop), which the run records in the flow store with its first commit.
    """

    def call(self, request: HopRequest) -> HopResponse: ...


_factories: dict[str, Callable[[], Transport]] = {}
_instances: dict[str, Transport] = {}
_lock = threading.RLock()  # re-entrant: importing a transport module registers it

DEFAULT = "local"


def register_transport(name: str, factory: Callable[[], Transport]) -> None:
    """Make `SL2S_TRANSPORT=name` use `factory()` (called once, on first use)."""
    with _lock:
        _factories[name] = factory
        _instances.pop(name, None)


BUILT_IN = ("http", "local")  # modules of sl2s.runtime.transport, imported on first use


def transports() -> tuple[str, ...]:
    return tuple(sorted(set(_factories).union(BUILT_IN)))


def select_transport(name: str | None = None) -> Transport:
    """The transport named `name`, else `SL2S_TRANSPORT`, else `local` (one instance per name)."""
    if name is None:
        name = os.environ.get("SL2S_TRANSPORT") or DEFAULT
    found = _instances.get(name)
    if found is not None:
        return found
    with _lock:
        found = _instances.get(name)
        if found is not None:
            return found
        factory = _factories.get(name) or _import_factory(name)
        found = _instances[name] = factory()
        return found


def _import_factory(name: str) -> Callable[[], Transport]:
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise WiringError(
                f"SL2S_TRANSPORT={name}: cannot load {name} ({error})"
            ) from None
    module_name = f"sl2s.runtime.transport.{name}"
    try:
        importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
    factory = _factories.get(name)
    if factory is None:
        known = ", ".join(transports())
        raise WiringError(
            f"unknown transport '{name}' (SL2S_TRANSPORT); known: {known}"
        )
    return factory
