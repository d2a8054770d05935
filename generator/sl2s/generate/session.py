"""What one `sl2s generate` run reads from the output tree, and its cache.

The cache (`<out>/.sl2s/cache/generate.json`, git-ignored by a `.gitignore` sl2s puts in `.sl2s/`)
remembers the steps found in each user module by content hash (libcst is slow: ~0.35 ms a line)
and the shapes black has already passed (black is slower still). It only saves work: deleting it
changes no output. It is keyed by the sl2s and black versions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import black

from sl2s import __version__
from sl2s.generate.blackcheck import BlackCheck
from sl2s.generate.usercode import FoundStep, scan_module
from sl2s.generate.writer import read_user_modules, write_atomic

CACHE = Path(".sl2s") / "cache" / "generate.json"
_KEY = f"sl2s {__version__}, black {black.__version__}"


class Session:
    def __init__(self, out: Path) -> None:
        self.out = out
        self._scans: dict[str, list[list]] = {}
        known: list[str] = []
        try:
            data = json.loads((out / CACHE).read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("key") == _KEY:
                self._scans = dict(data.get("scans", {}))
                known = list(data.get("black", []))
        except (OSError, ValueError):
            pass
        self._loaded_scans = len(self._scans)
        self._used: dict[str, list[list]] = {}
        self.black = BlackCheck(known)
        self._loaded_black = len(self.black.known)

    def user_modules(self) -> dict[str, str]:
        return read_user_modules(self.out)

    def scan(self, path: str, source: str) -> list[FoundStep]:
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        rows = self._scans.get(digest)
        if rows is None:
            found = scan_module(source)  # UserCodeError propagates to the core
            rows = [
                [f.flow, f.id, f.template, f.function, list(f.params), f.line]
                for f in found
            ]
        self._used[digest] = rows
        return [FoundStep(r[0], r[1], r[2], r[3], tuple(r[4]), r[5]) for r in rows]

    def save(self) -> None:
        """Keep the scans of the modules seen in this run (plus appended ones next run)."""
        if (
            set(self._used) == set(self._scans)
            and len(self.black.known) == self._loaded_black
        ):
            return
        data = {"key": _KEY, "scans": self._used, "black": sorted(self.black.known)}
        cache_dir = self.out / CACHE.parent
        cache_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.out / ".sl2s" / ".gitignore"
        if not ignore.exists():
            write_atomic(
                ignore, b"# Created by sl2s: caches and logs, never committed.\n*\n"
            )
        write_atomic(self.out / CACHE, json.dumps(data, sort_keys=True).encode("utf-8"))
