"""Where an incident comes from: the plan digest (from the lock file) and the git revision."""

from __future__ import annotations

import os
from pathlib import Path

import orjson


def git_revision(start: str | os.PathLike) -> str | None:
    """The commit checked out in the git work tree containing `start`, read from .git (no git)."""
    directory = Path(start).resolve()
    for candidate in (directory, *directory.parents):
        dot_git = candidate / ".git"
        if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            dot_git = (candidate / text[len("gitdir:") :].strip()).resolve()
        if not dot_git.is_dir():
            continue
        try:
            head = (dot_git / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not head.startswith("ref:"):
            return head or None
        ref = head[4:].strip()
        common = dot_git
        commondir = dot_git / "commondir"
        if commondir.is_file():
            common = (dot_git / commondir.read_text(encoding="utf-8").strip()).resolve()
        for base in (dot_git, common):
            ref_file = base / ref
            if ref_file.is_file():
                return ref_file.read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
        return None
    return None


def plan_digest(services_dir: str | os.PathLike) -> str | None:
    """The plan digest recorded in `<services>/sl2s.lock.json`, when there is one."""
    lock = Path(services_dir) / "sl2s.lock.json"
    try:
        data = orjson.loads(lock.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    plan = data.get("plan") if isinstance(data, dict) else None
    return plan.get("digest") if isinstance(plan, dict) else None
