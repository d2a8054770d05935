"""sl2s.lock.json: JSON, keys sorted, 2-space indent — except `plan_lines`, one line per flow.

Inserting a plan row then changes one `plan_lines` line per later flow, not one line per step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

TOOL = "sl2s"


def render(
    *,
    version: str,
    plan_ref: str,
    digest: str,
    steps: Mapping[str, Mapping[str, Mapping[str, str]]],
    plan_lines: Mapping[str, Mapping[str, int]],
    files: Mapping[str, str],
) -> str:
    marks = {flow: f"\x00plan_lines:{flow}" for flow in plan_lines}
    data = {
        "tool": TOOL,
        "version": version,
        "plan": {"path": plan_ref, "digest": digest},
        "steps": steps,
        "plan_lines": marks,
        "files": files,
    }
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True)
    for flow, mark in marks.items():
        one_line = json.dumps(plan_lines[flow], sort_keys=True, ensure_ascii=True)
        text = text.replace(json.dumps(mark, ensure_ascii=True), one_line, 1)
    return text + "\n"


def read(text: str) -> dict:
    """The lock's data; {} when it is not a JSON object (then nothing in it is trusted)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
