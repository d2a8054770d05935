"""`sl2s up` and `sl2s run` accept the same trees (a directory name that is a Python identifier:
the hop protocol names the system; both refuse `my-services` with the same message), and
`sl2s incidents --url` reads a machine `sl2s up` serves with what `up` wrote —
its `.sl2s/hop.key`, found through its `.sl2s/up.toml` from the project directory or the tree
itself, or named by `--dir` — or says exactly what to add. Real `sl2s up` processes on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import base_env, sl2s, start_up, stop  # noqa: E402

from sl2s.observe.remote_keys import read_keys, up_tree_serving  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAILING_STEP = """

@step("login", "Testing password for :username")
def testing_password_for_username(username, password):
    if password != "hunter2":
        raise PermissionError(f"wrong password for {username}")
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uptrees")
    env = base_env()
    done = sl2s("generate", str(ROOT / "sample_plans" / "login.csv"), "--out", "services",
                cwd=root, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    module = root / "services" / "server" / "login.py"
    text = module.read_text(encoding="utf-8")
    start = text.index('@step("login", "Testing password for :username")')
    end = text.index("@step", start + 1)
    module.write_text(
        text[:start] + FAILING_STEP.lstrip("\n") + "\n\n" + text[end:], "utf-8"
    )
    done = sl2s(
        "generate",
        str(ROOT / "sample_plans" / "login.csv"),
        "--out",
        "services",
        cwd=root,
        env=env,
    )  # fmt: skip  (the password now reaches the server)
    assert done.returncode == 0, done.stderr
    return root


def test_run_and_up_refuse_the_same_trees_alike(tmp_path):
    env = base_env()
    made = sl2s("generate", str(ROOT / "sample_plans" / "login.csv"), "--out", "my-services",
                cwd=tmp_path, env=env)  # fmt: skip
    assert made.returncode == 0
    assert (
        "warning: my-services: `sl2s run` and `sl2s up` need a directory name"
        in made.stderr
    )
    said = "my-services: not a generated system package (needs __init__.py and a directory " \
        "name that is a Python identifier)\n"  # fmt: skip
    run = sl2s("run", "my-services", "feed", cwd=tmp_path, env=env)
    up = sl2s("up", "my-services", cwd=tmp_path, env=env)
    serve = sl2s("serve", "my-services", "server", cwd=tmp_path, env=env)
    for done in (run, up, serve):
        assert done.returncode == 1 and done.stderr.endswith(said), done.stderr
        assert "Traceback" not in done.stderr
    (tmp_path / "my-services").rename(tmp_path / "my_services")
    assert sl2s("run", "my_services", "feed", cwd=tmp_path, env=env).returncode == 0


def test_run_names_a_file_given_as_the_tree(project):
    done = sl2s(
        "run", str(ROOT / "sample_plans" / "login.csv"), "login", env=base_env()
    )
    assert done.returncode == 1
    assert "login.csv: is a file; name the generated tree" in done.stderr
    assert "no such directory" not in done.stderr


def test_up_serves_it_and_incidents_url_uses_the_key_up_wrote(project, tmp_path):
    env = (
        base_env()
    )  # no SL2S_HOP_KEY: `up` writes a fresh key to services/.sl2s/hop.key
    up, urls = start_up(project / "services", env)
    try:
        url = urls["server"]
        assert (project / "services" / ".sl2s" / "hop.key").is_file()
        ok = sl2s("run", "services", "login", "username=ann", "password=hunter2", "--remote",
                  cwd=project, env=env, timeout=90)  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        assert "flow 'login' done (6 steps)" in ok.stdout
        bad = sl2s("run", "services", "login", "username=ann", "password=nope", "--remote",
                   cwd=project, env=env, timeout=90)  # fmt: skip
        assert (
            bad.returncode == 1
            and "PermissionError: wrong password for ann" in bad.stderr
        )

        # from the project: the tree whose up.toml lists the URL is found
        listed = sl2s("incidents", "list", "--url", url, cwd=project, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "PermissionError: wrong password for ann" in listed.stdout
        # from the tree itself, and with --dir from anywhere
        inside = sl2s(
            "incidents", "errors", "--url", url, cwd=project / "services", env=env
        )
        assert (
            inside.returncode == 0 and "PermissionError" in inside.stdout
        ), inside.stderr
        named = sl2s("incidents", "list", "--url", url, "--dir", str(project / "services"),
                     cwd=tmp_path, env=env)  # fmt: skip
        assert named.returncode == 0 and named.stdout == listed.stdout, named.stderr
        # elsewhere, without a key: the refusal says what to add
        lost = sl2s("incidents", "list", "--url", url, cwd=tmp_path, env=env)
        assert lost.returncode == 1 and "Traceback" not in lost.stderr
        assert "refused (401" in lost.stderr and "--dir DIR" in lost.stderr
        assert "SL2S_HOP_KEY" in lost.stderr
    finally:
        stop(up)


def test_up_tree_serving_matches_the_address_not_the_directory(tmp_path):
    tree = tmp_path / "svc"
    (tree / ".sl2s").mkdir(parents=True)
    (tree / ".sl2s" / "up.toml").write_text(
        '[machines]\nserver = "http://127.0.0.1:45249"\n', encoding="utf-8"
    )
    (tree / ".sl2s" / "hop.key").write_text("k" * 32 + "\n", encoding="utf-8")
    assert (
        up_tree_serving(["http://localhost:45249/sl2s/v1/incidents"], tmp_path) == tree
    )
    assert up_tree_serving(["http://127.0.0.1:45250"], tmp_path) is None
    assert read_keys(["http://127.0.0.1:45249"], None, {}, str(tmp_path)) == (
        b"k" * 32,
    )
    assert read_keys(["http://127.0.0.1:45250"], None, {}, str(tmp_path)) == ()
    env = {"SL2S_HOP_KEY": "e" * 32}
    assert read_keys(["http://127.0.0.1:45249"], None, env, str(tmp_path)) == (
        b"e" * 32,
    )
