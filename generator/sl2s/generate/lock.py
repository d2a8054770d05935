"""sl2s.lock.json: JSON, keys sorted, 2-space indent — except that each step's entry in `steps`
is written on one line, and all of `plan_lines` on a single line.

Inserting a plan row shifts the line numbers of every later row; keeping them on one line means the
lock's diff is that one line plus one `steps` line per added step, not a line per later flow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii

import orjson

LOCK = "sl2s.lock.json"  # the lock's name, at the top of the generated tree
# the files sl2s writes in each machine's package (the lock lists their digests); the other
# modules there are the user's
GENERATED_IN_MACHINE = ("__init__.py", "_wiring.py")
TOOL = "sl2s"


def render(
    *,
    version: str,
    plan_ref: str,
    digest: str,
    steps: Mapping[str, Mapping[str, Mapping[str, str]]],
    plan_lines: Mapping[str, Mapping[str, int]],
    files: Mapping[str, str],
    flows: Mapping[str, str] | None = None,
    origins: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
) -> str:
    """The lock's text. `flows`: each flow's projection digest (sl2s.generate.flowdigest), which
    hops carry so that machines of different versions refuse each other. `origins`: where
    `sl2s rebalance` took definitions from (written only when there are any)."""
    data = {
        "tool": TOOL,
        "version": version,
        "plan": {"path": plan_ref, "digest": digest},
        "steps": {flow: _OneLine(by_id) for flow, by_id in steps.items()},
        "plan_lines": _Inline(plan_lines),
        "files": files,
    }
    if flows is not None:
        data["flows"] = dict(flows)
    if origins:
        data["origins"] = {path: _OneLine(names) for path, names in origins.items()}
    out: list[str] = []
    _emit(data, 0, out)
    return "".join(out) + "\n"


class _OneLine(dict):
    """A mapping whose values are each written on one line."""


class _Inline(dict):
    """A mapping written whole on one line."""


_scalar = json.JSONEncoder(ensure_ascii=True).encode
# json.dumps(value, sort_keys=True, ensure_ascii=True), without building an encoder per call.
_one_line = json.JSONEncoder(sort_keys=True, ensure_ascii=True).encode
_string = encode_basestring_ascii  # json's (C) encoder of one str, ensure_ascii=True


def _emit(value, depth: int, out: list[str], one_line_values: bool = False) -> None:
    """json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True), with the C encoder for
    scalars (the indenting encoder of the json module is pure Python and slow on large locks).
    """
    if one_line_values and type(value) is dict:
        # {str: str} (a step's entry): what json.dumps writes, without its per-call setup
        try:
            out.append(
                "{"
                + ", ".join(
                    [f"{_string(k)}: {_string(value[k])}" for k in sorted(value)]
                )
                + "}"
            )
            return
        except TypeError:  # not all str: json.dumps below
            pass
    if one_line_values or isinstance(value, _Inline):
        out.append(_one_line(value))
        return
    if not isinstance(value, dict) or not value:
        out.append(_scalar(value) if not isinstance(value, dict) else "{}")
        return
    inner = "\n" + "  " * (depth + 1)
    out.append("{")
    first = True
    for key in sorted(value):
        out.append(inner if first else "," + inner)
        first = False
        out.append(_scalar(key))
        out.append(": ")
        _emit(value[key], depth + 1, out, isinstance(value, _OneLine))
    out.append("\n" + "  " * depth + "}")


def read(text: str) -> dict:
    """The lock's data; {} when it is not a JSON object (then nothing in it is trusted)."""
    try:
        data = orjson.loads(text)  # the C decoder: a large plan's lock is megabytes
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        return {}
    return data if isinstance(data, dict) else {}


def read_origins(lock: Mapping) -> dict[str, dict[str, dict[str, str]]]:
    """The lock's `origins`, keeping only well-formed entries."""
    raw = lock.get("origins")
    out: dict[str, dict[str, dict[str, str]]] = {}
    if not isinstance(raw, dict):
        return out
    for path, names in raw.items():
        if not isinstance(names, dict):
            continue
        for name, entry in names.items():
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("from"), str)
                and isinstance(entry.get("above"), str)
            ):
                below = entry.get("below")
                out.setdefault(path, {})[name] = {
                    "from": entry["from"],
                    "above": entry["above"],
                    "below": (below if isinstance(below, str) else ""),
                }
    return out
