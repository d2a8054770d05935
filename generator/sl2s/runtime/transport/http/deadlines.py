"""Flow deadlines: how long a flow run may wait on other machines, and the retry schedule within it.

A flow run gets one deadline, an absolute time: the flow's setting (`[flows.<name>] deadline` in
sl2s.toml, `SL2S_DEADLINE`, default 60 s; sl2s.runtime.transport.http.config) counted from the run's first
hop. Every hop of the run carries it (the signed envelope's `deadline`, epoch milliseconds), and a
machine running an inbound hop hands it on to its own hops, a little earlier (`NESTED_MARGIN`) so
that a failure deep in the stack reaches the entry before the entry's own wait ends: the entry then
reports the deepest machine that did not answer, not only its direct callee.

Until the deadline a hop is retried (sl2s.runtime.transport.http.client): each attempt waits at most
`attempt_timeout` (the hop timeout, default 10 s, cut to what is left), which is what detects a hung
machine; between attempts `backoff` sleeps with full jitter, never past the deadline.

The deadline lives in thread-local state, not in the Run: a flow run's hops all leave from the
thread that runs it (the entry's caller, or the server worker running an inbound hop), one at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# seconds a flow run may wait on other machines, from its first hop
DEFAULT_DEADLINE = 60.0
# a machine's own hops give up this much before its caller's deadline
NESTED_MARGIN = 1.0
# the last attempt starts this long before the deadline (see `backoff`)
LAST_LOOK = 0.25
MIN_ATTEMPT = 0.05  # below this much time left, no attempt is started

_local = threading.local()


def run_key(idempotency_key: str) -> str:
    """The flow run a hop belongs to: its idempotency key without the step (`<cid>.<attempt>.<at>`
    -> `<cid>.<attempt>`; a key of another shape stands for itself)."""
    head, dot, _ = idempotency_key.rpartition(".")
    return head if dot else idempotency_key


def for_hop(correlation_id: str, key: str, seconds: float, now: float) -> float:
    """The deadline (epoch seconds) of a hop leaving this thread: the inbound hop's when this thread
    is running one of the same flow run, else the run's own, started now if this is its first hop.
    """
    inbound = getattr(_local, "inbound", None)
    if inbound is not None and inbound[0] == correlation_id:
        return inbound[1]
    run = run_key(key)
    current = getattr(_local, "run", None)
    if current is not None and current[0] == run:
        return current[1]
    deadline = now + seconds
    _local.run = (run, deadline)
    return deadline


def serving(handler: Callable) -> Callable:
    """`handler(request)` running under the request's deadline (what a hop server calls)."""

    def handle(request):
        deadline = request.deadline  # epoch milliseconds (HopRequest)
        if deadline is None:
            return handler(request)
        previous = getattr(_local, "inbound", None)
        _local.inbound = (request.correlation_id, deadline / 1000.0 - NESTED_MARGIN)
        try:
            return handler(request)
        finally:
            _local.inbound = previous

    handle.__wrapped__ = handler  # type: ignore[attr-defined]  # as functools.wraps does
    return handle


def attempt_timeout(per_attempt: float, remaining: float) -> float:
    """How long one attempt may take: the hop timeout, cut to the time left before the deadline."""
    return max(0.0, min(per_attempt, remaining))


def backoff(
    attempt: int,
    remaining: float,
    *,
    base: float,
    cap: float,
    jitter: float,
    retry_after: float = 0.0,
) -> float:
    """The pause after failed attempt number `attempt` (1-based): exponential with full jitter
    (`jitter` in [0, 1)), at least the server's `retry-after`, never past the deadline.

    A pause that would run into the last `LAST_LOOK` seconds is cut so that one more attempt
    starts then: a callee whose own hop failed at its earlier deadline (`NESTED_MARGIN`) has its
    answer stored by that time, and this last look brings it back instead of a bare timeout.
    Within the last look, the pause runs to the deadline (no second look)."""
    delay = max(retry_after, jitter * min(cap, base * 2 ** (attempt - 1)))
    if remaining > LAST_LOOK:
        return max(0.0, min(delay, remaining - LAST_LOOK))
    return max(0.0, remaining)


def to_wire(deadline: float) -> int:
    """A deadline as the envelope carries it: integer epoch milliseconds."""
    return int(deadline * 1000)
