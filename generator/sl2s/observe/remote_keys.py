"""Which hop key signs a read of a served machine (`incidents`, `errors`, `watch`, `console`
`--url`): `SL2S_HOP_KEY`; else the key file of the tree `--dir DIR` names; else the key file of the
tree `sl2s up` serves at that address, found from the current directory (the directory itself or
one below it, e.g. `services/`, whose `.sl2s/up.toml` lists the URL). Nothing found: no key, and a
refusal (401) says what to add."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sl2s.diagnostics import Sl2sError
from sl2s.runtime.transport.http.config import ENV_KEY, KEY_FILE, UP_FILE
from sl2s.runtime.transport.http.protocol import parse_keys


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    if host == "localhost":
        host = "127.0.0.1"
    return parts.scheme.lower(), host, port


def _up_urls(tree: Path) -> list[str]:
    from sl2s.runtime.transport.http.config import tomllib

    try:
        data = tomllib.loads((tree / UP_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    machines = data.get("machines")
    found = []
    if isinstance(machines, dict):
        for entry in machines.values():
            url = entry.get("url") if isinstance(entry, dict) else entry
            if isinstance(url, str):
                found.append(url)
    return found


def up_tree_serving(urls: Iterable[str], cwd: Path) -> Path | None:
    """The tree under `cwd` (itself or a directory just below) whose `sl2s up` serves one of
    `urls`, by its `.sl2s/up.toml`."""
    wanted = {_origin(url) for url in urls}
    candidates = [cwd]
    try:
        candidates += sorted(p for p in cwd.iterdir() if p.is_dir())
    except OSError:
        pass
    for tree in candidates:
        if (tree / UP_FILE).is_file() and wanted & {_origin(u) for u in _up_urls(tree)}:
            return tree
    return None


def read_keys(
    urls: Iterable[str],
    directory: str | None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> tuple[bytes, ...]:
    """The key(s) to sign reads of `urls` with (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    text, source = environ.get(ENV_KEY), f"environment {ENV_KEY}"
    if not (text and text.strip()):
        tree: Path | None = None
        if directory:
            tree = Path(directory)
            if not tree.is_dir():
                raise Sl2sError(f"{directory}: no such directory (--dir)")
        else:
            tree = up_tree_serving(list(urls), Path(cwd or os.getcwd()))
        if tree is not None and (tree / KEY_FILE).is_file():
            path = tree / KEY_FILE
            text, source = path.read_text(encoding="utf-8").strip(), str(path)
    try:
        return parse_keys(text)
    except ValueError as error:
        raise Sl2sError(f"{source}: {error}") from None
