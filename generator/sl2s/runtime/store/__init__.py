"""The flow store: what a machine must find again after a crash, a restart or a takeover.

It keeps, per flow run (correlation id), the flow's starting context and position, each completed
step's outcome, each inbound hop and its answer (the idempotency keys), and the nonces of signed
hops already seen. The runtime commits to it *before* it acknowledges anything, so that what was
acknowledged is never lost and what was completed is never run again (see docs/durability.md).

Two backends share one schema (`schema.py`) and one implementation in SQL (`base.py`):

- `sqlite:///abs/path` or `sqlite:relative/path` — the embedded default, stdlib `sqlite3` in WAL
  mode, one file that every machine process of `sl2s up` shares (`sqlite.py`);
- `postgresql://user@host:port/db` (or `?host=/socket/dir`) — across hosts or with replicas,
  through psycopg 3, imported only when such a URL is chosen (`postgres.py`).

Which one: `SL2S_STORE`, else `[store] url = "..."` in `<services>/sl2s.toml`, else
`sqlite:///<log dir>/flows.sqlite3` (log dir = `SL2S_LOG_DIR` or `<services>/.sl2s/logs`).
`SL2S_STORE=none` turns durability off.

Nothing here holds a secret in clear: callers hand over data already masked (secret fields absent
or `***`), and `flow_started` refuses a context that still carries a value for a field it lists
as secret. Records that lost a secret say so (`FlowRecord.secrets`, `StepRecord.replayable`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from sl2s.diagnostics import Sl2sError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_STORE = "SL2S_STORE"
CONFIG_FILE = "sl2s.toml"
STORE_FILE = "flows.sqlite3"

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
    ) -> None: ...

    # hops (idempotency)
    def hop_begin(self, rec: HopRecord) -> HopRecord | None: ...
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


# ---------------------------------------------------------------------------------------------
# choosing and opening a store


def default_url(services_dir: str) -> str:
    """`sqlite:///<log dir>/flows.sqlite3`, log dir = `SL2S_LOG_DIR` or `<services>/.sl2s/logs`
    (the same directory as `sl2s.runtime.system.log_dir`)."""
    logs = os.environ.get("SL2S_LOG_DIR") or os.path.join(services_dir, ".sl2s", "logs")
    return "sqlite:///" + os.path.abspath(os.path.join(logs, STORE_FILE)).lstrip("/")


def store_setting(services_dir: str | None) -> tuple[str, str]:
    """(URL, where it came from): `SL2S_STORE`, else `[store] url` in `<services>/sl2s.toml`,
    else `default_url(services_dir)`. A relative `sqlite:` path is made absolute against the
    current directory (environment) or the services directory (sl2s.toml)."""
    env = os.environ.get(ENV_STORE, "").strip()
    if env:
        return _absolute(env, os.getcwd()), ENV_STORE
    if services_dir is None:
        raise StoreError(
            f"no store chosen: set {ENV_STORE} (sqlite:///path, postgresql://..., or none)"
        )
    path = os.path.join(services_dir, CONFIG_FILE)
    label = os.path.join(os.path.basename(os.path.abspath(services_dir)), CONFIG_FILE)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        data = {}
    except tomllib.TOMLDecodeError as error:
        raise StoreError(f"{label}: not valid TOML: {error}") from None
    store = data.get("store", {})
    if not isinstance(store, dict):
        raise StoreError(f'{label}: [store] must be a table with url = "..."')
    unknown = sorted(set(store) - {"url"})
    if unknown:
        raise StoreError(
            f"{label}: [store] has unknown setting(s): {', '.join(unknown)}"
        )
    url = store.get("url")
    if url is None:
        return default_url(services_dir), "default"
    if not isinstance(url, str) or not url.strip():
        raise StoreError(f"{label}: [store] url must be a non-empty string")
    return _absolute(url.strip(), services_dir), f"{label} [store] url"


def store_url_for(services_dir: str | None) -> str:
    """The store URL that `open_store(None, services_dir=...)` opens."""
    return store_setting(services_dir)[0]


def open_store(
    url: str | None = None,
    *,
    services_dir: str | None = None,
    hop_retention: float = HOP_RETENTION,
    flow_retention: float = FLOW_RETENTION,
) -> FlowStore | None:
    """Open (creating its schema if needed) the store at `url`, or the one configured for
    `services_dir` when `url` is None. None for `none` (durability off). Bad URLs, a missing
    psycopg or an unreachable database raise `StoreError` with a one-line message."""
    source = "store URL"
    if url is None:
        url, source = store_setting(services_dir)
    text = url.strip()
    if text.lower() == "none":
        return None
    base = services_dir if services_dir is not None else os.getcwd()
    options = {"hop_retention": hop_retention, "flow_retention": flow_retention}
    if text.startswith("sqlite:"):
        from sl2s.runtime.store.sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(text, base), **options)
    if text.startswith(("postgresql://", "postgres://")):
        from sl2s.runtime.store.postgres import PostgresStore

        return PostgresStore(text, **options)
    raise StoreError(
        f"{source}: {redact(text)!r} is not a store URL: use sqlite:///abs/path,"
        " sqlite:relative/path, postgresql://user@host:port/db, or none"
    )


def sqlite_path(url: str, base: str) -> str:
    """The file of a `sqlite:` URL; a relative path is taken against `base`."""
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):  # sqlite:///abs/path (an empty authority, then the path)
        rest = rest[2:]
        if not rest.startswith("/"):
            raise StoreError(
                f"store URL {url!r}: write sqlite:///absolute/path or sqlite:relative/path"
            )
    if not rest:
        raise StoreError(f"store URL {url!r} names no file")
    return os.path.normpath(os.path.join(base, rest))


def _absolute(url: str, base: str) -> str:
    if url.startswith("sqlite:") and not url.startswith("sqlite://"):
        return "sqlite:///" + sqlite_path(url, base).lstrip("/")
    return url


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


__all__ = [
    "AmbiguousPrefix",
    "ENDED_STATES",
    "ENV_STORE",
    "FLOW_RETENTION",
    "FLOW_STATES",
    "FlowRecord",
    "FlowStore",
    "HOP_RETENTION",
    "HopRecord",
    "StepRecord",
    "StoreError",
    "default_url",
    "open_store",
    "redact",
    "store_setting",
    "store_url_for",
]
