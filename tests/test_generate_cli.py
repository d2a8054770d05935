"""`sl2s generate` as users run it: writing the tree, --check, --diff, mtimes, file modes, invalid
plans (nothing written), orphans, removed machines, atomic writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sl2s.cli import main
from sl2s.generate.writer import write_atomic

LOGIN = (
    "Request\tLog\tMachine\n"
    "login\tUser attempted login as :username and #password\tclient\n"
    "login\tReceived request to login as :username\tserver\n"
    "login\tLogin successful\tclient\n"
)


def sl2s(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["sl2s", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.csv").write_text(LOGIN, encoding="utf-8")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_generate_writes_the_tree_and_reports(project, monkeypatch, capsys) -> None:
    code, out, err = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 0, err
    services = project / "services"
    for path in [
        "__init__.py",
        ".gitattributes",
        "sl2s.lock.json",
        "PLAN.md",
        "client/__init__.py",
        "client/_wiring.py",
        "client/login.py",
        "server/__init__.py",
        "server/_wiring.py",
        "server/login.py",
    ]:
        assert (services / path).is_file(), path
    assert '"path": "../plan.csv"' in (services / "sl2s.lock.json").read_text()
    # by default a summary: no file list, the stubs counted
    assert out == (
        "services/: 10 created, 0 updated, 0 removed, 0 unchanged\n"
        "3 new step stub(s) to fill in, in 2 file(s) (-v lists them)\n"
    )


def test_generate_verbose_lists_the_stubs(project, monkeypatch, capsys) -> None:
    code, out, err = sl2s(monkeypatch, capsys, "generate", "plan.csv", "-v")
    assert code == 0, err
    assert (
        "stub: services/server/login.py: received_request_to_login_as_username" in out
    )
    assert "10 created" in out and "-v lists them" not in out


def test_out_option_and_no_op_regenerate_keeps_mtimes(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv", "--out", "sys")[0] == 0
    before = snapshot(project / "sys")
    os.utime(
        project / "sys" / "client" / "_wiring.py", ns=(1, 1)
    )  # would show any rewrite
    before["client/_wiring.py"] = (before["client/_wiring.py"][0], 1)
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--out", "sys")
    assert code == 0 and "up to date, nothing written" in out
    after = snapshot(project / "sys")
    assert {k: v for k, v in after.items() if "/.sl2s/" not in "/" + k} == {
        k: v for k, v in before.items() if "/.sl2s/" not in "/" + k
    }


def test_check_lists_stale_files_and_exits_1_without_writing(
    project, monkeypatch, capsys
) -> None:
    code, out, err = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--check")
    assert code == 1
    assert "stale: services/client/_wiring.py (create)" in out
    assert not (project / "services").exists()
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--check")
    assert code == 0 and "up to date" in out
    (project / "plan.csv").write_text(
        LOGIN + "login\tBye :username\tclient\n", encoding="utf-8"
    )
    before = snapshot(project / "services")
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--check")
    assert code == 1
    assert "stale: services/client/_wiring.py (update)" in out
    assert "stale: services/client/login.py (update)" in out
    assert "stale: services/sl2s.lock.json (update)" in out
    assert "server/_wiring.py" not in out
    assert snapshot(project / "services") == before


def test_check_notices_a_hand_edited_generated_file(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    wiring = project / "services" / "server" / "_wiring.py"
    wiring.write_text(wiring.read_text() + "# edited\n")
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--check")
    assert code == 1 and "stale: services/server/_wiring.py (update)" in out
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    assert "# edited" not in wiring.read_text()


def test_diff_prints_a_unified_diff_and_writes_nothing(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    (project / "plan.csv").write_text(
        LOGIN + "login\tBye :username\tclient\n", encoding="utf-8"
    )
    before = snapshot(project / "services")
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--diff")
    assert code == 0
    assert "--- a/services/client/login.py\n+++ b/services/client/login.py\n" in out
    assert '+@step("login", "Bye :username")\n' in out
    assert '+    run.step("bye_username")\n' in out
    assert snapshot(project / "services") == before


def test_invalid_plan_writes_nothing_and_reports_file_line(
    project, monkeypatch, capsys
) -> None:
    (project / "plan.csv").write_text(LOGIN + "login\tOops\n", encoding="utf-8")
    code, out, err = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 1
    assert err.startswith("plan.csv:5: ")
    assert "Traceback" not in err
    assert not (project / "services").exists()


def test_broken_user_module_writes_nothing(project, monkeypatch, capsys) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    user = project / "services" / "server" / "login.py"
    user.write_text(user.read_text() + "\ndef broken(:\n")
    (project / "plan.csv").write_text(LOGIN + "login\tBye\tserver\n", encoding="utf-8")
    before = snapshot(project / "services")
    code, _, err = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 1
    assert err.startswith("services/server/login.py:")
    assert snapshot(project / "services") == before


def test_removed_step_is_reported_orphaned_and_its_function_kept(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    user = project / "services" / "server" / "login.py"
    text = user.read_text()
    (project / "plan.csv").write_text(
        LOGIN.replace(
            "login\tReceived request to login as :username\tserver\n",
            "login\tOther\tserver\n",
        ),
        encoding="utf-8",
    )
    code, out, err = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 0
    assert (
        "services/server/login.py:" in err
        and "received_request_to_login_as_username()" in err
    )
    assert "not in the plan" in err
    assert user.read_text().startswith(text)  # kept; the new stub appended after it


def test_machine_removed_from_plan_removes_its_generated_files_only(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    (project / "plan.csv").write_text("login,Hello,client\n", encoding="utf-8")
    code, out, err = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 0 and "2 removed" in out
    server = project / "services" / "server"
    assert (
        not (server / "_wiring.py").exists() and not (server / "__init__.py").exists()
    )
    assert (server / "login.py").exists()  # user-owned: kept, reported
    assert "its module is no longer imported" in err


def test_writes_keep_file_modes(project, monkeypatch, capsys) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    wiring = project / "services" / "client" / "_wiring.py"
    wiring.chmod(0o640)
    (project / "plan.csv").write_text(LOGIN + "login\tBye\tclient\n", encoding="utf-8")
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    assert "bye" in wiring.read_text()
    assert wiring.stat().st_mode & 0o777 == 0o640


def test_write_atomic_leaves_no_temporary_files_and_replaces(tmp_path) -> None:
    target = tmp_path / "d" / "f.txt"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_write_atomic_failure_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_generated_tree_is_an_importable_package_with_entry_functions(
    project, monkeypatch, capsys
) -> None:
    assert (
        sl2s(monkeypatch, capsys, "generate", "plan.csv", "--out", "gen_cli_sys")[0]
        == 0
    )
    monkeypatch.syspath_prepend(str(project))
    import importlib

    client = importlib.import_module("gen_cli_sys.client")
    try:
        assert callable(client.login)
    finally:
        for name in [
            m for m in sys.modules if m == "gen_cli_sys" or m.startswith("gen_cli_sys.")
        ]:
            del sys.modules[name]


def test_no_op_fast_path_is_not_fooled_by_edits(project, monkeypatch, capsys) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    assert "nothing written" in sl2s(monkeypatch, capsys, "generate", "plan.csv")[1]
    # a user edit that changes the wiring (a secret parameter) is seen
    user = project / "services" / "server" / "login.py"
    user.write_text(
        user.read_text().replace(
            "def received_request_to_login_as_username(username: object)",
            "def received_request_to_login_as_username(username: object, password: object)",
        )
    )
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 0 and "updated" in out and "0 updated" not in out
    assert (
        'secrets=("password",)'
        in (project / "services" / "client" / "_wiring.py").read_text()
    )
    # a deleted generated file is seen
    (project / "services" / "PLAN.md").unlink()
    code, out, _ = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 0 and "1 created" in out
    # the cache only saves work: without it the same bytes come out
    before = snapshot(project / "services")
    for path in (project / "services" / ".sl2s").rglob("*.json"):
        path.unlink()
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    after = snapshot(project / "services")
    assert {k: v for k, v in after.items() if not k.startswith(".sl2s/")} == {
        k: v for k, v in before.items() if not k.startswith(".sl2s/")
    }
    assert (project / "services" / ".sl2s" / ".gitignore").read_text().endswith("*\n")


def test_orphan_warnings_repeat_on_a_no_op_run(project, monkeypatch, capsys) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    (project / "plan.csv").write_text(
        LOGIN.replace("Login successful", "Logged in"), encoding="utf-8"
    )
    _, _, err1 = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    _, out2, err2 = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert "login_successful()" in err1 and err2 == err1 and "nothing written" in out2


def test_a_failure_before_the_renames_leaves_the_tree_as_it_was(
    project, monkeypatch, capsys
) -> None:
    from sl2s.generate import writer

    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    (project / "plan.csv").write_text(LOGIN + "login\tBye\tserver\n", encoding="utf-8")
    before = snapshot(project / "services")

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.os, "sync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        from sl2s.generate.core import generate
        from sl2s.plan import read_plan

        out = project / "services"
        generation = generate(
            read_plan("plan.csv"),
            plan_ref="../plan.csv",
            user_modules=writer.read_user_modules(out),
        )
        writer.apply(out, writer.plan_changes(out, generation))
    assert snapshot(project / "services") == before  # no change, no temporary file left


def test_user_module_that_is_not_utf8_is_reported_not_a_traceback(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    (project / "services" / "server" / "login.py").write_bytes(b"x = '\xff'\n")
    code, _, err = sl2s(monkeypatch, capsys, "generate", "plan.csv")
    assert code == 1 and err.startswith("services/server/login.py: not UTF-8")
    assert "Traceback" not in err


def test_out_that_is_a_file_is_reported_not_a_traceback(
    project, monkeypatch, capsys
) -> None:
    (project / "taken").write_text("a file")
    code, _, err = sl2s(monkeypatch, capsys, "generate", "plan.csv", "--out", "taken")
    assert code == 1 and "cannot write" in err and "Traceback" not in err


def test_same_bytes_across_processes_with_different_hash_seeds(tmp_path) -> None:
    import subprocess

    shop = Path(__file__).resolve().parent.parent / "sample_plans" / "shop.csv"
    (tmp_path / "shop.csv").write_bytes(shop.read_bytes())
    trees = []
    for seed in ("1", "2"):
        out = f"out{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from sl2s.cli import main; main()",
                "generate",
                "shop.csv",
                "--out",
                out,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        trees.append(
            {
                k: v[0]
                for k, v in snapshot(tmp_path / out).items()
                if not k.startswith(".sl2s/")
            }
        )
    assert trees[0] == trees[1] and len(trees[0]) > 20


def test_crlf_user_module_keeps_every_byte_when_a_stub_is_appended(
    project, monkeypatch, capsys
) -> None:
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    user = project / "services" / "server" / "login.py"
    crlf = user.read_bytes().replace(b"\n", b"\r\n") + b"# mine\r\n"
    user.write_bytes(crlf)
    (project / "plan.csv").write_text(LOGIN + "login\tBye\tserver\n", encoding="utf-8")
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    after = user.read_bytes()
    assert after.startswith(crlf)
    assert b'@step("login", "Bye")\r\n' in after and b"\n" not in after.replace(
        b"\r\n", b""
    )
