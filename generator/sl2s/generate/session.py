"""What one `sl2s generate` run reads from the output tree, and its cache.

The cache (`<out>/.sl2s/cache/generate.json`, git-ignored by a `.gitignore` sl2s puts in `.sl2s/`)
only saves work — deleting it changes no output. It holds, keyed by the sl2s and black versions:

- the steps found in each user module, by content hash (libcst parsing is slow);
- the chunk shapes black and ast have already passed (see blackcheck.py);
- the rendered, checked wiring chunks, keyed by their template inputs (rendercache.py), one file
  per machine under `render/`: after a plan edit only the chunks of the changed activations are
  rendered and checked again;
- the last run's inputs digest (plan bytes, plan reference, user modules, the code and templates
  of sl2s that shape the output) and the digest of every file it left, plus its orphan messages.
  When the inputs and every file are still the same, there is nothing to do: the plan is not even
  parsed (a no-op on a 10,000-row plan takes well under half a second).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

import sl2s
from sl2s import __version__
from sl2s.generate.writer import read_user_modules, write_atomic

if TYPE_CHECKING:
    from sl2s.generate.blackcheck import BlackCheck
    from sl2s.generate.usercode import FoundStep

CACHE = Path(".sl2s") / "cache" / "generate.json"
RENDER = Path(".sl2s") / "cache" / "render"  # <machine>.json: rendered wiring chunks
# Modules whose code shapes generated output (with the templates).
_OUTPUT_CODE = (
    "model",
    "names",
    "template",
    "plan",
    "projection",
    "show",
    "diagnostics",
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _black_version() -> str:
    from importlib.metadata import version

    return version("black")


def code_digest() -> str:
    """Digest of the sl2s code and templates that generated output depends on."""
    digest = hashlib.sha256(f"sl2s {__version__}, black {_black_version()}".encode())
    package = Path(sl2s.__file__).parent
    paths = [package / f"{name}.py" for name in _OUTPUT_CODE]
    paths += sorted((package / "generate").glob("*.py"))
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    templates = resources.files("sl2s.templates")
    for entry in sorted(templates.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".j2"):
            digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return digest.hexdigest()


class Session:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.key = code_digest()
        self._scans: dict[str, list[list]] = {}
        self._state: dict = {}
        known: list[str] = []
        try:
            data = orjson.loads(
                (out / CACHE).read_bytes()
            )  # C decoder: the cache is large
            if isinstance(data, dict) and data.get("key") == self.key:
                self._scans = dict(data.get("scans", {}))
                known = list(data.get("black", []))
                self._state = dict(data.get("state", {}))
        except (OSError, ValueError, TypeError):
            pass
        self._used: dict[str, list[list]] = {}
        self._known = known
        self._black: BlackCheck | None = None
        self._rendered_on_disk: dict[str, dict[str, str]] = {}
        self._modules: dict[str, str] | None = None
        self._digests: dict[str, str] = {}

    @property
    def black(self) -> BlackCheck:
        """The check of rendered chunks against black, made on first use: it imports black, which
        a run with nothing to do never needs."""
        if self._black is None:
            from sl2s.generate.blackcheck import BlackCheck
            from sl2s.generate.rendercache import RenderCache

            self._black = BlackCheck(self._known)
            self._black.rendered = RenderCache(self._load_rendered)
        return self._black

    # --- rendered wiring chunks, one file per machine ------------------------------------------

    def _load_rendered(self, machine: str) -> dict[str, str]:
        chunks: dict[str, str] = {}
        try:
            data = orjson.loads((self.out / RENDER / f"{machine}.json").read_bytes())
            if isinstance(data, dict) and data.get("key") == self.key:
                found = data.get("chunks")
                if isinstance(found, dict):
                    chunks = {
                        k: v
                        for k, v in found.items()
                        if isinstance(k, str) and isinstance(v, str)
                    }
        except (OSError, ValueError, TypeError):
            pass
        self._rendered_on_disk[machine] = chunks
        return chunks

    def _save_rendered(self) -> None:
        """Keep the chunks this run used, per machine; rewrite only the files that change."""
        used = self.black.rendered.used
        directory = self.out / RENDER
        for machine, chunks in sorted(used.items()):
            if machine not in self._rendered_on_disk:
                self._load_rendered(machine)
            if self._rendered_on_disk[machine] == chunks:
                continue
            data = {"key": self.key, "chunks": chunks}
            write_atomic(
                directory / f"{machine}.json",
                json.dumps(data, sort_keys=True).encode("utf-8"),
            )
            self._rendered_on_disk[machine] = dict(chunks)
        if directory.is_dir():
            for stale in directory.glob("*.json"):
                if stale.stem not in used:
                    stale.unlink(missing_ok=True)

    # --- inputs -------------------------------------------------------------------------------

    def user_modules(self) -> dict[str, str]:
        if self._modules is None:
            self._modules = read_user_modules(self.out)
        return self._modules

    def inputs_digest(self, plan_bytes: bytes, plan_ref: str) -> str:
        digest = hashlib.sha256(self.key.encode())
        digest.update(_sha(plan_bytes).encode() + b"\0" + plan_ref.encode() + b"\0")
        for path, source in sorted(self.user_modules().items()):
            digest.update(path.encode() + b"\0" + self._digest(source).encode())
        return digest.hexdigest()

    def _digest(self, source: str) -> str:
        """SHA-256 of a module's source (remembered: each module is hashed once per run)."""
        digest = self._digests.get(source)
        if digest is None:
            digest = self._digests[source] = _sha(source.encode("utf-8"))
        return digest

    def _scan_rows(self, source: str) -> list[list]:
        digest = self._digest(source)
        rows = self._scans.get(digest)
        if rows is None:
            from sl2s.generate.usercode import (
                scan_module,
            )  # libcst: only when a module changed

            found = scan_module(source)  # UserCodeError propagates to the core
            rows = [
                [
                    f.flow,
                    f.id,
                    f.template,
                    f.function,
                    list(f.params),
                    f.line,
                    [list(t) for t in f.types],
                ]
                for f in found
            ]
        self._used[digest] = rows
        return rows

    def scan(self, path: str, source: str) -> list[FoundStep]:
        from sl2s.generate.usercode import FoundStep

        rows = self._scan_rows(source)
        return [
            FoundStep(
                r[0], r[1], r[2], r[3], tuple(r[4]), r[5], tuple(map(tuple, r[6]))
            )
            for r in rows
        ]

    def seed(self, source: str, steps) -> None:
        """Record what scan_module() finds in `source` (known without parsing it)."""
        rows = [
            [
                f.flow,
                f.id,
                f.template,
                f.function,
                list(f.params),
                f.line,
                [list(t) for t in f.types],
            ]
            for f in steps
        ]
        self._scans[self._digest(source)] = rows

    # --- the no-op fast path ------------------------------------------------------------------

    def unchanged(self, inputs: str) -> list[str] | None:
        """The last run's messages when it had these inputs and left every file as it still is;
        else None (then generate for real)."""
        state = self._state
        if state.get("inputs") != inputs or not isinstance(state.get("files"), dict):
            return None
        for path, digest in state["files"].items():
            try:
                if _sha((self.out / path).read_bytes()) != digest:
                    return None
            except OSError:
                return None
        messages = state.get("messages", [])
        return [m for m in messages if isinstance(m, str)]

    def save(
        self,
        plan_bytes: bytes,
        plan_ref: str,
        generated: dict[str, str],
        messages: list[str],
        written: dict[str, str] | None = None,
    ) -> None:
        """Remember this run: scans of the modules it saw (and wrote), and the fast-path state.

        `generated`: `{path: content}` of every generated file now on disk; `written`: the user
        modules this run created or appended to (else every user module is read again).
        """
        if written is None:
            self._modules = None
        modules = self.user_modules()
        modules.update(written or {})
        for source in modules.values():
            self._scan_rows(source)
        state = {
            "inputs": self.inputs_digest(plan_bytes, plan_ref),
            "files": {p: _sha(c.encode("utf-8")) for p, c in sorted(generated.items())},
            "messages": messages,
        }
        data = {
            "key": self.key,
            "scans": self._used,
            "black": sorted(self.black.known),
            "state": state,
        }
        ignore = self.out / ".sl2s" / ".gitignore"
        if not ignore.exists():
            write_atomic(
                ignore, b"# Created by sl2s: caches and logs, never committed.\n*\n"
            )
        write_atomic(self.out / CACHE, json.dumps(data, sort_keys=True).encode("utf-8"))
        self._save_rendered()
