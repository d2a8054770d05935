"""`sl2s.rebalance.command`: the orchestration behind `sl2s rebalance`, called directly (no CLI):
the report (lines, streams, counts), the dirty-tree refusal, validation, the summary lines.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.generate.command import Line, run_generate
from sl2s.generate.writer import Change
from sl2s.rebalance import journal
from sl2s.rebalance.command import dirty, run_rebalance, summary, validate

PLAN = (
    "Request\tLog\tMachine\n"
    "login\tUser attempted login as :username\tclient\n"
    "login\tReceived request to login as :username\tserver\n"
    "login\tTesting password for :username\tserver\n"
    "login\tLogin successful\tclient\n"
)
MOVED = PLAN.replace("password for :username\tserver", "password for :username\tauth")


def git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.csv").write_text(PLAN, encoding="utf-8")
    assert run_generate(Path("plan.csv"), Path("services")).exit_code == 0
    git("init", "-q", ".", cwd=tmp_path)
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "init", cwd=tmp_path)
    return tmp_path


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sl2s" not in p.parts
    }


def test_dry_run_reports_diff_summary_and_count_and_writes_nothing(project) -> None:
    (project / "plan.csv").write_text(MOVED, encoding="utf-8")
    before = files(project / "services")
    report = run_rebalance(Path("plan.csv"), Path("services"), dry_run=True)
    assert files(project / "services") == before
    assert report.exit_code == 0 and report.moved == 1 and report.renamed == 0
    diff, *rest = report.lines
    assert not diff.nl and "+++ b/services/auth/login.py" in diff.text
    assert rest[0].text.startswith("moved login/testing_password_for_username: ")
    assert rest[-1] == Line(
        f"{report.changed} file(s) would change (dry run: nothing written)"
    )
    assert report.changed > 0 and report.stderr == ""


def test_apply_moves_writes_and_counts(project) -> None:
    (project / "plan.csv").write_text(MOVED, encoding="utf-8")
    seen: list[Line] = []
    report = run_rebalance(Path("plan.csv"), Path("services"), emit=seen.append)
    assert seen == report.lines
    assert "def testing_password_for_username" in (
        project / "services" / "auth" / "login.py"
    ).read_text(encoding="utf-8")
    assert report.lines[-1] == Line(
        f"services/: {report.changed} file(s) changed, 1 step(s) moved, 0 renamed"
    )
    assert "new machine 'auth': package services/auth/ created" in report.stdout
    # the generator's cache was saved: generate finds nothing to do
    assert run_generate(Path("plan.csv"), Path("services")).up_to_date


def test_a_dirty_tree_is_refused_before_anything_is_written(project) -> None:
    (project / "plan.csv").write_text(MOVED, encoding="utf-8")
    module = project / "services" / "server" / "login.py"
    module.write_text(
        module.read_text(encoding="utf-8") + "\n# wip\n", encoding="utf-8"
    )
    before = files(project / "services")
    with pytest.raises(Sl2sError) as error:
        run_rebalance(Path("plan.csv"), Path("services"))
    messages = [str(d) for d in error.value.diagnostics]
    assert messages[0] == (
        "services: has uncommitted changes; commit them first or pass --allow-dirty"
    )
    assert messages[1] == "services:    M services/server/login.py"  # "  " + porcelain
    assert files(project / "services") == before
    report = run_rebalance(Path("plan.csv"), Path("services"), allow_dirty=True)
    assert report.moved == 1


def test_recovery_is_reported_before_a_bad_plan(project) -> None:
    (project / "services" / journal.PARTIAL).write_text("{", encoding="utf-8")
    (project / "plan.csv").write_text("Request\tLog\n", encoding="utf-8")
    seen: list[Line] = []
    with pytest.raises(Sl2sError):
        run_rebalance(Path("plan.csv"), Path("services"), emit=seen.append)
    assert seen == [
        Line(
            "services/: discarded an unfinished rebalance (nothing had been changed)",
            err=True,
        )
    ]


def test_dirty_without_a_tree_or_without_git(tmp_path) -> None:
    assert dirty(tmp_path / "missing") == []
    assert dirty(tmp_path) is None  # not a git work tree


def test_validate_rejects_invalid_python_and_lost_formatting() -> None:
    clean = "x = 1\n"
    with pytest.raises(Sl2sError) as error:
        validate(
            [Change("m/f.py", clean.encode(), b"def f(:\n")], {"m/f.py": clean}, "s/"
        )
    assert str(error.value.diagnostics[0]).startswith(
        "s/m/f.py:1: sl2s produced invalid"
    )
    with pytest.raises(Sl2sError) as error:
        validate([Change("m/f.py", clean.encode(), b"x=1\n")], {"m/f.py": clean}, "s/")
    assert "would leave this black-formatted module unformatted" in str(error.value)
    # unformatted before: nothing to keep; generated modules and removals are not checked
    validate([Change("m/f.py", b"x=2\n", b"x=1\n")], {"m/f.py": "x=2\n"}, "s/")
    validate([Change("m/_wiring.py", None, b"def f(:\n")], {}, "s/")
    validate([Change("m/f.py", clean.encode(), None)], {"m/f.py": clean}, "s/")


def test_summary_lines() -> None:
    report = SimpleNamespace(
        helpers=("h",),
        carried_imports=("import a",),
        cross_imports=(),
        removed_imports=("b",),
        kept_imports=(),
    )
    outcome = SimpleNamespace(
        moves=[
            SimpleNamespace(
                flow="f",
                id="s",
                function="fn",
                source="a/f.py",
                dest="b/f.py",
                report=report,
                shared=(),
            )
        ],
        renames=[],
        out_of_scope=["x"],
        emptied=[],
        new_machines=["b"],
        failed=[],
    )
    assert summary(outcome, "sv/") == [
        "moved f/s: fn() sv/a/f.py -> sv/b/f.py",
        "  carried helpers: h",
        "  carried imports: import a",
        "  imports no longer needed in sv/a/f.py: b",
        "out of scope: x",
        "new machine 'b': package sv/b/ created",
    ]
