"""A machine's event logs over HTTP, read incrementally by `sl2s console --url`
(sl2s.console.remote). Mounted like the incidents: behind the hop signature, at `EVENTS_PATH`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

EVENTS_PATH = "/sl2s/v1/events"
MAX_CHUNK = 8 << 20
NEXT_OFFSET = "sl2s-next-offset"
LOG_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.jsonl$")


def routes(log_dir: str | os.PathLike):
    """Starlette routes serving a log dir's machine logs for `pull_events` (no auth of their
    own: mount them behind `sl2s.runtime.transport.http.server.SignedReads` at `/sl2s/v1/events`):

    - `GET /` -> `{"files": [{"name": "server.jsonl", "size": N}, …]}`
    - `GET /{name}?offset=N` -> the complete lines after byte N (at most MAX_CHUNK bytes, at
      least one line), `application/x-ndjson`
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    base = Path(log_dir)

    def listing():
        if not base.is_dir():
            return []
        return [
            {"name": p.name, "size": p.stat().st_size}
            for p in sorted(base.glob("*.jsonl"))
            if not p.name.startswith("incident-")
        ]

    def read(name: str, offset: int):
        path = base / name
        if (
            not LOG_NAME.match(name)
            or name.startswith("incident-")
            or not path.is_file()
        ):
            return None
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(MAX_CHUNK)
            end = data.rfind(b"\n")
            if end < 0 and len(data) == MAX_CHUNK:  # one line longer than a chunk
                rest = handle.readline()
                return data + rest if rest.endswith(b"\n") else b""
            return data[: end + 1]

    async def list_endpoint(request):
        return JSONResponse({"files": await run_in_threadpool(listing)})

    async def file_endpoint(request):
        try:
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            offset = -1
        if offset < 0:
            return JSONResponse(
                {"error": "offset must be a byte count"}, status_code=400
            )
        data = await run_in_threadpool(read, request.path_params["name"], offset)
        if data is None:
            return JSONResponse({"error": "no such log"}, status_code=404)
        return Response(
            data,
            media_type="application/x-ndjson",
            headers={NEXT_OFFSET: str(offset + len(data))},
        )

    return [
        Route("/", list_endpoint, methods=["GET"]),
        Route("/{name}", file_endpoint, methods=["GET"]),
    ]
