"""Reading a served machine's signed observation endpoints (incidents, error groups, the live
follow): the URL under a machine's base URL, the signed GET headers, one GET that turns every
failure into a one-line `Sl2sError` saying what to do."""

from __future__ import annotations

import orjson

from sl2s.diagnostics import Sl2sError

INCIDENTS_PATH = "/sl2s/v1/incidents"  # where every served machine mounts the routes


def endpoint_url(url: str) -> str:
    """A machine's incidents endpoint: `url` itself when it has a path, else
    `url` + `/sl2s/v1/incidents` (so `--url http://host:port` is enough)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Sl2sError(f"{url}: not an http:// or https:// URL with a host")
    base = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return base + INCIDENTS_PATH if parts.path in ("", "/") else base


def signed_get_headers(keys: tuple[bytes, ...], target: str, now: float) -> dict:
    """Headers of a read signed like a hop (docs/hop-protocol.md, "Signed reads"): empty body,
    a fresh random nonce as idempotency key, method GET, `target` = path and query as sent.
    """
    import secrets

    from sl2s.runtime.transport.http import protocol as p

    if not keys:
        return {}
    nonce = secrets.token_hex(16)
    stamp = p.timestamp_ms(now)
    return {
        p.H_IDEMPOTENCY_KEY: nonce,
        p.H_TIMESTAMP: stamp,
        p.H_SIGNATURE: p.sign(keys[0], stamp, nonce, "GET", target, b""),
    }


def remote_get(
    url: str, suffix: str, keys: tuple[bytes, ...], timeout: float
) -> tuple[str, bytes]:
    """GET endpoint_url(url) + suffix, signed when there are keys; (shown URL, body) on 200,
    else an Sl2sError that says what to do."""
    import http.client
    import time
    from urllib.parse import urlsplit

    base = endpoint_url(url)
    shown = base + suffix
    parts = urlsplit(shown)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    kind = (
        http.client.HTTPSConnection
        if parts.scheme == "https"
        else http.client.HTTPConnection
    )
    try:
        conn = kind(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.request(
                "GET", target, headers=signed_get_headers(keys, target, time.time())
            )
            response = conn.getresponse()
            status, data = response.status, response.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as error:
        raise Sl2sError(
            f"{shown}: cannot reach the machine: {error or type(error).__name__}"
        ) from None
    if status == 200:
        return shown, data
    try:
        detail = orjson.loads(data)
    except orjson.JSONDecodeError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    message = detail.get("message") or detail.get("error") or ""
    if status == 401:
        hint = (
            "is SL2S_HOP_KEY the key the machine was started with?"
            if keys
            else "the machine requires signed requests: set SL2S_HOP_KEY (or --dir DIR of "
            "`sl2s up`, whose DIR/.sl2s/hop.key is used)"
        )
        raise Sl2sError(
            f"{shown}: refused (401 {detail.get('code', 'unauthorized')}): {message}; {hint}"
        )
    raise Sl2sError(f"{shown}: HTTP {status}" + (f": {message}" if message else ""))
