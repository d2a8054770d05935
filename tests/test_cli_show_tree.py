"""`sl2s show` reads the generated tree (issue: show and PLAN.md disagreed on which hops carry a
secret, because only the user's code says which steps take it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sl2s(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sl2s", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def plan_md_body(tree: Path) -> str:
    text = (tree / "PLAN.md").read_text(encoding="utf-8")
    return text[text.index("# Plan") :]


def test_show_matches_plan_md_once_a_step_takes_the_secret(tmp_path):
    shutil.copy(ROOT / "sample_plans" / "login.csv", tmp_path / "login.csv")
    assert sl2s(tmp_path, "generate", "login.csv").returncode == 0
    module = tmp_path / "services" / "server" / "login.py"
    source = module.read_text(encoding="utf-8")
    assert "def testing_password_for_username(username: object) -> None:" in source
    module.write_text(
        source.replace(
            "def testing_password_for_username(username: object) -> None:",
            "def testing_password_for_username(username: object, password: str) -> None:",
        ),
        encoding="utf-8",
    )
    assert sl2s(tmp_path, "generate", "login.csv").returncode == 0
    body = plan_md_body(tmp_path / "services")
    assert body.count("password") > 2  # the hop to the server now carries it
    # services/ was generated from login.csv: read by default; or named with --tree
    default = sl2s(tmp_path, "show", "login.csv", "--format", "markdown")
    named = sl2s(tmp_path.parent, "show", str(tmp_path / "login.csv"), "-f", "markdown",
                 "--tree", str(tmp_path / "services"))  # fmt: skip
    assert default.returncode == 0 and named.returncode == 0, (
        default.stderr + named.stderr
    )
    assert default.stdout == body
    assert named.stdout.replace(str(tmp_path / "login.csv"), "login.csv") == body
    # without the tree (run elsewhere): the plan alone, where no step takes the secret
    alone = sl2s(tmp_path.parent, "show", str(tmp_path / "login.csv"), "-f", "markdown")
    assert alone.returncode == 0 and alone.stdout != named.stdout
    assert alone.stdout.count("password") < body.count("password")
    text = sl2s(tmp_path, "show", "login.csv")
    assert text.returncode == 0 and "password" in text.stdout


def test_show_tree_that_does_not_exist_is_a_usage_error(tmp_path):
    done = sl2s(
        tmp_path, "show", str(ROOT / "sample_plans" / "login.csv"), "--tree", "nope"
    )
    assert done.returncode == 2 and "--tree nope: no such directory" in done.stderr
