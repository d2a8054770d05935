"""Reading the runtime's event logs back in tests: every machine's JSON lines, and their causal chain."""

from __future__ import annotations

import json
from pathlib import Path


def written(log_dir: Path) -> list[dict]:
    """Every event of every machine's file in `log_dir` (complete once a flow has ended).

    Incident files of the flight recorder are not event logs and are left out. Lines are split on
    "\\n" only: U+2028 and U+0085 may stand unescaped inside JSON strings.
    """
    found = []
    for path in sorted(log_dir.glob("*.jsonl")):
        if path.name.startswith("incident-"):
            continue
        lines = path.read_text("utf-8").split("\n")
        found.extend(json.loads(line) for line in lines if line)
    return found


def causal_chain(evts: list[dict]) -> list[dict]:
    """Order events by following causation ids from the one without a cause; all must be on it."""
    by_cause = {e["attributes"]["sl2s.causation_id"]: e for e in evts}
    assert len(by_cause) == len(evts), "two events claim the same cause"
    chain, cause = [], None
    while cause in by_cause:
        chain.append(by_cause[cause])
        cause = chain[-1]["attributes"]["sl2s.event_id"]
    assert len(chain) == len(evts), "events do not form one causal chain"
    return chain
