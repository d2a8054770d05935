"""All-or-nothing writes of a set of files: a crash at any moment leaves the tree before or after.

Protocol (the commit point is one atomic rename):

1. Everything is computed and validated in memory first (the caller's job).
2. The journal — for every file its contents before and after (absent = null) — is written to a
   temporary file, fsynced, and renamed to `<dir>/.sl2s-journal.json`; the directory is fsynced.
   Before that rename nothing in the tree has changed; from then on the change is decided.
3. Each file is written to a temporary sibling, fsynced and renamed over the target (new files'
   directories are created); deletions are unlinks. The directory is fsynced.
4. The journal is removed.

`recover(dir)` — run by every sl2s command before it does anything — finishes an interrupted step 3
(replays the "after" contents; each write is idempotent) and removes a stray temporary journal
(the run died before its commit point: the tree is as before). If a file matches neither its before
nor its after contents (someone edited it since the crash), nothing is touched and the user is told.
`rollback` restores the "before" contents; `apply` uses it when writing fails in-process.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from sl2s.diagnostics import Diagnostic, Sl2sError

JOURNAL = ".sl2s-journal.json"
PARTIAL = ".sl2s-journal.json.tmp"
TMP_SUFFIX = ".sl2s-tmp"

Contents = bytes | None  # None: the file does not exist


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> Contents:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _encode(data: Contents) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _decode(text: str | None) -> Contents:
    return None if text is None else base64.b64decode(text)


def _set(path: Path, data: Contents) -> None:
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        if _read(path) != data:
            _write_atomic(path, data)


def _place(root: Path, relative: str, data: Contents) -> None:
    path = root / relative
    _set(path, data)


def apply(root: Path | str, changes: Mapping[str, Contents]) -> int:
    """Write `changes` ({path relative to root: new bytes or None to delete}) all-or-nothing.

    Returns the number of files that changed.
    """
    root = Path(root)
    recover(root)
    entries = []
    for relative in sorted(changes):
        before = _read(root / relative)
        after = changes[relative]
        if before != after:
            entries.append(
                {"path": relative, "before": _encode(before), "after": _encode(after)}
            )
    if not entries:
        return 0
    root.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"version": 1, "files": entries}, indent=0).encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    partial = root / PARTIAL
    with open(partial, "wb") as handle:
        handle.write(json.dumps({"sha256": digest}).encode() + b"\n" + body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, root / JOURNAL)  # the commit point
    _fsync_dir(root)
    try:
        for entry in entries:
            _place(root, str(entry["path"]), _decode(entry["after"]))
        _finish(root, entries)
    except BaseException:  # an error or Ctrl-C while writing: put everything back
        rollback(root)
        raise
    return len(entries)


def _finish(root: Path, entries: list[dict]) -> None:
    for directory in {(root / e["path"]).parent for e in entries} | {root}:
        _fsync_dir(directory)
    (root / JOURNAL).unlink()
    _fsync_dir(root)


def _load(root: Path) -> list[dict] | None:
    path = root / JOURNAL
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    head, _, body = raw.partition(b"\n")
    try:
        if json.loads(head)["sha256"] != hashlib.sha256(body).hexdigest():
            raise ValueError("digest mismatch")
        return json.loads(body)["files"]
    except (ValueError, KeyError) as error:
        raise Sl2sError(
            Diagnostic(
                str(path),
                0,
                f"unreadable rebalance journal ({error}); not touching the tree",
            )
        ) from None


def _check(root: Path, entries: list[dict]) -> None:
    problems = []
    for entry in entries:
        current = _read(root / entry["path"])
        if current not in (_decode(entry["before"]), _decode(entry["after"])):
            problems.append(
                Diagnostic(
                    str(root / entry["path"]),
                    0,
                    "changed since an interrupted rebalance; resolve by hand, then delete "
                    f"{root / JOURNAL}",
                )
            )
    if problems:
        raise Sl2sError(problems)


def recover(root: Path | str) -> str | None:
    """Finish or discard an interrupted apply under `root`. Returns what it did, or None."""
    root = Path(root)
    stray = root / PARTIAL
    did = None
    if stray.exists():
        stray.unlink()
        did = "discarded an unfinished rebalance (nothing had been changed)"
    entries = _load(root)
    if entries is None:
        _remove_temporaries(root, [])
        return did
    _check(root, entries)
    for entry in entries:
        _place(root, entry["path"], _decode(entry["after"]))
    _remove_temporaries(root, entries)
    _finish(root, entries)
    return f"completed an interrupted rebalance ({len(entries)} files)"


def rollback(root: Path | str) -> None:
    """Put every journaled file back as it was before, and drop the journal."""
    root = Path(root)
    entries = _load(root)
    if entries is None:
        return
    _check(root, entries)
    for entry in entries:
        _place(root, entry["path"], _decode(entry["before"]))
    _remove_temporaries(root, entries)
    _finish(root, entries)


def _remove_temporaries(root: Path, entries: list[dict]) -> None:
    for entry in entries:
        tmp = root / (entry["path"] + TMP_SUFFIX)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def recover_from_argv(argv: list[str]) -> list[str]:
    """The CLI hook: recover under `services`, `--out DIR`, and any directory named on the command
    line (e.g. `sl2s run DIR`) that holds a journal. Costs one stat per argument when idle.
    """
    candidates = ["services"]
    for n, arg in enumerate(argv):
        if arg == "--out" and n + 1 < len(argv):
            candidates.append(argv[n + 1])
        elif arg.startswith("--out="):
            candidates.append(arg.split("=", 1)[1])
        elif not arg.startswith("-"):
            candidates.append(arg)
    done = []
    for candidate in dict.fromkeys(candidates):
        root = Path(candidate)
        if (root / JOURNAL).exists() or (root / PARTIAL).exists():
            what = recover(root)
            if what:
                done.append(f"{root}: {what}")
    return done


def pending(system_dir: str | os.PathLike[str]) -> str | None:
    """A one-line refusal when `system_dir` holds a committed, unfinished rebalance journal (the
    tree is half-moved: importing it would run that), else None. One stat when there is none.

    Names a command that completes it and changes nothing else: `sl2s generate PLAN --out DIR
    --check` with the plan the lock names (every sl2s command first replays a journal of the
    directories it names; the check then confirms the tree is up to date).
    """
    root = Path(system_dir)
    if not (root / JOURNAL).exists():
        return None
    try:
        where = os.path.relpath(root)
    except ValueError:  # another drive (Windows)
        where = str(root)
    plan = "PLAN"
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        ref = json.loads((root / "sl2s.lock.json").read_text(encoding="utf-8"))
        plan = os.path.relpath(os.path.normpath(root / ref["plan"]["path"]))
    return (
        f"{where}: a rebalance was interrupted and is not finished ({JOURNAL}); "
        f"refusing to import the half-moved tree: run "
        f"`sl2s generate {plan} --out {where} --check` "
        "to complete it"
    )


def refuse_import_over_pending(package_file: str) -> None:
    """Called by a generated system's `__init__.py` with its `__file__`: raise ImportError (one
    line) when a rebalance of that directory is pending."""
    message = pending(os.path.dirname(os.path.abspath(package_file)))
    if message is not None:
        raise ImportError(message)
