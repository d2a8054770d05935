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
import sys
from typing import Any

from sl2s.runtime.store.records import (
    ENDED_STATES,
    FLOW_RETENTION,
    FLOW_STATES,
    HOP_RETENTION,
    MASK,
    AmbiguousPrefix,
    FlowRecord,
    FlowStore,
    HopRecord,
    StepRecord,
    StoreError,
    check_masked,
    redact,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENV_STORE = "SL2S_STORE"
CONFIG_FILE = "sl2s.toml"
STORE_FILE = "flows.sqlite3"


# ---------------------------------------------------------------------------------------------
# choosing and opening a store


def default_url(services_dir: str) -> str:
    """`sqlite:///<log dir>/flows.sqlite3`, log dir = `SL2S_LOG_DIR` or `<services>/.sl2s/logs`
    (the same directory as `sl2s.runtime.core.system.log_dir`)."""
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
    options: dict[str, Any] = {
        "hop_retention": hop_retention,
        "flow_retention": flow_retention,
    }
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


__all__ = [
    "AmbiguousPrefix",
    "ENDED_STATES",
    "FLOW_RETENTION",
    "FLOW_STATES",
    "FlowRecord",
    "FlowStore",
    "HOP_RETENTION",
    "HopRecord",
    "MASK",
    "StepRecord",
    "StoreError",
    "check_masked",
    "default_url",
    "open_store",
    "redact",
    "sqlite_path",
    "store_setting",
    "store_url_for",
]
