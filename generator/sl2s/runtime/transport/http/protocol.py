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
idempotency key, the upper-case method, the request target exactly as sent (a hop's is the path
above, with no query; a signed read's includes its `?query`), and the lower-case hex SHA-256 of
the raw body.
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
# What a server allows a request before it is authenticated (docs/hop-protocol.md, "Before
# authentication"; enforced by sl2s.runtime.transport.http.guard and the order of checks in http_server):
HEADER_TIMEOUT_SECONDS = (
    5  # a request head must be complete this long after the connection
)
#                             opens or the previous answer ends; else the connection is closed
BODY_TIMEOUT_SECONDS = (
    5  # a hop body must be complete this long after its head: else 408
)
PREAUTH_BODY_BUDGET = 8 * 1024 * 1024  # bytes of bodies read but not yet verified, all
#                                        connections together: past it 503 busy
MAX_CONNECTIONS = 1000  # open connections per server (fewer if the file limit is lower)

H_IDEMPOTENCY_KEY = "idempotency-key"
H_TIMESTAMP = "sl2s-timestamp"
H_SIGNATURE = "sl2s-signature"
H_TRACEPARENT = "traceparent"
H_BAGGAGE = "baggage"
H_OUTCOME = "sl2s-outcome"  # response: "returned" | "failed" | "rejected"

BAGGAGE_CAUSATION = "sl2s.causation_id"

_KEY_RE = re.compile(r"^[A-Za-z0-9._\-]{16,128}$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,16}$")  # ASCII digits only: '²'.isdigit() is True
_SIGNATURE_RE = re.compile(r"^v1=[0-9a-f]{64}$")
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
REQUIRED = (
    "system",
    "flow",
    "source",
    "target",
    "at",
    "resume_at",
    "fields",
    "secrets",
    "correlation_id",
    "stack",
)


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


def _bad(message: str) -> Rejection:
    return Rejection(400, "bad_envelope", message)


def _kind(value: Any) -> str:
    """The JSON kind of a decoded value, for messages that must not echo the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _identifier(envelope: Mapping[str, Any], key: str) -> str:
    value = envelope[key]
    if not isinstance(value, str):
        raise _bad(f"envelope member {key!r} is {_kind(value)}, not a string")
    if not _IDENT_RE.fullmatch(value):
        raise _bad(
            f"envelope member {key!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return value


def _strings(envelope: Mapping[str, Any], key: str, identifiers: bool) -> list[str]:
    value = envelope[key]
    if not isinstance(value, list):
        raise _bad(f"envelope member {key!r} is {_kind(value)}, not a list")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(
                f"envelope member {key!r} item {index} is {_kind(item)}, not a string"
            )
        if not item:
            raise _bad(f"envelope member {key!r} item {index} is empty")
        if identifiers and not _IDENT_RE.fullmatch(item):
            raise _bad(f"envelope member {key!r} item {index} is not an identifier")
    return value


def check_request(envelope: Mapping[str, Any], flow: str, at: str) -> None:
    """Validate a decoded request envelope completely, and against the path it was posted to.

    Every member listed in REQUIRED must be there with its type: `system`, `flow`, `source`,
    `target`, `at` identifiers; `resume_at` an identifier or null; `fields` an object; `secrets`
    a list of non-empty strings (field names); `stack` a list of identifiers (machine names)
    ending with `source` (the caller waits on top);
    `correlation_id` 1..128 chars of [A-Za-z0-9._-]; `meta` and `parent`, when there, as
    `_check_meta` and `_check_parent` say. Members not listed are ignored. Anything else
    is a 400 `bad_envelope` naming the member (never echoing its value), so nothing malformed
    reaches `Machine.handle`.
    """
    version = envelope.get("v")
    if type(version) is not int or version != 1:  # True == 1 and 1.0 == 1 in Python
        raise _bad(
            "envelope has no version member 'v'"
            if "v" not in envelope
            else "unsupported envelope version (member 'v' must be the number 1)"
        )
    missing = [k for k in REQUIRED if k not in envelope]
    if missing:
        raise _bad(f"envelope lacks {', '.join(missing)}")
    for key in ("system", "flow", "source", "target", "at"):
        _identifier(envelope, key)
    if envelope["flow"] != flow or envelope["at"] != at:
        raise _bad(
            f"envelope is for {envelope['flow']}/{envelope['at']} but was posted to {flow}/{at}"
        )
    if envelope["resume_at"] is not None:
        if not isinstance(envelope["resume_at"], str):
            raise _bad(
                f"envelope member 'resume_at' is {_kind(envelope['resume_at'])}, "
                "not a string or null"
            )
        _identifier(envelope, "resume_at")
    if not isinstance(envelope["fields"], dict):
        raise _bad(
            f"envelope member 'fields' is {_kind(envelope['fields'])}, not a JSON object"
        )
    correlation = envelope["correlation_id"]
    if not isinstance(correlation, str):
        raise _bad(
            f"envelope member 'correlation_id' is {_kind(correlation)}, not a string"
        )
    if not _CORRELATION_RE.fullmatch(correlation):
        raise _bad(
            "envelope member 'correlation_id' must be 1..128 chars of [A-Za-z0-9._-]"
        )
    _strings(envelope, "secrets", identifiers=False)  # field names (SL2S_SECRETS: any)
    stack = _strings(envelope, "stack", identifiers=True)  # machine names
    if not stack or stack[-1] != envelope["source"]:
        raise _bad(
            "envelope member 'stack' must end with the calling machine (member 'source')"
        )
    _check_meta(envelope.get("meta"))
    _check_parent(envelope.get("parent"))


META_MAX_ENTRIES, META_MAX_VALUE = 16, 1024  # as sl2s.runtime.core.metadata


def _check_meta(meta: Any) -> None:
    """`meta` (optional): null or an object of at most 16 identifier names to strings of at most
    1,024 characters (run metadata: who started the flow run, and why)."""
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise _bad(
            f"envelope member 'meta' is {_kind(meta)}, not a JSON object or null"
        )
    if len(meta) > META_MAX_ENTRIES:
        raise _bad(f"envelope member 'meta' has more than {META_MAX_ENTRIES} names")
    for name, value in meta.items():
        if not _IDENT_RE.fullmatch(name):
            raise _bad("envelope member 'meta' has a name that is not an identifier")
        if not isinstance(value, str) or len(value) > META_MAX_VALUE:
            raise _bad(
                f"envelope member 'meta' item {name!r} is not a string of at most "
                f"{META_MAX_VALUE} characters"
            )


def _check_parent(parent: Any) -> None:
    """`parent` (optional): null or {"correlation_id": <as correlation_id>, "step": <identifier>},
    the flow run whose step started this one."""
    if parent is None:
        return
    if (
        not isinstance(parent, dict)
        or set(parent) != {"correlation_id", "step"}
        or not isinstance(parent["correlation_id"], str)
        or not _CORRELATION_RE.fullmatch(parent["correlation_id"])
        or not isinstance(parent["step"], str)
        or not _IDENT_RE.fullmatch(parent["step"])
    ):
        raise _bad(
            "envelope member 'parent' must be null or an object with a 'correlation_id' and "
            "a 'step' (an identifier)"
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
    if not _KEY_RE.fullmatch(value):
        raise Rejection(
            400,
            "bad_idempotency_key",
            "idempotency-key must be 16..128 chars of [A-Za-z0-9._-]",
        )
    return value


def check_signed_headers(
    headers: Mapping[str, str], now: float, max_skew: float = MAX_SKEW_SECONDS
) -> tuple[str, str, str]:
    """Everything about a signed request that can be checked without its body.

    Returns (idempotency key, timestamp, signature). Raises 400 for a missing or malformed
    `idempotency-key`, and 401 `unsigned` (no timestamp or signature), `bad_timestamp` (not
    1..16 ASCII digits), `stale` (more than `max_skew` s from `now`) or `bad_signature` (not
    `v1=` and 64 lower-case hex). A server runs this before it reads a body, so a request that
    cannot be authentic costs neither the body's bytes nor a MAC.
    """
    idempotency_key = check_idempotency_key(headers.get(H_IDEMPOTENCY_KEY))
    timestamp = headers.get(H_TIMESTAMP)
    signature = headers.get(H_SIGNATURE)
    if not timestamp or not signature:
        raise Rejection(
            401, "unsigned", "the hop is not signed (sl2s-timestamp/sl2s-signature)"
        )
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise Rejection(
            401, "bad_timestamp", "sl2s-timestamp is not integer milliseconds"
        )
    offset = int(timestamp) / 1000.0 - now  # negative: the request is from the past
    if abs(offset) > max_skew:
        raise Rejection(
            401,
            "stale",
            f"sl2s-timestamp is {offset:+.0f} s from the server clock "
            f"({'in the past' if offset < 0 else 'in the future'}; limit ±{max_skew:.0f} s)",
        )
    if not _SIGNATURE_RE.fullmatch(signature):
        raise Rejection(
            401,
            "bad_signature",
            "sl2s-signature is not v1= and 64 lower-case hex digits",
        )
    return idempotency_key, timestamp, signature


def check_signature(
    keys: tuple[bytes, ...],
    signed: tuple[str, str, str],
    method: str,
    target: str,
    body: bytes,
) -> str:
    """The MAC check of a request whose headers passed `check_signed_headers` (`signed`); returns
    its signature (the replay-detection nonce) or raises 401 `bad_signature`."""
    idempotency_key, timestamp, signature = signed
    given = signature.encode("ascii")
    for key in keys:
        expected = sign(key, timestamp, idempotency_key, method, target, body)
        if hmac.compare_digest(expected.encode("ascii"), given):
            return signature
    raise Rejection(401, "bad_signature", "the hop's signature does not match")


def verify(
    keys: tuple[bytes, ...],
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> str:
    """Check a request's signature; return its signature value (the replay-detection nonce).

    `keys`: the current key first, then any previous keys still accepted (rotation). `headers`
    must have lower-case names; `path` is the request target as sent (path, and `?query` if
    any). Raises a 400/401 Rejection as `check_signed_headers` and `check_signature` do.
    """
    signed = check_signed_headers(headers, now, max_skew)
    return check_signature(keys, signed, method, path, body)


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
