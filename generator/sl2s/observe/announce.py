"""Announcements of `sl2s watch`: what they say, and where they go.

An `Announcement` is one of

- `new error` — an error group seen for the first time;
- `reactivated error` — a resolved group that occurred again (sl2s.observe.errors);
- `new pattern` — a log line (or event) of a kind never seen before (sl2s.observe.patterns);
- `stopped early` — a flow run that stopped before its flow's last step, in a way not seen before;

with the lines before it, the run's correlation id (a link when `SL2S_RUN_URL` or `[links] run`
gives a template with `{correlation_id}`, else to the console's run page when its address is set), and for errors the user's line, the revision and the
suspected deploy. `text()` renders it for a terminal; `slack_body()` as a JSON body accepted by
Slack's incoming webhooks (`text`, plus `sl2s` with the structured fields for other receivers).

Sinks: the terminal, a webhook (POST, body signed with HMAC-SHA256: headers `X-Sl2s-Timestamp`
and `X-Sl2s-Signature: v1=<hex of HMAC(secret, "<timestamp>." + body)>`), a command (the JSON on
its standard input). `Gate` deduplicates by key and rate-limits (a token bucket per watcher); what
it holds back is counted and said in the next announcement that passes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

KINDS = ("new error", "reactivated error", "new pattern", "stopped early")
SIGNATURE_HEADER = "X-Sl2s-Signature"
TIMESTAMP_HEADER = "X-Sl2s-Timestamp"


@dataclass
class Announcement:
    kind: str
    key: str  # what makes two announcements the same (dedup)
    title: str
    where: str = ""  # machine, file:line
    before: list[str] = field(default_factory=list)
    correlation_id: str | None = None
    link: str | None = None
    details: dict = field(
        default_factory=dict
    )  # user line, revision, suspected deploy, count
    suppressed: int = 0  # announcements held back by the rate limit before this one

    def text(self) -> str:
        lines = [
            f"[{self.kind}] {self.title}" + (f"  ({self.where})" if self.where else "")
        ]
        for name in (
            "line",
            "source",
            "revision",
            "suspected",
            "count",
            "host",
            "first",
        ):
            if self.details.get(name):
                lines.append(f"    {name + ':':<11}{self.details[name]}")
        if self.correlation_id:
            lines.append(
                f"    {'run:':<11}correlation id {self.correlation_id}"
                + (f"  {self.link}" if self.link else "")
            )
        for line in self.before:
            lines.append(f"    before:    {line}")
        if self.suppressed:
            lines.append(
                f"    ({self.suppressed} more announcement(s) held back by the rate limit)"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "where": self.where,
            "before": self.before,
            "correlation_id": self.correlation_id,
            "link": self.link,
            "details": self.details,
            "suppressed": self.suppressed,
        }

    def slack_body(self) -> bytes:
        return orjson.dumps({"text": self.text(), "sl2s": self.as_dict()})


class Gate:
    """Deduplicate (a key passes once) and rate-limit (`rate` per minute, bursts of `burst`)."""

    def __init__(
        self,
        rate_per_minute: float = 30.0,
        burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = burst
        self.tokens = float(burst)
        self.clock = clock
        self.last = clock()
        self.seen: set[str] = set()
        self.held = 0

    def admit(self, announcement: Announcement) -> bool:
        if announcement.key in self.seen:
            return False
        self.seen.add(announcement.key)
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            self.held += 1
            return False
        self.tokens -= 1.0
        announcement.suppressed, self.held = self.held, 0
        return True


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return (
        "v1="
        + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver checks (constant-time)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_request(
    url: str, body: bytes, secret: bytes | None, now: float
) -> tuple[str, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if secret:
        stamp = str(int(now))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign(secret, stamp, body)
    return url, headers


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> int:
    """POST once; the HTTP status (an OSError when unreachable)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    kind = (
        http.client.HTTPSConnection
        if parts.scheme == "https"
        else http.client.HTTPConnection
    )
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
