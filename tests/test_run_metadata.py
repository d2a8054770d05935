"""Run metadata (who started a flow run, and why) and child runs (a flow run started by a step of
another): on every event of the run, on every machine, over the local and the HTTP transport, and
from `sl2s run --actor/--ticket/--reason/--meta`."""

from __future__ import annotations

import getpass
import importlib
import itertools
import shutil
import sys
from pathlib import Path

import pytest
from eventlog import written
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.runtime import WiringError, run_metadata
from sl2s.runtime.core import events
from sl2s.runtime.transport.http import protocol as p

TREE = Path(__file__).resolve().parent / "data" / "runtime_tree"
_names = itertools.count()

CHILD_FEED = '''
"""Steps of flow 'login' that run on machine 'client' (this one starts a feed inside a step)."""

from sl2s.runtime import step


@step("login", "User attempted login as :username and #password")
def user_attempted_login_as_username_and_password(username, password):
    return None


@step("login", "Login successful")
def login_successful(session):
    from .. import client

    client.feed()  # a flow run started by a step: the child of this one
    return {"greeting": f"welcome back ({session})"}
'''


@pytest.fixture
def system(tmp_path, monkeypatch):
    """A copy of tests/data/runtime_tree/rt_login under a package name new to this process."""
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    monkeypatch.setenv("SL2S_STORE", "none")
    monkeypatch.chdir(tmp_path)
    name = f"rt_login_meta{next(_names)}"
    shutil.copytree(TREE / "rt_login", tmp_path / name)
    (tmp_path / name / "client" / "login.py").write_text(CHILD_FEED)
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, tmp_path / "logs"
    events.close_all()
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def runs_of(evts: list[dict]) -> dict[str, list[dict]]:
    by_run: dict[str, list[dict]] = {}
    for evt in evts:
        by_run.setdefault(evt["attributes"]["sl2s.correlation_id"], []).append(evt)
    return by_run


def test_every_event_of_the_run_and_of_its_child_carries_the_metadata(system):
    name, logs = system
    client = importlib.import_module(f"{name}.client")
    with run_metadata(actor="bob", ticket="JIRA-12", reason="refund for ann"):
        client.login(username="ann", password="hunter2")
    events.flush_all()
    by_run = runs_of(written(logs))
    assert len(by_run) == 2
    (login_run,) = [
        r for r in by_run.values() if r[0]["attributes"]["sl2s.flow"] == "login"
    ]
    (feed_run,) = [
        r for r in by_run.values() if r[0]["attributes"]["sl2s.flow"] == "feed"
    ]
    machines = {e["attributes"]["sl2s.machine"] for e in login_run + feed_run}
    assert machines == {"client", "server"}  # both crossed a hop
    for evt in login_run + feed_run:
        assert evt["attributes"]["sl2s.run_meta"] == {
            "actor": "bob",
            "ticket": "JIRA-12",
            "reason": "refund for ann",
        }
    login_cid = login_run[0]["attributes"]["sl2s.correlation_id"]
    for evt in feed_run:  # the child names its parent run and step, on both machines
        assert evt["attributes"]["sl2s.parent_correlation_id"] == login_cid
        assert evt["attributes"]["sl2s.parent_step"] == "login_successful"
        assert evt["trace_id"] == login_run[0]["trace_id"]  # one trace
    assert not any("sl2s.parent_step" in e["attributes"] for e in login_run)


def test_a_run_without_metadata_writes_none(system):
    name, logs = system
    importlib.import_module(f"{name}.client").feed()
    events.flush_all()
    evt, *_ = written(logs)
    assert "sl2s.run_meta" not in evt["attributes"]
    assert "sl2s.parent_correlation_id" not in evt["attributes"]


def test_a_secret_typed_into_the_metadata_is_masked(system):
    name, logs = system
    client = importlib.import_module(f"{name}.client")
    with run_metadata(actor="bob", reason="ann said her password is hunter2"):
        client.login(username="ann", password="hunter2")
    events.flush_all()
    text = "".join(p.read_text() for p in logs.glob("*.jsonl"))
    assert "hunter2" not in text
    assert "ann said her password is ***" in text


def test_nested_blocks_merge_and_none_removes_a_name():
    with run_metadata(actor="bob", ticket="T-1") as outer:
        assert outer == {"actor": "bob", "ticket": "T-1"}
        with run_metadata(ticket=None, reason="why") as inner:
            assert inner == {"actor": "bob", "reason": "why"}


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"bad name": "x"}, "is not an identifier"),
        ({"actor": 3}, "values are strings"),
        ({"reason": "x" * 1025}, "at most 1024"),
        ({f"k{i}": "v" for i in range(17)}, "at most 16"),
    ],
)
def test_bad_metadata_is_refused(meta, message):
    with pytest.raises(WiringError, match=message):
        with run_metadata(**meta):
            pass


@pytest.mark.parametrize(
    "member, value, message",
    [
        ("meta", [], "'meta' is a list"),
        ("meta", {"a b": "x"}, "not an identifier"),
        ("meta", {"actor": 1}, "not a string"),
        ("meta", {"r": "x" * 1025}, "at most 1024"),
        ("parent", {"correlation_id": "x"}, "'parent' must be"),
        ("parent", {"correlation_id": "a/b", "step": "s"}, "'parent' must be"),
    ],
)
def test_the_hop_server_refuses_bad_metadata_members(member, value, message):
    envelope = {
        "v": 1,
        "system": "s",
        "flow": "f",
        "source": "a",
        "target": "b",
        "at": "x",
        "resume_at": None,
        "fields": {},
        "secrets": [],
        "correlation_id": "c1",
        "stack": ["a"],
        member: value,
    }
    with pytest.raises(p.Rejection, match=message):
        p.check_request(envelope, "f", "x")
    envelope[member] = None
    p.check_request(envelope, "f", "x")  # null: none


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_sl2s_run_records_actor_ticket_reason_and_more(system):
    name, logs = system
    result = cli(
        "run", name, "feed", "--actor", "bob", "--ticket", "JIRA-12",
        "--reason", "support call", "--meta", "tenant=1234",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    evts = written(logs)
    assert evts and all(
        e["attributes"]["sl2s.run_meta"]
        == {
            "actor": "bob",
            "ticket": "JIRA-12",
            "reason": "support call",
            "tenant": "1234",
        }
        for e in evts
    )


def test_sl2s_run_records_the_users_name_when_no_actor_is_given(system):
    name, logs = system
    result = cli("run", name, "feed")
    assert result.exit_code == 0, result.output
    assert {e["attributes"]["sl2s.run_meta"]["actor"] for e in written(logs)} == {
        getpass.getuser()
    }


def test_sl2s_run_refuses_bad_metadata_with_one_line(system):
    name, _ = system
    result = cli("run", name, "feed", "--meta", "no-equals")
    assert result.exit_code == 1
    assert "--meta 'no-equals': expected NAME=VALUE" in result.output
    assert "Traceback" not in result.output


def test_a_step_that_gets_an_unset_secret_is_told_why_and_what_fixes_it(system):
    """The server's step takes `password`, but the client's wiring no longer routes it there (the
    plan changed and nobody ran `sl2s generate`): one message naming the field, the machine and
    the fix, never only the sentinel's AttributeError."""
    name, logs = system
    wiring = Path(name) / "client" / "_wiring.py"
    wiring.write_text(wiring.read_text().replace('secrets=("password",)', "secrets=()"))
    server = Path(name) / "server" / "login.py"
    server.write_text(
        server.read_text().replace(
            "    if PASSWORDS.get(username) != password:",
            "    password.encode()\n    if PASSWORDS.get(username) != password:",
        )
    )
    result = cli("run", name, "login", "username=ann", "password=hunter2")
    assert result.exit_code == 1
    assert (
        "AttributeError: '_Unset' object has no attribute 'encode' (field 'password' was not "
        "set when step 'testing_password_for_username' ran on machine 'server': it is a secret, "
        "and a secret reaches only the machines whose wiring passes it on; run `sl2s generate` "
        "so that the wiring routes 'password' to the steps that take it)"
    ) in " ".join(result.output.split())
    assert "hunter2" not in result.output
