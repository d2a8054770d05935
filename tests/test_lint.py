"""The repository checks itself: mypy (strict on the pure core, default elsewhere, as pyproject.toml
says) and ruff (its rules in pyproject.toml: E, F, W, B, UP and I everywhere, line length held on
the pure core, the code generator, rebalance and tools/) report nothing, on the whole package and
the whole repository, and black would reformat nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PURE_CORE = ["model", "names", "template", "plan", "projection", "show", "plandiff"]
MODULES = [f"sl2s.{m}" for m in PURE_CORE] + ["sl2s.api", "sl2s.precommit"]
PACKAGES = ["sl2s.generate", "sl2s.rebalance", "sl2s.templates"]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ruff_finds_nothing_in_the_repository() -> None:
    done = run(
        "ruff", "check", "--no-cache", "."
    )  # tests/data and the goldens are excluded
    assert done.returncode == 0, done.stdout + done.stderr


def test_black_would_change_nothing() -> None:
    done = run("black", "--check", "--quiet", ".")  # pyproject.toml excludes tests/data
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_holds_line_length_where_pyproject_says() -> None:
    """The per-file E501 exemption must not swallow the core: a long line there is found."""
    long_line = "x = '" + "a" * 120 + "'\n"
    for where in [
        "generator/sl2s/plan.py",
        "generator/sl2s/generate/render.py",
        "tools/x.py",
    ]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "--select",
                "E501",
                "--stdin-filename",
                where,
                "-",
            ],
            cwd=ROOT,
            input=long_line,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1 and "E501" in done.stdout, (where, done.stdout)


def test_mypy_finds_nothing_strict_on_the_pure_core() -> None:
    args = [a for m in MODULES for a in ("-m", m)] + [
        a for p in PACKAGES for a in ("-p", p)
    ]
    # imported modules outside the list (the runtime) are followed for types, not reported
    done = run("mypy", "--follow-imports=silent", "--no-incremental", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Success: no issues found"), done.stdout
    tools = run("mypy", "--follow-imports=silent", "--no-incremental", "tools")
    assert tools.returncode == 0, tools.stdout + tools.stderr


def test_mypy_finds_nothing_in_the_whole_package() -> None:
    done = run(
        "mypy", "--no-incremental"
    )  # the package, as pyproject.toml's [tool.mypy] names it
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout.splitlines()[-1], done.stdout
