"""Following a machine's events live: the signed long-poll endpoint and its client.

`GET /sl2s/v1/incidents/follow?cursor=C&wait=S` (beside the incidents, behind the same signature
check) answers as soon as the machine's event files (`<log dir>/*.jsonl`, incident files left
out) have complete new lines, or after `wait` seconds (at most 25) with none:

    {"lines": ["<event JSON>", …], "cursor": "<opaque>", "where": {"host", "revision",
     "environment", "machine"}}

Pass `cursor` back to get what follows. Without one the answer starts at the beginning of the
files (`from=end`: at their end). At most `MAX_BYTES` per answer (the rest follows at once).
The cursor is the files' names and offsets, base64 JSON; a name that is not an event file of the
log dir is ignored, so it cannot read anything else. A truncated file is read again from 0.
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import orjson

MAX_BYTES = 4 * 1024 * 1024
MAX_WAIT = 25.0


def event_file_names(log_dir: str | os.PathLike) -> list[str]:
    directory = Path(log_dir)
    if not directory.is_dir():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.endswith(".jsonl")
        and not p.name.startswith("incident-")
        and p.is_file()
    )


def encode_cursor(offsets: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(offsets)).decode()


def decode_cursor(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v >= 0}


def read_new(
    log_dir: str | os.PathLike, offsets: dict[str, int], limit: int = MAX_BYTES
) -> tuple[list[str], dict[str, int]]:
    """Complete new lines of the log dir's event files after `offsets`; the new offsets."""
    out: list[str] = []
    budget = limit
    new = dict(offsets)
    for name in event_file_names(log_dir):
        path = Path(log_dir) / name
        start = offsets.get(name, 0)
        try:
            size = path.stat().st_size
            if size < start:
                start = 0  # truncated or replaced
            if size == start or budget <= 0:
                new[name] = start
                continue
            with path.open("rb") as handle:
                handle.seek(start)
                data = handle.read(min(size - start, budget))
        except OSError:
            continue
        end = data.rfind(b"\n")
        if end < 0:
            new[name] = start
            continue
        chunk = data[: end + 1]
        budget -= len(chunk)
        new[name] = start + len(chunk)
        out.extend(
            line.decode("utf-8", errors="replace")
            for line in chunk.splitlines()
            if line.strip()
        )
    return out, new


def where_served() -> dict:
    """Host, revision and environment of this process (a served machine)."""
    from sl2s.observe.revision import revision_of

    services = os.environ.get("SL2S_SERVICES")
    return {
        "host": socket.gethostname(),
        "revision": revision_of(services)[0],
        "environment": os.environ.get("SL2S_ENVIRONMENT") or None,
        "machine": os.environ.get("SL2S_MACHINE") or None,
    }


def follow_endpoint(log_dir: str | os.PathLike):
    """The Starlette endpoint (mounted by `sl2s.observe.incidents.routes`)."""
    import asyncio

    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    async def endpoint(request):
        params = request.query_params
        try:
            wait = min(max(float(params.get("wait", "20")), 0.0), MAX_WAIT)
        except ValueError:
            return JSONResponse(
                {"error": "wait: not a number of seconds"}, status_code=400
            )
        offsets = decode_cursor(params.get("cursor"))
        if offsets is None:
            offsets = {}
            if params.get("from") == "end":
                names = await run_in_threadpool(event_file_names, log_dir)
                offsets = {
                    n: (Path(log_dir) / n).stat().st_size
                    for n in names
                    if (Path(log_dir) / n).exists()
                }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            lines, offsets = await run_in_threadpool(read_new, log_dir, offsets)
            if lines or loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        where = await run_in_threadpool(where_served)
        return JSONResponse(
            {"lines": lines, "cursor": encode_cursor(offsets), "where": where}
        )

    return endpoint


def poll_remote(
    url: str,
    cursor: str | None,
    keys: tuple[bytes, ...],
    wait: float = 20.0,
    from_end: bool = False,
) -> dict:
    """One long poll of a machine (`url`: its base URL or incidents endpoint)."""
    import urllib.parse

    from sl2s.observe.remote import remote_get

    query = {"wait": f"{wait:g}"}
    if cursor:
        query["cursor"] = cursor
    elif from_end:
        query["from"] = "end"
    _, data = remote_get(
        url, "/follow?" + urllib.parse.urlencode(query), keys, wait + 15
    )
    answer = orjson.loads(data)
    if not isinstance(answer, dict):
        raise ValueError("not a follow answer")
    return answer
