"""The shell around the pure core: read the tree, compare, write atomically.

Nothing is written until every file has been rendered and validated (core.generate raises first).
Unchanged files are not touched (their mtime stays). Each write goes to a temporary file in the
same directory, is fsynced, keeps the old file's mode, and replaces the old file with os.replace.
Generated files that the previous lock listed and that the plan no longer produces are removed
(only when they are still exactly as generated).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.generate import lock as lockfile
from sl2s.generate.lock import GENERATED_IN_MACHINE, LOCK

if (
    TYPE_CHECKING
):  # the core imports libcst and black: not needed to read or write a tree
    from sl2s.generate.core import Generation


@dataclass(frozen=True)
class Change:
    path: str  # relative, with `/`
    old: bytes | None  # None: the file does not exist
    new: bytes | None  # None: remove the file

    @property
    def kind(self) -> str:
        if self.old is None:
            return "create"
        if self.new is None:
            return "remove"
        return "update"


def user_module_paths(out: Path) -> Iterator[str]:
    """`<machine>/<name>.py` of every non-generated module directly inside a machine directory
    (and `_shared/<flow>.py`, where `sl2s rebalance` puts helpers that steps on several machines
    use)."""
    if not out.is_dir():
        return
    for machine in sorted(out.iterdir()):
        if not machine.is_dir() or machine.name.startswith("."):
            continue
        for module in sorted(machine.glob("*.py")):
            if module.name not in GENERATED_IN_MACHINE and module.is_file():
                yield f"{machine.name}/{module.name}"


def read_user_modules(out: Path) -> dict[str, str]:
    """`{path: source}` of the user modules; Sl2sError for one that is not UTF-8 text."""
    modules = {}
    for path in user_module_paths(out):
        try:
            # bytes, then decode: keep the file's own line endings (read_text would turn CRLF
            # into LF, and appending a stub would then rewrite every line)
            modules[path] = (out / path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            shown = (out / path).as_posix()
            raise Sl2sError(
                Diagnostic(shown, 0, f"not UTF-8 text ({error.reason})")
            ) from None
    return modules


def old_lock(out: Path) -> dict:
    try:
        return lockfile.read((out / LOCK).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def plan_changes(
    out: Path, generation: Generation, previous_lock: dict | None = None
) -> list[Change]:
    """What writing `generation` into `out` would change, sorted by path."""
    changes: list[Change] = []
    produced = set()
    for f in generation.files:
        produced.add(f.path)
        new = f.content.encode("utf-8")
        old = _read(out / f.path)
        if old != new:
            changes.append(Change(f.path, old, new))
    previous = previous_lock if previous_lock is not None else old_lock(out)
    files = previous.get("files")
    if isinstance(files, dict):
        for path, digest in sorted(files.items()):
            if not isinstance(path, str) or path in produced or not _safe(path):
                continue
            old = _read(out / path)
            if old is not None and hashlib.sha256(old).hexdigest() == digest:
                changes.append(Change(path, old, None))
    return sorted(changes, key=lambda c: c.path)


def _safe(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(parts)
        and all(p not in ("", ".", "..") for p in parts)
        and "\\" not in path
    )


def diff(changes: Iterable[Change], label: str = "") -> str:
    """A unified diff of the changes (paths as `a/<label><path>` and `b/<label><path>`)."""
    out: list[str] = []
    for change in changes:
        old = (change.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
        new = (change.new or b"").decode("utf-8", "replace").splitlines(keepends=True)
        a = "/dev/null" if change.old is None else f"a/{label}{change.path}"
        b = "/dev/null" if change.new is None else f"b/{label}{change.path}"
        for line in difflib.unified_diff(old, new, a, b):
            out.append(
                line
                if line.endswith("\n")
                else line + "\n\\ No newline at end of file\n"
            )
    return "".join(out)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_temp(path: Path, data: bytes, sync: bool) -> str:
    """Write `data` to a new temporary file next to `path` (mode of `path`); return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.chmod(temp, mode)
    except BaseException:
        _unlink(temp)
        raise
    return temp


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file, fsync, os.replace), keeping its mode."""
    temp = _write_temp(path, data, sync=True)
    try:
        os.replace(temp, path)
    except BaseException:
        _unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def apply(out: Path, changes: Iterable[Change]) -> None:
    """Write (or remove) every change. Call only after everything has been rendered and validated.

    Every new file is first written to a temporary file next to its target; their data is made
    durable (one `sync()` for the batch where the platform has it — an fsync per file costs
    seconds on a large tree — else an fsync per file); only then is each renamed over its target
    with os.replace (atomic per file), the lock file last, and the directories are fsynced. A
    failure before the renames leaves the tree as it was.
    """
    ordered = sorted(changes, key=lambda c: (c.path == LOCK, c.path))
    batch_sync = hasattr(os, "sync")
    temps: list[tuple[str, Path]] = []
    try:
        for change in ordered:
            if change.new is not None:
                target = out / change.path
                temps.append(
                    (_write_temp(target, change.new, sync=not batch_sync), target)
                )
        if batch_sync and temps:
            os.sync()
    except BaseException:
        for temp, _ in temps:
            _unlink(temp)
        raise
    directories = set()
    pending = dict((target, temp) for temp, target in temps)
    try:
        for change in ordered:
            target = out / change.path
            if change.new is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(pending.pop(target), target)
            directories.add(target.parent)
    finally:
        for temp in pending.values():
            _unlink(temp)
    for directory in sorted(directories):
        _fsync_dir(directory)
