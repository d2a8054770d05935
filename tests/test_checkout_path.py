"""Tests do not depend on where the checkout is: the user-traceback test (which keeps the user's
frames and drops sl2s's own) passes from a copy of the repository under a path containing
`/sl2s/`, with the package imported from that copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_traceback_test_passes_from_a_checkout_under_a_sl2s_directory(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "sl2s" / "work" / "sl2s"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "build", "dist", "services", ".mypy_cache", ".ruff_cache", "node_modules",
    )  # fmt: skip
    shutil.copytree(ROOT, copy, ignore=ignore)
    env = {**os.environ, "PYTHONPATH": str(copy / "generator")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
        ]
        + [
            "tests/test_up_core.py::"
            "test_user_traceback_keeps_the_users_frames_and_drops_those_of_sl2s",
            "-o",
            "addopts=",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import sl2s; print(sl2s.__path__[0])"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert imported == str(copy / "generator" / "sl2s")  # the copy's own package ran
