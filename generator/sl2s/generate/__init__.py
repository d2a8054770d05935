"""Projection (+ user modules) -> the generated file set (pure), and the writer (the shell).

See docs/generate.md. Public API: `generate()` (core.py), `scan_module()` / `append_stubs()`
(usercode.py), `plan_changes()` / `apply()` (writer.py).
"""

from sl2s.generate.core import Generation, Orphan, OutFile, generate
from sl2s.generate.usercode import FoundStep, UserCodeError, append_stubs, scan_module

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
