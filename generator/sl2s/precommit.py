"""`python -m sl2s.precommit [DIR…]`: the pre-commit hook "generated code is up to date".

For each generated system — the directories given, else every directory of the repository that
holds an `sl2s.lock.json` (tracked by git, or found on disk outside git) — runs
`sl2s generate PLAN --out DIR --check` with the plan its lock names. Exit 1 when any is stale
(each stale file is listed) or cannot be checked, 0 otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOCK = "sl2s.lock.json"
SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", ".sl2s", ".tox"}


def systems() -> list[Path]:
    """Directories holding a lock: git's tracked files, else a walk of the working tree."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "--", f"*{LOCK}", LOCK],
        capture_output=True,
        check=False,
    )
    if done.returncode == 0:
        found = {Path(p).parent for p in done.stdout.decode().split("\0") if p}
        return sorted(found)
    out = []
    for root, dirs, files in os.walk("."):
        dirs[:] = sorted(d for d in dirs if d not in SKIP)
        if LOCK in files:
            out.append(Path(os.path.normpath(root)))
    return out


def plan_of(directory: Path) -> Path | str:
    """The plan the system's lock names, or a one-line problem."""
    lock = directory / LOCK
    try:
        ref = json.loads(lock.read_text(encoding="utf-8"))["plan"]["path"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{lock}: cannot read the plan's path from the lock ({error})"
    return Path(os.path.normpath(directory / ref))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directories = [Path(a) for a in args] or systems()
    status = 0
    for directory in directories:
        plan = plan_of(directory)
        if isinstance(plan, str):
            print(plan, file=sys.stderr)
            status = 1
            continue
        done = subprocess.run(
            [sys.executable, "-c", "from sl2s.cli import main; main()"]
            + ["generate", str(plan), "--out", str(directory), "--check"],
            check=False,
        )
        status = status or (1 if done.returncode else 0)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
