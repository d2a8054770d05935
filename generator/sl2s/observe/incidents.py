"""Reading incidents back: list, show, error groups; and the Starlette routes serving them.

An incident is `incident-<id>.jsonl.gz` once closed, or `incident-<id>.jsonl` while open or when
its process died mid-incident (a torn last line is skipped). When both exist (died between the
gzip's rename and the plain file's removal) the gzip is complete and wins; a `.gz.tmp` is ignored.
Incident ids start with their UTC time, so they sort chronologically and serve as a `since` cursor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.observe import events as ev
from sl2s.observe.fingerprint import ErrorGroups
from sl2s.observe.remote import (  # noqa: F401 - endpoint_url, signed_get_headers re-exported
    INCIDENTS_PATH,
    endpoint_url,
    remote_get,
    signed_get_headers,
)


def incident_paths(log_dir: str | os.PathLike) -> dict[str, Path]:
    """incident id -> the file to read, in id (= time) order."""
    directory = Path(log_dir)
    if not directory.is_dir():
        raise Sl2sError(f"{log_dir}: not a directory")
    found: dict[str, Path] = {}
    for path in directory.iterdir():
        name = path.name
        if not name.startswith("incident-"):
            continue
        if name.endswith(".jsonl.gz"):
            found[name[: -len(".jsonl.gz")]] = path
        elif name.endswith(".jsonl"):
            found.setdefault(name[: -len(".jsonl")], path)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Incident:
    id: str
    path: Path
    header: dict
    events: tuple[dict, ...]  # marked event lines: before, trigger, after
    footer: dict | None

    @property
    def complete(self) -> bool:
        return self.footer is not None

    @property
    def trigger(self) -> dict:
        return self.header.get("trigger") or {}

    @property
    def failure(self) -> dict:
        """The first trigger carrying an exception (the header's trigger may be a warning before it)."""
        if self.header.get("exception"):
            return self.trigger
        for event in self.events:
            if event.get("sl2s.trigger") and "exception.type" in ev.attrs(event):
                return event
        return self.trigger

    def summary(self) -> dict:
        failure = self.failure
        a = ev.attrs(failure)
        exception = self.header.get("exception") or {
            "type": a.get("exception.type"),
            "message": a.get("exception.message"),
        }
        return {
            "id": self.id,
            "opened_at": self.header.get("opened_at"),
            "machine": self.header.get("service.name"),
            "flow": a.get("sl2s.flow"),
            "step": a.get("sl2s.step") or failure.get("event_name"),
            "severity": failure.get("severity_text"),
            "exception": exception.get("type"),
            "message": exception.get("message") or failure.get("body"),
            "fingerprint": self.header.get("fingerprint")
            or failure.get("sl2s.fingerprint"),
            "links": (
                (self.header.get("links") or {})
                if failure is self.trigger
                else _links(failure)
            ),
            "events": len(self.events),
            "triggers": sum(1 for e in self.events if e.get("sl2s.trigger")),
            "complete": self.complete,
            "state": self.state,
            "reason": (self.footer or {}).get("reason"),
            "host": self.header.get("host.name"),
            "environment": self.header.get("deployment.environment"),
            "revision": self.header.get("git.revision"),
        }

    @property
    def state(self) -> str:
        """`closed`; `open` (no footer yet, and the process that writes it is running on this
        host); `stopped` (no footer and that process is gone: it stopped mid-incident).
        """
        if self.complete:
            return "closed"
        return "open" if writer_alive(self.header) else "stopped"


def writer_alive(header: dict) -> bool:
    """Whether the process that opened an incident still runs: same host name and its pid
    exists. An incident written on another host counts as open while its file is younger than
    its trailing window (the recorder closes it then)."""
    import socket
    import time

    pid = header.get("pid")
    host = header.get("host.name")
    if host and host != socket.gethostname():
        opened = ev.parse_time(header.get("opened_at"))
        window = float(header.get("trailing_seconds") or 5.0) + 5.0
        return opened is not None and time.time() - opened.timestamp() < window
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def _links(event: dict) -> dict:
    a = ev.attrs(event)
    links = {}
    if a.get("sl2s.plan"):
        links["plan"] = a["sl2s.plan"]
    if a.get("sl2s.raised_at"):
        links["source"] = str(a["sl2s.raised_at"])
    elif a.get("code.filepath"):
        links["source"] = f"{a['code.filepath']}:{a.get('code.lineno') or 0}"
    return links


def read_incident(path: Path) -> Incident:
    header: dict | None = None
    footer: dict | None = None
    events: list[dict] = []
    for line in ev.open_lines(path):
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn last line of a killed process
        if not isinstance(item, dict):
            continue
        phase = item.get("sl2s.incident")
        if phase == "header":
            header = item
        elif phase == "end":
            footer = item
        elif phase:
            events.append(item)
    if header is None:
        raise Sl2sError(f"{path}: not an incident file (no header line)")
    incident_id = str(header.get("id") or path.name.split(".jsonl")[0])
    return Incident(incident_id, path, header, tuple(events), footer)


def list_incidents(
    log_dir: str | os.PathLike, since: str | None = None
) -> list[Incident]:
    out = []
    for incident_id, path in incident_paths(log_dir).items():
        if since and incident_id <= since:
            continue
        try:
            out.append(read_incident(path))
        except Sl2sError:
            continue  # a file that died before its header: nothing to show
    return out


def matching_ids(paths: dict[str, Path], incident_id: str) -> list[str]:
    """The ids of `paths` that `incident_id` names: the full id, a prefix or a part of it."""
    if incident_id in paths:
        return [incident_id]
    key = (
        incident_id
        if incident_id.startswith("incident-")
        else f"incident-{incident_id}"
    )
    return [k for k in paths if k == key or k.startswith(key) or incident_id in k]


def find_incident(log_dir: str | os.PathLike, incident_id: str) -> Incident:
    paths = incident_paths(log_dir)
    matches = matching_ids(paths, incident_id)
    if len(matches) != 1:
        what = "no incident" if not matches else f"{len(matches)} incidents"
        raise Sl2sError(f"{log_dir}: {what} matching {incident_id!r}")
    return read_incident(paths[matches[0]])


def error_groups(incidents: list[Incident]) -> ErrorGroups:
    groups = ErrorGroups()
    for incident in incidents:
        for event in incident.events:
            if event.get("sl2s.trigger"):
                groups.add(event, incident.id)
    return groups


# ----------------------------------------------------------------------------- rendering (pure)


def render_list(summaries: list[dict]) -> str:
    if not summaries:
        return "no incidents\n"
    out = []
    for s in summaries:
        what = s.get("exception") or s.get("severity") or "?"
        status = {
            "open": "  (open: still recording)",
            "stopped": "  (incomplete: the process stopped mid-incident)",
        }.get(s.get("state") or ("closed" if s.get("complete") else "stopped"), "")
        plan = (s.get("links") or {}).get("plan") or ""
        out.append(
            f"{s['id']}  {s.get('machine')}  {s.get('flow')}/{s.get('step')}  {what}: "
            f"{s.get('message') or ''}  [{plan}] {s.get('events')} events, "
            f"{s.get('triggers')} trigger(s){status}"
        )
    return "\n".join(out) + "\n"


def render_show(incident: Incident) -> str:
    h = incident.header
    s = incident.summary()
    links = s.get("links") or {}
    exception = f"{s['exception']}: " if s["exception"] else ""
    out = [
        f"{incident.id}",
        f"  machine       {s['machine']} (pid {h.get('pid')}, instance {h.get('service.instance.id')})",
        f"  failure       {s['severity']} {s['flow']}/{s['step']}: {exception}{s['message'] or ''}",
        f"  fingerprint   {s['fingerprint'] or '-'}",
        f"  plan          {links.get('plan', '')}",
        f"  source        {links.get('source', '')}"
        + (f"  {links['source_url']}" if links.get("source_url") else ""),
        f"  host          {h.get('host.name') or '-'}"
        + (
            f" ({h['deployment.environment']})"
            if h.get("deployment.environment")
            else ""
        ),
        f"  versions      sl2s {h.get('sl2s.version')}, Python {h.get('python.version')}",
        f"  plan digest   {h.get('plan.digest') or 'unknown'}",
        f"  revision      {_revision_text(h)}",
        f"  closed        {(incident.footer or {}).get('reason') or _not_closed(incident.state)}",
        "",
    ]
    out.extend(render_crash(incident.failure))
    for e in incident.events:
        a = ev.attrs(e)
        mark = {"before": " ", "trigger": ">", "after": " "}.get(
            str(e.get("sl2s.incident")), " "
        )
        if e.get("sl2s.trigger"):
            mark = ">"
        out.append(
            f"{mark} {e.get('timestamp', '')}  {ev.machine(e)}  {e.get('severity_text', ''):<5}  "
            f"{a.get('sl2s.flow', '')}/{a.get('sl2s.step') or e.get('event_name', '')}: {e.get('body', '')}"
            + (f"  [{a['sl2s.plan']}]" if a.get("sl2s.plan") else "")
            + (f"  #{a['sl2s.event_id']}" if a.get("sl2s.event_id") else "")
        )
        fields = a.get("sl2s.fields")
        if isinstance(fields, dict) and fields:
            from sl2s.observe.story import fields_text

            out.append(f"      fields: {fields_text(fields.items())}")
    return "\n".join(out) + "\n"


def _revision_text(header: dict) -> str:
    from sl2s.observe.revision import UNKNOWN_HINT

    revision = header.get("git.revision")
    if not revision:
        return UNKNOWN_HINT
    origin = header.get("git.revision.from")
    return f"{revision} (from {origin})" if origin and origin != "git" else revision


def render_crash(failure: dict) -> list[str]:
    """The crash details of a failed step's event: arguments, the user's frames with their
    source line and local variables, then the traceback (all masked as the event was written).
    """
    a = ev.attrs(failure)
    out: list[str] = []
    arguments = a.get("sl2s.crash.arguments")
    if isinstance(arguments, dict) and arguments:
        out.append("  arguments")
        out.extend(f"    {name} = {value}" for name, value in arguments.items())
    frames = a.get("sl2s.crash.frames")
    if isinstance(frames, list) and frames:
        out.append("  frames (your code, innermost last)")
        for frame in frames:
            if not isinstance(frame, dict):
                continue
            out.append(
                f"    {frame.get('file')}:{frame.get('line')} in {frame.get('function')}"
            )
            if frame.get("code"):
                out.append(f"      > {frame['code']}")
            for name, value in (frame.get("locals") or {}).items():
                out.append(f"        {name} = {value}")
    stack = a.get("exception.stacktrace")
    if stack:
        out.append("  traceback")
        out.extend(f"    {line}" for line in str(stack).rstrip("\n").splitlines())
    if out:
        out.append("")
    return out


def _not_closed(state: str) -> str:
    return "no (open: still recording)" if state == "open" else "no (incomplete)"


def render_errors(groups: ErrorGroups) -> str:
    rows = groups.sorted()
    if not rows:
        return "no errors\n"
    out = []
    for g in rows:
        out.append(
            f"{g.fingerprint}  {g.count}x  {g.exception_type}  first {g.first_seen}  last {g.last_seen}  "
            f"on {', '.join(sorted(g.machines))}"
        )
        out.extend(f"    {frame}" for frame in g.frames)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- HTTP


def routes(log_dir: str | os.PathLike):
    """Starlette routes to mount (auth is the mounting app's business; a served machine mounts
    them at `/sl2s/v1/incidents` behind `sl2s.runtime.transport.http.server.SignedReads`):

    - `GET /?since=<incident id>` -> `{"incidents": [summary…], "cursor": <last id or since>}`
    - `GET /errors` -> `{"errors": [error group…]}` (by fingerprint, most frequent first)
    - `GET /follow?cursor=C&wait=S` -> the machine's new event lines (long poll, sl2s.observe.follow)
    - `GET /{incident_id}` -> the incident file's lines (`application/x-ndjson`); the id may be a
      unique part of one; 404 if it names none or several
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def listed(since=None):  # file I/O: off the event loop
        return list_incidents(log_dir, since) if Path(log_dir).is_dir() else []

    def lines_of(incident_id):
        paths = incident_paths(log_dir) if Path(log_dir).is_dir() else {}
        matches = matching_ids(paths, incident_id)
        if len(matches) != 1:
            return len(matches)
        lines = ev.open_lines(paths[matches[0]])
        try:
            return b"".join(
                line if line.endswith(b"\n") else line + b"\n" for line in lines
            )
        finally:
            lines.close()

    async def list_endpoint(request):
        since = request.query_params.get("since") or None
        found = await run_in_threadpool(listed, since)
        summaries = [i.summary() for i in found]
        cursor = summaries[-1]["id"] if summaries else since
        return JSONResponse({"incidents": summaries, "cursor": cursor})

    async def errors_endpoint(request):
        found = await run_in_threadpool(listed)
        return JSONResponse(
            {"errors": [g.as_dict() for g in error_groups(found).sorted()]}
        )

    async def show_endpoint(request):
        incident_id = request.path_params["incident_id"]
        data = await run_in_threadpool(lines_of, incident_id)
        if isinstance(data, int):
            what = "no incident" if not data else f"{data} incidents"
            return JSONResponse(
                {"error": f"{what} matching {incident_id!r}"}, status_code=404
            )
        return Response(data, media_type="application/x-ndjson")

    from sl2s.observe.follow import follow_endpoint

    return [
        Route("/", list_endpoint, methods=["GET"]),
        Route("/errors", errors_endpoint, methods=["GET"]),
        Route("/follow", follow_endpoint(log_dir), methods=["GET"]),
        Route("/{incident_id}", show_endpoint, methods=["GET"]),
    ]


def fetch_remote(
    url: str,
    incident_id: str | None = None,
    since: str | None = None,
    timeout: float = 10.0,
    keys: tuple[bytes, ...] = (),
):
    """Client side of `routes`: summaries (list) or one Incident (show) from a running machine.

    `url`: the incidents endpoint, or a machine's base URL (`endpoint_url`). With `keys` (the hop
    key, current first) every request is signed as docs/hop-protocol.md says.
    """
    import tempfile
    import urllib.parse

    if incident_id:
        suffix = "/" + urllib.parse.quote(incident_id, safe="")
    else:
        suffix = "/" + ("?" + urllib.parse.urlencode({"since": since}) if since else "")
    _, data = remote_get(url, suffix, keys, timeout)
    if incident_id is None:
        return orjson.loads(data)["incidents"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "incident.jsonl"  # the id is in the header line
        path.write_bytes(data)
        return read_incident(path)


def fetch_remote_errors(
    url: str, timeout: float = 10.0, keys: tuple[bytes, ...] = ()
) -> ErrorGroups:
    """The error groups of a running machine (`GET …/errors`), for `render_errors`."""
    from sl2s.observe.fingerprint import ErrorGroup

    _, data = remote_get(url, "/errors", keys, timeout)
    groups = ErrorGroups()
    for row in orjson.loads(data)["errors"]:
        row = dict(row)
        row["machines"] = set(row.get("machines") or ())
        groups.groups[row["fingerprint"]] = ErrorGroup(**row)
    return groups
