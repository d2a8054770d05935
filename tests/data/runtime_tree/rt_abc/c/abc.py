"""Steps of flow 'abc' that run on machine 'c'."""

import logging

from sl2s.runtime import UNSET, step

log = logging.getLogger(__name__)


@step("abc", "C3 works on :x", id="c3")
def c3(x, trail, key, mode, limit=3):
    # `key` is a secret that is not routed to c: it arrives as UNSET; `limit` keeps its default
    log.warning("c3 got %s (key %s, limit %d)", x, "unset" if key is UNSET else "set", limit)
    if mode == "raise":
        raise RuntimeError(f"c3 cannot handle {x}")
    return {"trail": trail + ["c3"]}
