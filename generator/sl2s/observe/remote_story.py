"""The whole story of a flow run started here against served machines (`sl2s run --remote`).

Before the run, `RemoteLogs.mark()` notes how long each machine's event logs are (the signed
`/sl2s/v1/events/` endpoint every served machine mounts); after it, `events_of(cid)` reads only
what was appended since and keeps the run's own events. Machines that share a log directory with
this process (one host, `sl2s up`) serve the same lines as the local files: events are merged by
id, so nothing is told twice.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.observe import events as ev
from sl2s.observe.event_routes import EVENTS_PATH, LOG_NAME
from sl2s.observe.remote import remote_get


class RemoteLogs:
    def __init__(
        self, urls: Iterable[str], keys: tuple[bytes, ...], timeout: float = 5.0
    ) -> None:
        self.urls = sorted({url.rstrip("/") for url in urls})
        self.keys = keys
        self.timeout = timeout
        self.start: dict[tuple[str, str], int] = {}
        self.errors: dict[str, str] = {}  # url -> why its events could not be read

    def _files(self, url: str) -> dict[str, int]:
        _, data = remote_get(url + EVENTS_PATH, "/", self.keys, self.timeout)
        found = {}
        for item in orjson.loads(data).get("files", []):
            name, size = str(item.get("name", "")), item.get("size", 0)
            if LOG_NAME.match(name) and not name.startswith("incident-"):
                found[name] = int(size) if isinstance(size, int) else 0
        return found

    def mark(self) -> None:
        """Note where every machine's logs end now."""
        for url in self.urls:
            try:
                for name, size in self._files(url).items():
                    self.start[(url, name)] = size
            except Sl2sError as error:
                self.errors[url] = str(error)

    def events_of(self, correlation_id: str) -> list[dict]:
        """The events of `correlation_id` written since `mark()` on every machine."""
        needle = correlation_id.encode()
        found: list[dict] = []
        for url in self.urls:
            if url in self.errors:
                continue
            endpoint = url + EVENTS_PATH
            try:
                for name, size in self._files(url).items():
                    offset = self.start.get((url, name), 0)
                    if size < offset:  # the file was replaced meanwhile: read it whole
                        offset = 0
                    while offset < size:
                        query = urllib.parse.urlencode({"offset": offset})
                        _, chunk = remote_get(
                            endpoint, f"/{name}?{query}", self.keys, self.timeout
                        )
                        if not chunk:
                            break
                        offset += len(chunk)
                        for line in chunk.splitlines():
                            if needle in line:
                                event = orjson.loads(line)
                                if ev.correlation_id(event) == correlation_id:
                                    found.append(event)
            except (Sl2sError, orjson.JSONDecodeError) as error:
                self.errors[url] = str(error)
        return found


def merged(*groups: Iterable[dict]) -> list[dict]:
    """Events of several sources, each once (by event id)."""
    seen: dict[str, dict] = {}
    anonymous: list[dict] = []
    for group in groups:
        for event in group:
            eid = ev.event_id(event)
            if eid is None:
                anonymous.append(event)
            else:
                seen.setdefault(eid, event)
    return [*seen.values(), *anonymous]
