"""`sl2s run DIR FLOW [FIELD=VALUE | FIELD:=JSON ...]`: the story, exit codes, failures."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.runtime.core import events
from sl2s.runtime.launch import parse_values

TREE = Path(__file__).resolve().parent / "data" / "runtime_tree"
_names = itertools.count()


@pytest.fixture
def system(tmp_path, monkeypatch):
    """`system("rt_login")`: a copy of a test tree under a package name new to this process."""
    monkeypatch.delenv("SL2S_LOG_DIR", raising=False)
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    monkeypatch.chdir(tmp_path)

    def copy(tree: str) -> str:
        name = f"{tree}_cli{next(_names)}"
        shutil.copytree(TREE / tree, tmp_path / name)
        return name

    yield copy
    events.close_all()


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_run_prints_one_line_per_step_with_secrets_masked(system):
    name = system("rt_login")
    result = run("run", name, "login", "username=ann", "password=hunter2")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # (INFO log lines are shown too when logging is not configured; under pytest it is)
    lines = [line for line in lines if not line.startswith("server:   INFO")]
    assert lines[:6] == [
        "client: User attempted login as ann and ***  "
        "(user_attempted_login_as_username_and_password, login.csv:2)",
        "server: Received request to login as ann  (received_request_to_login_as_username, login.csv:3)",
        "server: Testing password for ann  (testing_password_for_username, login.csv:4)",
        "server: Setting session for ann  (setting_session_for_username, login.csv:5)",
        "server: Finish handling user login  (finish_handling_user_login, login.csv:6)",
        "client: Login successful  (login_successful, login.csv:7)",
    ]
    assert lines[6].startswith("flow 'login' done (6 steps); context: {")
    assert '"password":"***"' in lines[6] and '"session":"s-ann"' in lines[6]
    assert "hunter2" not in result.output
    written = (Path(name) / ".sl2s" / "logs" / "server.jsonl").read_bytes()
    steps = [json.loads(x) for x in written.splitlines()]
    assert [
        e["attributes"]["sl2s.plan"] for e in steps if e["event_name"] == "sl2s.step"
    ] == ["login.csv:3", "login.csv:4", "login.csv:5", "login.csv:6"]
    assert b"hunter2" not in written


def test_log_lines_of_steps_are_part_of_the_story(system):
    name = system("rt_abc")
    result = run("run", name, "abc", "x:=1", "key=k", "mode=ok")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2:4] == [
        "c:   WARNING c3 got 1 (key unset, limit 3)",
        "c: C3 works on 1  (c3, abc.csv:3)",
    ]


def test_json_values_and_quiet_output(system):
    name = system("rt_abc")
    result = run("run", "-q", name, "abc", "x:=[1, 2]", "key=k", "mode=ok")
    assert result.exit_code == 0, result.output
    context = json.loads(result.stdout)  # only the final context: no story
    assert context["x"] == [1, 2] and context["key"] == "***"
    assert context["trail"] == ["a1", "b2", "c3", "a4", "b5", "a6"]


def test_a_failing_step_exits_1_naming_its_plan_line_with_the_users_traceback_once(
    system,
):
    name = system("rt_login")
    result = run("run", name, "login", "username=ann", "password=not-the-password")

    assert result.exit_code == 1
    assert (
        "Testing password for ann  (testing_password_for_username, login.csv:4)  FAILED"
        in result.stdout
    )
    err = result.stderr
    assert err.count("Traceback (most recent call last):") == 1
    assert (
        'raise PermissionError(f"password {password} is wrong for {username}")' in err
    )
    assert err.rstrip().splitlines()[-1] == (
        "login.csv:4: step 'testing_password_for_username' of flow 'login' failed on machine "
        f"'server': PermissionError: password *** is wrong for ann (step function at "
        f"{name}/server/login.py:17)"
    )
    assert "not-the-password" not in result.output
    assert "sl2s/runtime" not in err


def test_a_contract_mistake_exits_1_without_a_traceback(system):
    name = system("rt_abc")
    result = run("run", name, "abc", "x:=1", "key=k", "mode=not_a_mapping")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip() == (
        "abc.csv:2: step 'b2' of flow 'abc' failed on machine 'b': sl2s.StepContractError: step "
        f"function b2 returned list; a step returns None or a mapping of field names to values "
        f"(step function at {name}/b/abc.py:10)"
    )


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["nope"], "no flow 'nope' in this system (flows: feed, login)", 1),
        (
            ["login", "colour=red"],
            "flow 'login' has no field 'colour' (its fields: username, password)",
            1,
        ),
        # a malformed argument is a usage error: click's usage message, exit 2
        (["login", "username"], "'username': expected FIELD=VALUE or FIELD:=JSON", 2),
        (["login", "username:={"], "'username:=…': the value after := is not JSON", 2),
    ],
)
def test_mistakes_exit_1_or_2_with_one_message(system, args, message, code):
    name = system("rt_login")
    result = run("run", name, *args)
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output


def test_a_directory_that_is_not_a_system_package_is_refused(tmp_path, system):
    (tmp_path / "empty").mkdir()
    result = run("run", "empty", "login")
    assert result.exit_code == 1
    assert "empty: not a generated system package" in result.stderr


def test_parse_values():
    assert parse_values(
        ["userName=ann", "n:=3", 'tags:=["a"]', "eq=a=b", 's:="x"']
    ) == {
        "user_name": "ann",
        "n": 3,
        "tags": ["a"],
        "eq": "a=b",
        "s": "x",
    }


def test_a_user_module_that_fails_to_import_shows_its_traceback_once(system):
    name = system("rt_login")
    user = Path(name) / "server" / "login.py"
    user.write_text(
        user.read_text() + "\nraise ImportError('no such database driver')\n"
    )
    result = run("run", name, "login", "username=ann")
    assert result.exit_code == 1
    err = result.stderr
    assert err.count("Traceback (most recent call last):") == 1
    assert f"{name}/server/login.py" in err and "importlib" not in err
    assert err.rstrip().splitlines()[-1] == (
        f"sl2s: {name}: importing the system failed: no such database driver"
    )
