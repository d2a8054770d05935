"""`sl2s check`, `sl2s show`, `sl2s diff`: output, exit codes, messages, no tracebacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE_PLANS
from typer.testing import CliRunner

from sl2s import plandiff, show
from sl2s.cli import app
from sl2s.plan import read_plan
from sl2s.projection import project

DATA = Path(__file__).resolve().parent / "data" / "plandiff"
ROUTING = "request,log,machine\nf,Typed #pin,a\nf,Relaying,b\nf,Checking #pin,c\n"
BROKEN = "request,log,machine,colour\nf,Start,a,red\n"


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working directory holding copies of the sample plans and the plandiff pairs."""
    for path in list(SAMPLE_PLANS.glob("*.csv")) + list(DATA.glob("*.csv")):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "routing.csv").write_text(ROUTING)
    (tmp_path / "broken.csv").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_check_prints_one_summary_line_per_plan(here):
    result = run("check", "login.csv", "index.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "login.csv: 2 flows, 8 steps, 2 machines, 4 hops\n"
        "index.csv: 1 flow, 5 steps, 2 machines, 2 hops\n"
    )
    assert result.stderr == ""


def test_check_reports_every_plans_problems_and_still_summarises_the_good_ones(here):
    result = run("check", "broken.csv", "login.csv", "routing.csv", "missing.csv")
    assert result.exit_code == 1
    assert result.stdout == "login.csv: 2 flows, 8 steps, 2 machines, 4 hops\n"
    err = result.stderr.splitlines()
    assert any(line.startswith("broken.csv:1: ") and "colour" in line for line in err)
    assert [line.split(": ")[0] for line in err if line.startswith("routing.csv")] == [
        "routing.csv:2",
        "routing.csv:4",
    ]
    assert "missing.csv: no such file" in err
    assert "Traceback" not in result.output


def test_check_needs_a_plan():
    result = run("check")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


@pytest.mark.parametrize("fmt", ["text", "mermaid", "markdown"])
def test_show_prints_the_chosen_rendering(here, fmt):
    result = run("show", "shop.csv", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert result.stdout == show.render(project(read_plan("shop.csv")), fmt)


def test_show_defaults_to_text_and_rejects_unknown_formats(here):
    assert run("show", "index.csv").stdout.startswith("plan index.csv\n\nflow index: ")
    result = run("show", "index.csv", "--format", "svg")
    assert result.exit_code == 2
    assert "svg" in result.stderr


def test_show_of_an_invalid_plan_exits_1_with_file_line_messages(here):
    result = run("show", "routing.csv", "-f", "mermaid")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("routing.csv:2: secret #pin")


def test_diff_exit_codes_follow_diff(here):
    same = run("diff", "login.csv", "login.old.csv")
    assert (same.exit_code, same.stdout) == (
        0,
        "--- login.csv\n+++ login.old.csv\nno differences\n",
    )
    changed = run("diff", "login.old.csv", "login.new.csv", "--format", "markdown")
    assert changed.exit_code == 1
    expected = plandiff.markdown(
        plandiff.diff_plans(read_plan("login.old.csv"), read_plan("login.new.csv"))
    )
    assert changed.stdout == expected
    missing = run("diff", "login.csv", "nope.csv")
    assert (missing.exit_code, missing.stdout, missing.stderr) == (
        2,
        "",
        "nope.csv: no such file\n",
    )
    invalid = run("diff", "broken.csv", "routing.csv")
    assert invalid.exit_code == 2
    assert {line.split(":")[0] for line in invalid.stderr.splitlines()} == {
        "broken.csv",
        "routing.csv",
    }


def test_help_documents_each_command():
    for command, words in [
        ("check", ["PLAN", "Exit status: 0 when all plans are valid, 1"]),
        ("show", ["--format", "mermaid", "markdown", "Exit status"]),
        (
            "diff",
            [
                "OLD",
                "NEW",
                "--format",
                "0 when the plans are the same, 1 when",
                "differ, 2",
            ],
        ),
    ]:
        result = run(command, "--help")
        assert result.exit_code == 0
        flat = " ".join(result.stdout.split())
        for word in words:
            assert word in flat, (command, word)


def test_console_entry_reports_a_bad_plan_without_a_traceback(here):
    code = "from sl2s.cli import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "check", "broken.csv"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("broken.csv:1: ")
    assert "Traceback" not in proc.stderr
