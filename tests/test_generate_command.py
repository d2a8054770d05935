"""`sl2s.generate.command.run_generate`: the orchestration behind `sl2s generate`, called directly
(no CLI): the report's lines, streams, exit status and counts; the emitted lines; the fast path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.generate.command import Line, plan_ref, run_generate, tree_label

LOGIN = (
    "Request\tLog\tMachine\n"
    "login\tUser attempted login as :username and #password\tclient\n"
    "login\tReceived request to login as :username\tserver\n"
    "login\tLogin successful\tclient\n"
)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.csv").write_text(LOGIN, encoding="utf-8")
    return tmp_path


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sl2s" not in p.parts
    }


def test_write_reports_stubs_and_counts(project) -> None:
    report = run_generate(Path("plan.csv"), Path("services"))
    assert report.exit_code == 0 and not report.up_to_date
    assert report.counts == {"create": 10, "update": 0, "remove": 0, "unchanged": 0}
    assert report.stderr == ""
    assert report.lines[-1] == Line(
        "services/: 10 created, 0 updated, 0 removed, 0 unchanged"
    )
    assert (
        "stub: services/server/login.py: received_request_to_login_as_username\n"
        in report.stdout
    )
    assert (project / "services" / "client" / "_wiring.py").is_file()


def test_second_run_takes_the_fast_path(project) -> None:
    run_generate(Path("plan.csv"), Path("services"))
    report = run_generate(Path("plan.csv"), Path("services"))
    assert report.up_to_date and report.exit_code == 0
    assert report.lines == [Line("services/: up to date, nothing written")]
    check = run_generate(Path("plan.csv"), Path("services"), check=True)
    assert check.lines == [Line("services/ is up to date with plan.csv")]
    diff = run_generate(Path("plan.csv"), Path("services"), diff=True)
    assert diff.lines == [] and diff.exit_code == 0


def test_check_reports_stale_files_and_writes_nothing(project) -> None:
    run_generate(Path("plan.csv"), Path("services"))
    (project / "plan.csv").write_text(LOGIN + "login\tBye\tserver\n", encoding="utf-8")
    before = files(project / "services")
    report = run_generate(Path("plan.csv"), Path("services"), check=True)
    assert report.exit_code == 1 and report.stale > 0
    assert all(line.text.startswith("stale: services/") for line in report.lines[:-1])
    assert report.lines[-1] == Line(
        f"{report.stale} stale file(s): run `sl2s generate plan.csv`", err=True
    )
    assert files(project / "services") == before


def test_diff_wins_over_check_and_writes_nothing(project) -> None:
    report = run_generate(Path("plan.csv"), Path("out"), check=True, diff=True)
    assert report.exit_code == 0
    assert len(report.lines) == 1 and not report.lines[0].nl
    assert "+++ b/out/client/_wiring.py\n" in report.stdout
    assert not (project / "out").exists()


def test_orphans_are_warned_on_stderr_and_repeated_by_the_fast_path(project) -> None:
    run_generate(Path("plan.csv"), Path("services"))
    (project / "plan.csv").write_text(
        LOGIN.replace("Login successful", "Logged in"), encoding="utf-8"
    )
    first = run_generate(Path("plan.csv"), Path("services"))
    warnings = [line for line in first.lines if line.err]
    assert warnings and all(w.text.startswith("warning: ") for w in warnings)
    assert "login_successful()" in first.stderr
    again = run_generate(Path("plan.csv"), Path("services"))
    assert again.up_to_date and again.stderr == first.stderr


def test_emit_sees_every_line_in_order_even_when_the_run_fails(project) -> None:
    seen: list[Line] = []
    report = run_generate(Path("plan.csv"), Path("services"), emit=seen.append)
    assert seen == report.lines
    (project / "plan.csv").write_text("Request\tLog\n", encoding="utf-8")
    with pytest.raises(Sl2sError):
        run_generate(Path("plan.csv"), Path("services"), emit=seen.append)


def test_a_missing_plan_is_a_user_error(project) -> None:
    with pytest.raises(Sl2sError) as error:
        run_generate(Path("nope.csv"), Path("services"))
    assert str(error.value.diagnostics[0]).startswith("nope.csv")
    assert not (project / "services").exists()


def test_plan_ref_and_label(tmp_path) -> None:
    assert plan_ref(tmp_path / "plan.csv", tmp_path / "services") == "../plan.csv"
    assert plan_ref(tmp_path / "a" / "p.csv", tmp_path / "a") == "p.csv"
    assert tree_label(Path("services")) == "services/"
    assert tree_label(Path("out/sys/")) == "out/sys/"
