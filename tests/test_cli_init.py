"""`sl2s init [DIR]` end to end: a new project whose services run at once, whose .gitignore keeps
`.sl2s/` state out of git and the services in, and that is never written over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def sl2s(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sl2s", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_init_then_run_works_in_the_new_project(tmp_path):
    done = sl2s(tmp_path, "init", "demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "created demo/: plan.csv (a sample plan), .gitignore, .pre-commit-config.yaml, services/"
    )
    assert (
        "  cd demo\n  sl2s run services login username=ann password=hunter2\n"
        in done.stdout
    )
    demo = tmp_path / "demo"
    for path in (
        "plan.csv",
        ".gitignore",
        "services/sl2s.lock.json",
        "services/PLAN.md",
        "services/client/_wiring.py",
        "services/server/login.py",
    ):
        assert (demo / path).is_file(), path
    assert (
        sl2s(demo, "check", "plan.csv").stdout
        == "plan.csv: 2 flows, 8 steps, 2 machines, 4 hops\n"
    )
    assert (
        sl2s(demo, "generate", "plan.csv").stdout
        == "services/: up to date, nothing written\n"
    )
    run = sl2s(demo, "run", "services", "login", "username=ann", "password=hunter2")
    assert run.returncode == 0, run.stderr
    assert "flow 'login' done (6 steps)" in run.stdout
    assert "hunter2" not in run.stdout + run.stderr
    assert (demo / "services" / ".sl2s" / "logs").is_dir()  # state the run left behind


def test_gitignore_keeps_state_out_of_git_and_the_services_in(tmp_path):
    assert (
        sl2s(tmp_path, "init").returncode == 0
    )  # DIR defaults to the current directory
    assert sl2s(tmp_path, "run", "services", "feed").returncode == 0
    (tmp_path / ".sl2s").mkdir()  # e.g. the console's index
    (tmp_path / ".sl2s" / "console.sqlite3").write_bytes(b"x")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "plan.csv" in tracked and ".gitignore" in tracked
    assert (
        "services/server/login.py" in tracked and "services/sl2s.lock.json" in tracked
    )
    assert not [path for path in tracked if ".sl2s/" in path or "__pycache__" in path]


def test_init_never_writes_over_a_project(tmp_path):
    assert sl2s(tmp_path, "init", "demo").returncode == 0
    demo = tmp_path / "demo"
    (demo / "services" / "server" / "login.py").write_text(
        "# my code\n", encoding="utf-8"
    )
    before = snapshot(demo)
    again = sl2s(tmp_path, "init", "demo")
    assert again.returncode == 1
    assert (
        "already has plan.csv, .gitignore, .pre-commit-config.yaml, services"
        in again.stderr
    )
    assert "Traceback" not in again.stderr
    assert snapshot(demo) == before
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert "exists and is not a directory" in sl2s(tmp_path, "init", "file").stderr


def test_the_new_projects_pre_commit_hooks_pass_then_catch_a_stale_tree(tmp_path):
    """The real pre-commit runs the project's two local hooks: both pass on the new project, and
    the up-to-date check fails once the plan changes without `sl2s generate`."""
    import os
    import shutil

    assert sl2s(tmp_path, "init", "demo").returncode == 0
    demo = tmp_path / "demo"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
    }
    pre_commit = shutil.which("pre-commit", path=env["PATH"])
    assert pre_commit, "pre-commit is in the test extra"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=demo, env=env, capture_output=True, text=True, timeout=120
        )

    assert run("git", "init", "-q").returncode == 0
    assert run("git", "add", ".").returncode == 0
    done = run(pre_commit, "run", "--all-files")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sl2s check (the plan is valid)" in done.stdout
    plan = demo / "plan.csv"
    plan.write_text(plan.read_text() + "feed\tFeed shown to :username\tclient\n")
    assert run("git", "add", ".").returncode == 0
    stale = run(pre_commit, "run", "--all-files")
    assert stale.returncode != 0
    assert "sl2s generate --check" in stale.stdout
