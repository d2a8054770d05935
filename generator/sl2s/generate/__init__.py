"""Projection (+ user modules) -> the generated file set (pure), and the writer (the shell).

See docs/generate.md. Public API: `generate()` (core.py), `scan_module()` / `append_stubs()`
(usercode.py), `plan_changes()` / `apply()` (writer.py).

The names below are imported when first used, not with the package: a no-op `sl2s generate`
(nothing changed since the last run) imports neither libcst nor black.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sl2s.generate.core import Generation, Orphan, OutFile, generate
    from sl2s.generate.usercode import (
        FoundStep,
        UserCodeError,
        append_stubs,
        scan_module,
    )

_HOME = {
    "FoundStep": "usercode",
    "Generation": "core",
    "Orphan": "core",
    "OutFile": "core",
    "UserCodeError": "usercode",
    "append_stubs": "usercode",
    "generate": "core",
    "scan_module": "usercode",
}

__all__ = [
    "FoundStep",
    "Generation",
    "Orphan",
    "OutFile",
    "UserCodeError",
    "append_stubs",
    "generate",
    "scan_module",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'sl2s.generate' has no attribute {name!r}")
    return getattr(import_module(f"sl2s.generate.{home}"), name)
