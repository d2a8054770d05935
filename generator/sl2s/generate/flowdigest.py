"""The version of one flow's projection: a short digest that every hop of the flow carries.

Two machines may run a flow together only if they were generated from the same projection of it:
the same steps in the same order on the same machines, the same hops with the same fields and
secrets. `sl2s generate` writes each flow's digest in sl2s.lock.json (`flows`); the hop client
sends its own, and a hop server whose digest for that flow differs refuses the hop (409
`version_skew`, docs/hop-protocol.md) instead of running a segment from another version.

What is left out on purpose: the log text of a step (its template) and the plan's line numbers.
Rewording a log line changes neither who runs what nor what travels, so it needs no coordinated
rollout; a new `:field` in a template does change what travels, and shows in the hops' fields.
"""

from __future__ import annotations

import hashlib

import orjson

from sl2s.projection import FlowProjection, Projection

FORMAT = "sl2s-flow-v1"  # bump when the digested structure changes
LENGTH = (
    16  # hex characters kept: 64 bits name a version among a handful, and read well
)


def flow_digest(flow: FlowProjection) -> str:
    """The digest of `flow`'s projection: a pure function of its steps (id and machine, in order)
    and its hops (kind, source, target, after, at, resume_at, fields, secrets, in order).
    """
    steps = [[s.id, s.machine] for segment in flow.segments for s in segment.steps]
    hops = [
        [
            h.kind,
            h.source,
            h.target,
            h.after,
            h.at,
            h.resume_at,
            list(h.fields),
            list(h.secrets),
        ]
        for h in flow.hops
    ]
    text = orjson.dumps([FORMAT, flow.flow, steps, hops])
    return hashlib.sha256(text).hexdigest()[:LENGTH]


def flow_digests(projection: Projection) -> dict[str, str]:
    """`{flow: digest}` for every flow of a projection (what the lock's `flows` holds)."""
    return {f.flow: flow_digest(f) for f in projection.flows}
