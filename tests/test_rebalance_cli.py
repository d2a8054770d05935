"""`sl2s rebalance` end to end: a generated system, user code in it, a plan edit, the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sl2s.cli import app

PLAN = (
    "Request\tLog\tMachine\n"
    "login\tUser attempted login as :username\tclient\n"
    "login\tReceived request to login as :username\tserver\n"
    "login\tTesting password for :username\tserver\n"
    "login\tSetting session for :username\tserver\n"
    "login\tLogin successful\tclient\n"
)

SERVER_CODE = """
import hashlib

from sl2s.runtime import step


def shared(username):
    return username.strip().lower()


@step("login", "Received request to login as :username")
def received(username):
    return {"username": shared(username)}


SALT = "pepper"


def _hash(text):
    # salted sha256
    return hashlib.sha256((SALT + text).encode()).hexdigest()[:8]


# The password check.
@step("login", "Testing password for :username")
def testing(username):
    return {"token": _hash(shared(username))}


@step("login", "Setting session for :username")
def setting(username, token):
    return {"session": token + "-" + shared(username)}
"""


def sl2s(*args: str, cwd: Path):
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        os.chdir(here)


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sl2s" not in p.parts and "__pycache__" not in p.parts
    }


def make_project(
    tmp_path: Path, plan: str = PLAN, server_code: str = SERVER_CODE
) -> Path:
    (tmp_path / "plan.csv").write_text(plan, encoding="utf-8")
    result = sl2s("generate", "plan.csv", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    module = tmp_path / "services" / "server" / "login.py"
    docstring = module.read_text(encoding="utf-8").split('"""\n', 1)[0] + '"""\n'
    module.write_text(docstring + server_code, encoding="utf-8")
    assert sl2s("generate", "plan.csv", cwd=tmp_path).exit_code == 0
    git("init", "-q", ".", cwd=tmp_path)
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "init", cwd=tmp_path)
    return tmp_path


def run_flow(root: Path) -> list[str]:
    """`sl2s run services login` in a fresh interpreter; lines without the machine names."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sl2s.cli import main; main()",
            "run",
            "services",
            "login",
            "username=Ann ",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [
        line.split(": ", 1)[-1]
        for line in done.stdout.splitlines()
        if not line.startswith("events:")
    ]


def test_dry_run_prints_the_diff_and_summary_and_writes_nothing(tmp_path):
    root = make_project(tmp_path)
    (root / "plan.csv").write_text(
        PLAN.replace("password for :username\tserver", "password for :username\tauth")
    )
    before = snapshot(root / "services")
    result = sl2s("rebalance", "plan.csv", "--dry-run", cwd=root)
    assert result.exit_code == 0, result.output
    assert snapshot(root / "services") == before
    out = result.output
    assert "+++ b/services/auth/login.py" in out
    assert '-@step("login", "Testing password for :username")' in out
    assert (
        "moved login/testing_password_for_username: testing() services/server/login.py -> services/auth/login.py"
        in out
    )
    assert "carried helpers: SALT, _hash" in out
    assert "carried imports: import hashlib" in out
    # a helper steps on both machines use goes to the shared module, which both import
    assert (
        "shared: shared moved to services/_shared/login.py (used on both machines); "
        "services/server/login.py imports it: from .._shared.login import shared" in out
    )
    assert "new cross-machine imports" not in out
    assert "new machine 'auth'" in out


def test_rebalance_moves_code_regenerates_wiring_and_the_flow_runs_the_same(tmp_path):
    root = make_project(tmp_path)
    ran_before = run_flow(root)
    (root / "plan.csv").write_text(
        PLAN.replace("password for :username\tserver", "password for :username\tauth")
    )
    result = sl2s("rebalance", "plan.csv", cwd=root)
    assert result.exit_code == 0, result.output
    auth = (root / "services" / "auth" / "login.py").read_text()
    server = (root / "services" / "server" / "login.py").read_text()
    assert "def testing(username):" in auth and "def testing" not in server
    assert "def _hash" in auth and "def _hash" not in server
    assert "from .._shared.login import shared" in auth
    assert "from .._shared.login import shared" in server
    assert "def shared" in (root / "services" / "_shared" / "login.py").read_text()
    assert "..server" not in auth  # no machine's module imports another machine's
    assert (
        'run.call(\n        "auth"'
        in (root / "services" / "server" / "_wiring.py").read_text()
    )
    assert not (root / "services" / ".sl2s-journal.json").exists()
    assert run_flow(root) == ran_before
    # the generator agrees the tree is up to date
    assert sl2s("generate", "plan.csv", "--check", cwd=root).exit_code == 0
    # and moving it back restores the user modules byte for byte
    git("add", ".", cwd=root)
    git("commit", "-qm", "moved", cwd=root)
    (root / "plan.csv").write_text(PLAN)
    assert sl2s("rebalance", "plan.csv", cwd=root).exit_code == 0
    assert (root / "services" / "server" / "login.py").read_text() == git(
        "show", "HEAD~1:services/server/login.py", cwd=root
    )


def test_renamed_log_line_updates_the_decorator_in_place(tmp_path):
    root = make_project(tmp_path)
    (root / "plan.csv").write_text(
        PLAN.replace("Setting session for", "Storing the session of")
    )
    result = sl2s("rebalance", "plan.csv", cwd=root)
    assert result.exit_code == 0, result.output
    server = (root / "services" / "server" / "login.py").read_text()
    assert (
        '@step("login", "Storing the session of :username")\ndef setting(username, token):'
        in server
    )
    assert (
        "renamed login/setting_session_for_username -> storing_the_session_of_username"
        in result.output
    )
    assert "warning" not in result.output  # no orphan, no new stub


def test_dirty_tree_is_refused_unless_allowed(tmp_path):
    root = make_project(tmp_path)
    (root / "plan.csv").write_text(
        PLAN.replace("password for :username\tserver", "password for :username\tauth")
    )
    module = root / "services" / "server" / "login.py"
    module.write_text(module.read_text() + "\n# work in progress\n")
    before = snapshot(root / "services")
    result = sl2s("rebalance", "plan.csv", cwd=root)
    assert result.exit_code == 1
    assert snapshot(root / "services") == before
    assert sl2s("rebalance", "plan.csv", "--allow-dirty", cwd=root).exit_code == 0
    assert (root / "services" / "auth" / "login.py").exists()


def test_unsafe_move_writes_nothing_and_names_the_place(tmp_path):
    code = SERVER_CODE.replace(
        "def testing(username):\n", "def testing(username):\n    global SALT\n"
    )
    root = make_project(tmp_path, server_code=code)
    (root / "plan.csv").write_text(
        PLAN.replace("password for :username\tserver", "password for :username\tauth")
    )
    before = snapshot(root / "services")
    result = sl2s("rebalance", "plan.csv", cwd=root)
    assert result.exit_code == 1
    assert snapshot(root / "services") == before
    assert isinstance(result.exception, Exception)
    assert "services/server/login.py:" in str(result.exception)
    assert "needs a manual move" in str(result.exception)


def test_force_partial_applies_the_safe_moves(tmp_path):
    code = SERVER_CODE.replace(
        "def testing(username):\n", "def testing(username):\n    global SALT\n"
    )
    root = make_project(tmp_path, server_code=code)
    plan = PLAN.replace(
        "password for :username\tserver", "password for :username\tauth"
    )
    plan = plan.replace(
        "Received request to login as :username\tserver",
        "Received request to login as :username\tgate",
    )
    (root / "plan.csv").write_text(plan)
    result = sl2s("rebalance", "plan.csv", "--force-partial", cwd=root)
    assert result.exit_code == 0, result.output
    assert "not moved: services/server/login.py:" in result.output
    assert "def received" in (root / "services" / "gate" / "login.py").read_text()
    assert "def testing" in (root / "services" / "server" / "login.py").read_text()


def test_same_id_with_a_new_text_updates_template_and_keeps_id(tmp_path):
    plan = (
        "Request\tLog\tMachine\tId\n"
        "login\tUser attempted login as :username\tclient\t\n"
        "login\tReceived request to login as :username\tserver\t\n"
        "login\tTesting password for :username\tserver\tcheck_pw\n"
        "login\tLogin successful\tclient\t\n"
    )
    (tmp_path / "plan.csv").write_text(plan)
    assert sl2s("generate", "plan.csv", cwd=tmp_path).exit_code == 0
    git("init", "-q", ".", cwd=tmp_path)
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "init", cwd=tmp_path)
    (tmp_path / "plan.csv").write_text(
        plan.replace(
            "Testing password for :username\tserver",
            "Verifying the password of :username\tserver",
        ).replace(
            "login\tReceived request",
            "login\tA new first step on :username\tserver\t\nlogin\tReceived request",
        )
    )
    result = sl2s("rebalance", "plan.csv", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    server = (tmp_path / "services" / "server" / "login.py").read_text()
    assert (
        '@step("login", "Verifying the password of :username", id="check_pw")' in server
    )
    assert server.count("def check_pw") == 1
    assert "renamed login/check_pw -> check_pw" in result.output


def test_step_moved_to_another_flow_is_reported_out_of_scope(tmp_path):
    root = make_project(tmp_path)
    plan = PLAN.replace("login\tSetting session for :username\tserver\n", "") + (
        "session\tStart\tclient\nsession\tSetting session for :username\tserver\n"
    )
    (root / "plan.csv").write_text(plan)
    result = sl2s("rebalance", "plan.csv", cwd=root)
    assert result.exit_code == 0, result.output
    assert (
        "out of scope: step 'setting_session_for_username' left flow 'login' for flow 'session'"
        in result.output
    )
    assert (
        "def setting(username, token)"
        in (root / "services" / "server" / "login.py").read_text()
    )
