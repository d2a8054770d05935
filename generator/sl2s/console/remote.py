"""Machines reached over HTTP (`sl2s console --url`): their events copied into local files that
the index reads like any other log, through the signed read endpoints every served machine has.

- Incidents (`/sl2s/v1/incidents`, sl2s.observe.incidents): each incident not copied yet is
  fetched once into `<cache>/<host>_<port>/incident-<id>.jsonl`; their events are indexed.
- Events (`/sl2s/v1/events`, sl2s.observe.event_routes, where a machine mounts them): each `<machine>.jsonl`
  is copied incrementally: the request names the offset the local copy has reached and the
  answer is the complete lines after it (at most `MAX_CHUNK` bytes per request). A machine that
  does not serve it (404) is read through its incidents only.

Requests are signed like hops with the hop key (docs/hop-protocol.md, "Signed reads"), by the
same client code as `sl2s incidents --url`.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.observe import incidents as inc
from sl2s.observe.event_routes import EVENTS_PATH
from sl2s.observe.event_routes import LOG_NAME as _NAME
from sl2s.observe.remote import remote_get


def machine_base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Sl2sError(f"{url}: not an http:// or https:// URL with a host")
    return f"{parts.scheme}://{parts.netloc}"


def cache_name(url: str) -> str:
    parts = urlsplit(url)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{parts.hostname}_{parts.port or ''}")


class Remotes:
    """The machines at `urls`, copied into `cache` (one directory per machine)."""

    def __init__(
        self,
        urls: list[str],
        cache: Path,
        keys: tuple[bytes, ...] = (),
        timeout: float = 10.0,
    ):
        self.urls = urls
        self.cache = Path(cache)
        self.keys = keys
        self.timeout = timeout
        self.errors: dict[str, str] = {}
        for url in urls:
            machine_base(url)  # fail early on a malformed URL

    def pull(self) -> list[Path]:
        """Copy what is new from every machine; the directories to index. A machine that cannot
        be reached keeps what was copied before (its error is in `errors`)."""
        out = []
        for url in self.urls:
            directory = self.cache / cache_name(url)
            directory.mkdir(parents=True, exist_ok=True)
            try:
                pull_incidents(url, directory, self.keys, self.timeout)
                pull_events(url, directory, self.keys, self.timeout)
                self.errors.pop(url, None)
            except Sl2sError as error:
                self.errors[url] = str(error)
            out.append(directory)
        return out


def pull_incidents(url: str, directory: Path, keys, timeout: float) -> int:
    have = sorted(p.name[: -len(".jsonl")] for p in directory.glob("incident-*.jsonl"))
    since = have[-1] if have else None
    summaries = inc.fetch_remote(url, since=since, keys=keys, timeout=timeout)
    copied = 0
    for summary in summaries:
        incident_id = str(summary["id"])
        if not incident_id.startswith("incident-") or "/" in incident_id:
            continue
        if not summary.get("complete"):
            break  # an open incident is fetched again when it is closed
        _, data = remote_get(
            url, "/" + urllib.parse.quote(incident_id, safe=""), keys, timeout
        )
        target = directory / f"{incident_id}.jsonl"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        copied += 1
    return copied


def pull_events(url: str, directory: Path, keys, timeout: float) -> int:
    """Copy each machine log's new complete lines; the bytes copied (0 when not served)."""
    endpoint = machine_base(url) + EVENTS_PATH
    try:
        _, data = remote_get(endpoint, "/", keys, timeout)
    except Sl2sError as error:
        if "HTTP 404" in str(error):
            return 0
        raise
    copied = 0
    for item in orjson.loads(data).get("files", []):
        name = str(item.get("name", ""))
        if not _NAME.match(name):
            continue
        local = directory / name
        offset = local.stat().st_size if local.exists() else 0
        if (
            int(item.get("size", 0)) < offset
        ):  # the machine's file was replaced: start over
            local.unlink()
            offset = 0
        while int(item.get("size", 0)) > offset:
            _, chunk = remote_get(endpoint, f"/{name}?offset={offset}", keys, timeout)
            if not chunk:
                break
            with local.open("ab") as handle:
                handle.write(chunk)
            offset += len(chunk)
            copied += len(chunk)
    return copied
