"""Generated code passes strict checkers: mypy --strict, pyright's strict mode and
`ruff check --select E,F,W,B,UP,I`, with 0 findings, on every generated file of every sample plan
(fresh stubs included) and on a tree whose user code is annotated. Types flow from user code into
the entry functions; two annotations of one field that disagree are a FILE:LINE error.

The checkers run as the real tools, in subprocesses, against sl2s as this environment installed it
(the README's editable install: a plain path entry that mypy and pyright follow).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLANS = sorted((ROOT / "sample_plans").glob("*.csv"))

TYPED_SERVER = '''"""Steps of flow 'login' on the server, annotated."""

from typing import TypedDict

from sl2s.api import step


class Session(TypedDict):
    session: str
    attempts: int


@step("login", "Received request to login as :username")
def received(username: str) -> None:
    return None


@step("login", "Testing password for :username")
def testing(username: str, password: str) -> None:
    if password != "hunter2":
        raise PermissionError(f"wrong password for {username}")


@step("login", "Setting session for :username")
def setting(username: str) -> Session:
    return {"session": f"s-{username}", "attempts": 1}


@step("login", "Finish handling user login")
def finish_handling_user_login() -> None:
    return None
'''

CALLER = '''"""A caller of the generated system: its type checker sees the flow's contract."""

from sys_login.client import login


def session_of(name: str) -> str:
    context = login(username=name, password="hunter2")
    return context.get("session", "")  # every field is optional (total=False)
'''


def sl2s(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "sl2s"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def checkers(
    cwd: Path, targets: list[str]
) -> dict[str, subprocess.CompletedProcess[str]]:
    (cwd / "pyrightconfig.json").write_text(
        json.dumps({"typeCheckingMode": "strict", "pythonVersion": "3.10"})
    )
    run = {
        "mypy": [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            *targets,
        ],
        "pyright": [
            sys.executable,
            "-m",
            "pyright",
            "--pythonpath",
            sys.executable,
            *targets,
        ],
        "ruff": [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--select",
            "E,F,W,B,UP,I",
            *targets,
        ],
    }
    return {
        name: subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, check=False
        )
        for name, command in run.items()
    }


def assert_clean(results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for name, done in results.items():
        assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}"
    assert "Success: no issues found" in results["mypy"].stdout
    assert "0 errors, 0 warnings, 0 informations" in results["pyright"].stdout
    assert "All checks passed!" in results["ruff"].stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sample plan generated (fresh stubs), and the login plan with annotated user code."""
    base = tmp_path_factory.mktemp("typed")
    for plan in PLANS:
        shutil.copy(plan, base / plan.name)
        done = sl2s("generate", plan.name, "--out", f"sys_{plan.stem}", cwd=base)
        assert done.returncode == 0, done.stderr
    typed = base / "typed"
    typed.mkdir()
    shutil.copy(ROOT / "sample_plans" / "login.csv", typed / "login.csv")
    assert (
        sl2s("generate", "login.csv", "--out", "sys_login", cwd=typed).returncode == 0
    )
    (typed / "sys_login" / "server" / "login.py").write_text(TYPED_SERVER)
    done = sl2s("generate", "login.csv", "--out", "sys_login", cwd=typed)
    assert done.returncode == 0, done.stderr
    (typed / "caller.py").write_text(CALLER)
    return base


def test_every_generated_file_of_every_sample_plan_passes_the_strict_checkers(
    project: Path,
) -> None:
    targets = [f"sys_{plan.stem}" for plan in PLANS]
    files = [p for t in targets for p in (project / t).rglob("*.py")]
    assert len(files) > 40  # the three sample plans: packages, wirings and fresh stubs
    assert_clean(checkers(project, targets))


def test_types_of_annotated_steps_reach_the_entry_function_and_its_callers(
    project: Path,
) -> None:
    typed = project / "typed"
    wiring = (typed / "sys_login" / "client" / "_wiring.py").read_text()
    assert (
        "def login(\n    *, username: str | Unset = UNSET, password: str | Unset = UNSET\n"
        ") -> LoginContext:" in wiring
    )
    # the context: the plan's fields, then a field only the step's declared result names
    context = wiring[wiring.index("class LoginContext") : wiring.index("class Feed")]
    assert context.split('"""')[-1].split() == [
        "username:",
        "str",
        "password:",
        "str",
        "attempts:",
        "int",
        "session:",
        "str",
    ]
    # stubs appended later take the type the flow's other steps give the field
    assert_clean(checkers(typed, ["sys_login", "caller.py"]))
    # a caller that gets the contract wrong is told so by its checker
    (typed / "wrong.py").write_text(
        CALLER.replace('password="hunter2"', "password=42").replace(
            "def session_of", "def wrong"
        )
    )
    results = checkers(typed, ["wrong.py"])
    assert results["mypy"].returncode == 1
    assert 'Argument "password" to "login" has incompatible type "int"' in (
        results["mypy"].stdout
    )
    assert results["pyright"].returncode == 1


def test_two_annotations_of_one_field_are_a_file_line_error(tmp_path: Path) -> None:
    shutil.copy(ROOT / "sample_plans" / "login.csv", tmp_path / "login.csv")
    assert sl2s("generate", "login.csv", cwd=tmp_path).returncode == 0
    server = tmp_path / "services" / "server" / "login.py"
    server.write_text(
        TYPED_SERVER.replace(
            "def received(username: str)", "def received(username: bytes)"
        )
    )
    before = {p: p.read_bytes() for p in (tmp_path / "services").rglob("*.py")}
    done = sl2s("generate", "login.csv", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    line = TYPED_SERVER.splitlines().index(
        "def testing(username: str, password: str) -> None:"
    )
    assert done.stderr.splitlines()[0] == (
        f"services/server/login.py:{line + 1}: field 'username' of flow 'login' is "
        "annotated 'str' here and 'bytes' at services/server/login.py:14; "
        "one field has one type"
    )
    # nothing written
    assert {p: p.read_bytes() for p in (tmp_path / "services").rglob("*.py")} == before
