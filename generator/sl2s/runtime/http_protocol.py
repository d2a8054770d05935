"""The hop protocol over HTTP, as pure functions: envelope, signature, trace context.

No sockets, no clocks, no randomness here: callers pass `now` and keys in. The protocol is written
down for people in docs/hop-protocol.md; this module is its executable form, and both change
together.

A hop is `POST /sl2s/v1/hop/<flow>/<at>` with a JSON body (the envelope) and these headers:

    content-type: application/json
    idempotency-key: <opaque, 16..128 chars of [A-Za-z0-9._-]>   (one per hop, same on every retry)
    sl2s-timestamp: <unix time in integer milliseconds>            (new on every attempt)
    sl2s-signature: v1=<hex HMAC-SHA256 of the signing string>
    traceparent: 00-<32 hex trace id>-<16 hex span id>-01          (W3C trace context)
    baggage: sl2s.causation_id=<event id>                          (W3C baggage)

The signing string is six lines joined by "\\n", no trailing newline: `v1`, the timestamp, the
idempotency key, the upper-case method, the path, and the lower-case hex SHA-256 of the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson

VERSION = "v1"
HOP_PREFIX = "/sl2s/v1/hop/"
HEALTH_PATH = "/sl2s/v1/health"
MAX_SKEW_SECONDS = 300
DEFAULT_MAX_BODY = 1024 * 1024  # bytes
SERVER_KEEPALIVE_SECONDS = 5  # servers close idle keep-alive connections after this
CLIENT_IDLE_SECONDS = 2.0  # clients stop reusing an idle connection sooner than that

H_IDEMPOTENCY_KEY = "idempotency-key"
H_TIMESTAMP = "sl2s-timestamp"
H_SIGNATURE = "sl2s-signature"
H_TRACEPARENT = "traceparent"
H_BAGGAGE = "baggage"
H_OUTCOME = "sl2s-outcome"  # response: "returned" | "failed" | "rejected"

BAGGAGE_CAUSATION = "sl2s.causation_id"

_KEY_RE = re.compile(r"^[A-Za-z0-9._\-]{16,128}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_PLAIN = re.compile(r"[A-Za-z0-9._\-]*")  # needs no percent-encoding in baggage


class Rejection(Exception):
    """A hop the server refuses: an HTTP status, a stable machine-readable code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def body(self) -> bytes:
        return orjson.dumps(
            {"outcome": "rejected", "code": self.code, "message": self.message}
        )


# ---------------------------------------------------------------------------------------------
# paths


def hop_path(flow: str, at: str) -> str:
    """The request path of a hop into `flow` at step `at` (both normalised identifiers)."""
    if not (_IDENT_RE.match(flow) and _IDENT_RE.match(at)):
        raise ValueError(f"not identifiers: flow={flow!r} at={at!r}")
    return f"{HOP_PREFIX}{flow}/{at}"


def parse_hop_path(path: str) -> tuple[str, str]:
    """`/sl2s/v1/hop/<flow>/<at>` -> (flow, at); anything else is a 404 rejection."""
    if path.startswith(HOP_PREFIX):
        parts = path[len(HOP_PREFIX) :].split("/")
        if len(parts) == 2 and all(_IDENT_RE.match(p) for p in parts):
            return parts[0], parts[1]
    raise Rejection(404, "not_found", f"no hop endpoint at {path!r}")


# ---------------------------------------------------------------------------------------------
# envelope

# The request envelope (a JSON object): `sl2s.runtime.HopRequest.to_dict()` without the three
# members that travel as headers (`idempotency_key`, `traceparent`, `causation_id`), plus `"v": 1`.
# `fields` holds the non-secret context plus exactly the secrets the target uses; `secrets` only
# names the flow's secret fields (for masking), never their values.
HEADER_MEMBERS = ("idempotency_key", "traceparent", "causation_id")
REQUIRED = ("system", "flow", "source", "target", "at", "fields", "correlation_id")


def request_body(hop: Mapping[str, Any]) -> bytes:
    """The wire body of a hop request, from `HopRequest.to_dict()`."""
    envelope = {"v": 1}
    envelope.update((k, v) for k, v in hop.items() if k not in HEADER_MEMBERS)
    return orjson.dumps(envelope)


def encode(obj: Any) -> bytes:
    """JSON bytes as sent on the wire (UTF-8, no insignificant whitespace)."""
    return orjson.dumps(obj)


def decode_object(body: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object or raise a 400 rejection naming `what`."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Rejection(400, "bad_json", f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise Rejection(400, "bad_envelope", f"{what} is not a JSON object")
    return value


def check_request(envelope: Mapping[str, Any], flow: str, at: str) -> None:
    """Validate a decoded request envelope against the path it was posted to (400 on mismatch)."""
    if envelope.get("v") != 1:
        raise Rejection(
            400, "bad_envelope", f"unsupported envelope version {envelope.get('v')!r}"
        )
    missing = [k for k in REQUIRED if k not in envelope]
    if missing:
        raise Rejection(400, "bad_envelope", f"envelope lacks {', '.join(missing)}")
    if envelope["flow"] != flow or envelope["at"] != at:
        raise Rejection(
            400,
            "bad_envelope",
            f"envelope is for {envelope['flow']}/{envelope['at']} but was posted to {flow}/{at}",
        )
    for key in ("system", "source", "target", "correlation_id"):
        if not isinstance(envelope[key], str):
            raise Rejection(
                400, "bad_envelope", f"envelope member {key!r} is not a string"
            )
    if not isinstance(envelope["fields"], dict):
        raise Rejection(
            400, "bad_envelope", "envelope member 'fields' is not a JSON object"
        )
    for key in ("secrets", "stack"):
        if not isinstance(envelope.get(key, []), list):
            raise Rejection(
                400, "bad_envelope", f"envelope member {key!r} is not a list"
            )
    if envelope.get("resume_at") is not None and not isinstance(
        envelope["resume_at"], str
    ):
        raise Rejection(
            400, "bad_envelope", "envelope member 'resume_at' is not a string or null"
        )


# ---------------------------------------------------------------------------------------------
# signature


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signing_string(
    timestamp: str, idempotency_key: str, method: str, path: str, body: bytes
) -> bytes:
    return "\n".join(
        (VERSION, timestamp, idempotency_key, method.upper(), path, body_digest(body))
    ).encode("ascii")


def sign(
    key: bytes,
    timestamp: str,
    idempotency_key: str,
    method: str,
    path: str,
    body: bytes,
) -> str:
    """The `sl2s-signature` header value."""
    text = signing_string(timestamp, idempotency_key, method, path, body)
    return f"{VERSION}={hmac.digest(key, text, 'sha256').hex()}"


def check_idempotency_key(value: str | None) -> str:
    if not value:
        raise Rejection(
            400, "no_idempotency_key", "the hop has no idempotency-key header"
        )
    if not _KEY_RE.match(value):
        raise Rejection(
            400,
            "bad_idempotency_key",
            "idempotency-key must be 16..128 chars of [A-Za-z0-9._-]",
        )
    return value


def verify(
    keys: tuple[bytes, ...],
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> str:
    """Check a hop's signature; return its signature value (the replay-detection nonce).

    `keys`: the current key first, then any previous keys still accepted (rotation). `headers`
    must have lower-case names. Raises a 401 Rejection for a missing, malformed, stale or wrong
    signature. Time is compared before the MAC so a stale request costs no HMAC.
    """
    idempotency_key = check_idempotency_key(headers.get(H_IDEMPOTENCY_KEY))
    timestamp = headers.get(H_TIMESTAMP)
    signature = headers.get(H_SIGNATURE)
    if not timestamp or not signature:
        raise Rejection(
            401, "unsigned", "the hop is not signed (sl2s-timestamp/sl2s-signature)"
        )
    if not timestamp.isdigit() or len(timestamp) > 16:
        raise Rejection(
            401, "bad_timestamp", "sl2s-timestamp is not integer milliseconds"
        )
    skew = now - int(timestamp) / 1000.0
    if abs(skew) > max_skew:
        raise Rejection(
            401,
            "stale",
            f"sl2s-timestamp is {skew:+.0f} s from the server clock (limit ±{max_skew:.0f} s)",
        )
    for key in keys:
        expected = sign(key, timestamp, idempotency_key, method, path, body)
        if hmac.compare_digest(
            expected.encode("ascii"), signature.encode("ascii", "replace")
        ):
            return signature
    raise Rejection(401, "bad_signature", "the hop's signature does not match")


def timestamp_ms(now: float) -> str:
    return str(int(now * 1000))


# ---------------------------------------------------------------------------------------------
# W3C trace context and baggage


@dataclass(frozen=True)
class TraceParent:
    trace_id: str  # 32 lower-case hex, not all zero
    span_id: str  # 16 lower-case hex, not all zero
    flags: str = "01"

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceParent | None:
    """Parse a `traceparent` header; None when absent or invalid (W3C: then start a new trace)."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if (
        not _HEX2.match(version)
        or version == "ff"
        or (version == "00" and len(parts) != 4)
    ):
        return None
    if not (_HEX32.match(trace_id) and _HEX16.match(span_id) and _HEX2.match(flags)):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent(trace_id, span_id, flags)


def format_baggage(entries: Mapping[str, str | None]) -> str:
    """W3C baggage list; values percent-encoded; None values left out."""
    return ",".join(
        f"{name}={value if _PLAIN.fullmatch(value) else quote(value, safe='')}"
        for name, value in entries.items()
        if value is not None
    )


def parse_baggage(value: str | None) -> dict[str, str]:
    """W3C baggage -> {name: value}; properties after `;` ignored, malformed members skipped."""
    result: dict[str, str] = {}
    if not value:
        return result
    for member in value.split(","):
        head = member.split(";", 1)[0]
        if "=" not in head:
            continue
        name, raw = head.split("=", 1)
        name = name.strip()
        if name:
            result[name] = unquote(raw.strip())
    return result


# ---------------------------------------------------------------------------------------------
# building a signed request


def request_headers(
    *,
    keys: tuple[bytes, ...],
    idempotency_key: str,
    path: str,
    body: bytes,
    now: float,
    traceparent: str | None,
    causation_id: str | None,
) -> dict[str, str]:
    """All headers of one attempt of a hop. With no key the hop goes unsigned (insecure mode)."""
    headers = {
        "content-type": "application/json",
        H_IDEMPOTENCY_KEY: idempotency_key,
    }
    if keys:
        stamp = timestamp_ms(now)
        headers[H_TIMESTAMP] = stamp
        headers[H_SIGNATURE] = sign(keys[0], stamp, idempotency_key, "POST", path, body)
    if traceparent:
        headers[H_TRACEPARENT] = traceparent
    baggage = format_baggage({BAGGAGE_CAUSATION: causation_id})
    if baggage:
        headers[H_BAGGAGE] = baggage
    return headers


def parse_keys(value: str | None) -> tuple[bytes, ...]:
    """`SL2S_HOP_KEY`: one key, or `current,previous,...` during a rotation. Empty -> no key."""
    if not value or not value.strip():
        return ()
    keys = tuple(k.strip().encode("utf-8") for k in value.split(",") if k.strip())
    for key in keys:
        if len(key) < 16:
            raise ValueError(
                f"SL2S_HOP_KEY has a key of {len(key)} characters; use at least 16 random characters"
                " (for example `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
    return keys
