"""sl2s.runtime on hand-written generated trees (tests/data/runtime_tree, per docs/architecture.md):
the login sample plan (machines client, server) and the A1 B2 C3 A4 B5 A6 stack example.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest
from eventlog import causal_chain, written

from sl2s.runtime import (
    UNSET,
    HopRequest,
    StepFailed,
    WiringError,
    hooks,
    load_machine,
    step,
)
from sl2s.runtime.core import events
from sl2s.runtime.errors import failure_from_dict

TREE = Path(__file__).resolve().parent / "data" / "runtime_tree"
LOGIN_ORDER = [
    ("client", "user_attempted_login_as_username_and_password", "login.csv:2"),
    ("server", "received_request_to_login_as_username", "login.csv:3"),
    ("server", "testing_password_for_username", "login.csv:4"),
    ("server", "setting_session_for_username", "login.csv:5"),
    ("server", "finish_handling_user_login", "login.csv:6"),
    ("client", "login_successful", "login.csv:7"),
]
ABC_ORDER = [
    ("a", "a1"),
    ("b", "b2"),
    ("c", "c3"),
    ("a", "a4"),
    ("b", "b5"),
    ("a", "a6"),
]


@pytest.fixture
def logs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TREE))
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    monkeypatch.delenv("SL2S_SECRETS", raising=False)
    yield tmp_path / "logs"
    events.close_all()


def steps_of(chain: list[dict]) -> list[tuple[str, str]]:
    return [
        (e["attributes"]["sl2s.machine"], e["attributes"]["sl2s.step"])
        for e in chain
        if e["event_name"] == "sl2s.step"
    ]


def test_login_flow_writes_one_event_per_step_in_plan_order(logs):
    import rt_login.client

    result = rt_login.client.login(username="ann", password="hunter2")

    assert result["greeting"] == "welcome back (s-ann)"
    evts = written(logs)
    chain = causal_chain(evts)
    assert [
        (
            e["resource"]["service.name"],
            e["attributes"]["sl2s.step"],
            e["attributes"]["sl2s.plan"],
        )
        for e in chain
    ] == LOGIN_ORDER
    assert {e["attributes"]["sl2s.correlation_id"] for e in evts} == {
        chain[0]["attributes"]["sl2s.correlation_id"]
    }
    assert chain[0]["attributes"]["sl2s.causation_id"] is None
    for before, after in zip(chain, chain[1:]):
        assert (
            after["attributes"]["sl2s.causation_id"]
            == before["attributes"]["sl2s.event_id"]
        )
    # one trace per flow run, one span per machine activation
    assert len({e["trace_id"] for e in evts}) == 1 and len(chain[0]["trace_id"]) == 32
    spans = {e["attributes"]["sl2s.machine"]: e["span_id"] for e in chain}
    assert spans["client"] != spans["server"] and all(
        len(s) == 16 for s in spans.values()
    )
    first = chain[0]
    assert first["body"] == "User attempted login as ann and ***"
    assert first["severity_text"] == "INFO" and first["severity_number"] == 9
    assert first["event_name"] == "sl2s.step"
    assert (
        first["attributes"]["sl2s.template"]
        == "User attempted login as :username and #password"
    )
    assert first["attributes"]["sl2s.fields"] == {"username": "ann", "password": "***"}
    assert first["attributes"]["sl2s.unset"] == []
    assert first["timestamp"].endswith("Z") and first["timestamp"][10] == "T"
    testing = chain[2]["attributes"]
    assert testing["code.filepath"] == "rt_login/server/login.py"
    source = (TREE / "rt_login/server/login.py").read_text().splitlines()
    assert source[testing["code.lineno"] - 1].startswith(
        '@step("login", "Testing password'
    )
    assert testing["code.function"] == "testing_password_for_username"


def test_stack_example_returns_up_the_stack_and_resumes_in_plan_order(logs):
    import rt_abc.a

    result = rt_abc.a.abc(x=1, key="sekrit", mode="ok")

    assert result["trail"] == ["a1", "b2", "c3", "a4", "b5", "a6"]
    chain = causal_chain(written(logs))
    assert steps_of(chain) == ABC_ORDER
    assert [
        e["attributes"].get("sl2s.plan")
        for e in chain
        if e["event_name"] == "sl2s.step"
    ] == [f"abc.csv:{n}" for n in range(1, 7)]
    # b has two activations (at b2 and at b5): two spans
    b_spans = {e["span_id"] for e in chain if e["attributes"]["sl2s.machine"] == "b"}
    assert len(b_spans) == 2


def test_context_crosses_hops_as_json_and_only_listed_secrets_travel(logs):
    import rt_abc.a

    seen: list[dict] = []
    listener = hooks.subscribe(lambda evt: seen.append(evt))
    try:
        result = rt_abc.a.abc(x=(1, 2), key="sekrit", mode="rotate_key")
    finally:
        hooks.unsubscribe(listener)

    # c is never sent the secret (its wiring lists no secrets): its event shows no `key` at all
    c3 = next(
        e
        for e in seen
        if e["attributes"].get("sl2s.step") == "c3" and e["event_name"] == "sl2s.step"
    )
    assert "key" not in c3["attributes"]["sl2s.fields"]
    # b changed the secret and returned it (secrets=("key",)): a sees the new value
    assert result["key"] == "sekrit-rotated"
    # the tuple crossed a hop as JSON and came back as a list, as it would over HTTP
    assert result["x"] == [1, 2]


def test_missing_fields_arrive_as_unset_or_the_parameter_default_and_show_as_unset(
    logs, caplog
):
    import rt_abc.a
    import rt_login.client

    with pytest.raises(StepFailed):
        rt_login.client.login(username="ann")  # no password: the server's check fails
    first = causal_chain(written(logs))[0]
    assert first["body"] == "User attempted login as ann and <unset:password>"
    assert first["attributes"]["sl2s.unset"] == ["password"]
    assert "password" not in first["attributes"]["sl2s.fields"]

    rt_abc.a.abc(x=1, key="k", mode="ok")
    log_event = next(e for e in written(logs) if e["event_name"] == "sl2s.log")
    # c3(x, trail, key, mode, limit=3): `key` never reaches c -> UNSET; `limit` -> its default
    assert log_event["body"] == "c3 got 1 (key unset, limit 3)"
    assert UNSET is not None and not UNSET and repr(UNSET) == "UNSET"


def test_secrets_are_never_written_in_clear(logs):
    import rt_abc.a
    import rt_login.client

    server_log = logging.getLogger("rt_login.server.login")
    server_log.setLevel(logging.DEBUG)
    try:
        rt_login.client.login(username="ann", password="hunter2")
        rt_abc.a.abc(x=1, key="sekrit-value", mode="rotate_key")
        with pytest.raises(StepFailed) as failed:
            rt_login.client.login(username="ann", password="wrong-pw-123")
    finally:
        server_log.setLevel(logging.NOTSET)
    events.flush_all()

    raw = b"".join(p.read_bytes() for p in logs.glob("*.jsonl"))
    assert raw.count(b"\n") >= 17
    for secret in (b"hunter2", b"sekrit-value", b"wrong-pw-123"):
        assert secret not in raw
    # the user's exception message held the password: scrubbed in the event, the error, the traceback
    failure = failed.value
    assert failure.exc_message == "password *** is wrong for ann"
    assert (
        "wrong-pw-123" not in str(failure) and "wrong-pw-123" not in failure.traceback
    )
    error_event = next(e for e in written(logs) if e["severity_text"] == "ERROR")
    assert (
        error_event["attributes"]["exception.message"]
        == "password *** is wrong for ann"
    )
    debug = [e["body"] for e in written(logs) if e["severity_text"] == "DEBUG"]
    assert debug == ["checking password *** of ann"] * 2


def test_a_secret_value_copied_into_a_plain_field_is_masked_there_too(logs):
    import rt_abc.a

    result = rt_abc.a.abc(x=1, key="sekrit-value", mode="copy_secret")
    assert (
        result["note"] == "the key is sekrit-value"
    )  # the context on a, b is untouched
    raw = b"".join(p.read_bytes() for p in logs.glob("*.jsonl"))
    assert b"sekrit-value" not in raw
    b2 = next(e for e in written(logs) if e["attributes"].get("sl2s.step") == "b2")
    assert b2["attributes"]["sl2s.fields"]["note"] == "the key is ***"
    # the secret does not travel to c (its wiring lists no secrets), not even inside `note`: c gets
    # the masked text; b keeps its own value when c hands `note` back unchanged
    c3 = next(
        e
        for e in written(logs)
        if e["attributes"].get("sl2s.step") == "c3" and e["event_name"] == "sl2s.step"
    )
    assert c3["attributes"]["sl2s.fields"]["note"] == "the key is ***"


def test_a_json_unsafe_field_fails_at_its_step_naming_field_step_and_plan_line(logs):
    import rt_abc.a

    with pytest.raises(StepFailed) as failed:
        rt_abc.a.abc(x=1, key="k", mode="unsafe_field")

    failure = failed.value
    assert (failure.machine, failure.step, failure.plan, failure.kind) == (
        "b",
        "b2",
        "abc.csv:2",
        "contract",
    )
    assert (
        "'handle' (Opaque, set by step 'b2' at abc.csv:2) is not JSON data"
        in failure.exc_message
    )
    assert str(failure).startswith(
        "abc.csv:2: step 'b2' of flow 'abc' failed on machine 'b'"
    )
    error = next(e for e in written(logs) if e["severity_text"] == "ERROR")
    assert error["attributes"]["sl2s.fields"]["handle"] == "<not JSON: Opaque>"
    assert error["attributes"]["sl2s.event_id"] == failure.event_id
    assert [s for _, s in steps_of(causal_chain(written(logs)))] == ["a1", "b2"]


def test_a_json_unsafe_secret_fails_at_the_hop_naming_field_step_and_plan_line(logs):
    import rt_abc.a

    with pytest.raises(StepFailed) as failed:
        rt_abc.a.abc(x=1, key="k", mode="unsafe_secret")

    failure = failed.value
    assert (failure.machine, failure.step, failure.plan) == ("b", "b2", "abc.csv:2")
    assert failure.exc_message.startswith(
        "field 'key' (dict, set by step 'b2' at abc.csv:2) cannot travel to machine 'a'"
    )
    hop = next(e for e in written(logs) if e["event_name"] == "sl2s.hop_failed")
    assert hop["attributes"]["sl2s.machine"] == "b" and hop["severity_text"] == "ERROR"


def test_a_step_that_returns_no_mapping_fails_naming_the_step(logs):
    import rt_abc.a

    with pytest.raises(StepFailed) as failed:
        rt_abc.a.abc(x=1, key="k", mode="not_a_mapping")
    assert failed.value.step == "b2" and failed.value.kind == "contract"
    assert "step function b2 returned list; a step returns None or a mapping" in str(
        failed.value
    )


def test_a_raising_step_writes_an_error_event_and_the_entry_raises_step_failed(logs):
    import rt_abc.a

    with pytest.raises(StepFailed) as failed:
        rt_abc.a.abc(x=7, key="k", mode="raise")

    failure = failed.value
    assert (failure.machine, failure.flow, failure.step, failure.plan) == (
        "c",
        "abc",
        "c3",
        "abc.csv:3",
    )
    assert (failure.exc_type, failure.exc_message) == (
        "RuntimeError",
        "c3 cannot handle 7",
    )
    assert failure.kind == "exception"
    source = (TREE / "rt_abc/c/abc.py").read_text().splitlines()
    path, line = failure.source.rsplit(":", 1)
    assert path == "rt_abc/c/abc.py" and source[int(line) - 1].startswith(
        '@step("abc", "C3'
    )
    assert 'raise RuntimeError(f"c3 cannot handle {x}")' in failure.traceback
    assert "sl2s/runtime" not in failure.traceback  # only the user's frames
    # events are on disk as soon as the flow failed; the flow stopped at c3
    evts = written(logs)
    chain = causal_chain(evts)
    assert [s for _, s in steps_of(chain)] == ["a1", "b2", "c3"]
    error = chain[-1]
    assert error["severity_text"] == "ERROR" and error["severity_number"] == 17
    assert error["attributes"]["sl2s.event_id"] == failure.event_id
    assert error["attributes"]["exception.type"] == "RuntimeError"
    assert error["attributes"]["exception.message"] == "c3 cannot handle 7"
    assert error["attributes"]["sl2s.raised_at"].startswith("rt_abc/c/abc.py:")
    # travels over hops as data and comes back the same
    again = failure_from_dict(json.loads(json.dumps(failure.to_dict())))
    assert isinstance(again, StepFailed) and again.to_dict() == failure.to_dict()


def test_logging_records_inside_a_step_become_log_events_of_that_step(logs):
    import rt_abc.a
    import rt_login.client

    rt_abc.a.abc(x=1, key="k", mode="ok")
    chain = causal_chain(written(logs))
    log_event = next(e for e in chain if e["event_name"] == "sl2s.log")
    assert (
        chain.index(log_event) == 2
    )  # after b2, before the c3 step event that it belongs to
    attributes = log_event["attributes"]
    assert attributes["sl2s.log.template"] == "c3 got %s (key %s, limit %d)"
    assert attributes["sl2s.step"] == "c3" and attributes["sl2s.machine"] == "c"
    assert attributes["sl2s.log.logger"] == "rt_abc.c.abc"
    assert attributes["code.filepath"] == "rt_abc/c/abc.py"
    assert (
        log_event["severity_text"] == "WARNING" and log_event["severity_number"] == 13
    )

    # records below the logger's enabled level are not created, so not captured
    for path in logs.glob("*.jsonl"):
        path.unlink()
    rt_login.client.login(username="ann", password="hunter2")
    assert not [e for e in written(logs) if e["event_name"] == "sl2s.log"]
    logging.getLogger("rt_login.server.login").setLevel(logging.INFO)
    try:
        rt_login.client.login(username="ann", password="hunter2")
    finally:
        logging.getLogger("rt_login.server.login").setLevel(logging.NOTSET)
    captured = [e for e in written(logs) if e["event_name"] == "sl2s.log"]
    assert [e["body"] for e in captured] == ["session s-ann created for ann"]


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self.started: list[dict] = []
        self.finished: list[tuple[dict, object]] = []

    def event(self, evt: dict) -> None:
        self.events.append(evt)

    def segment_started(self, info: dict) -> None:
        self.started.append(info)

    def segment_finished(self, info: dict, error) -> None:
        self.finished.append((info, error))


class Broken:
    def event(self, evt: dict) -> None:
        raise ValueError("listener bug")

    def segment_started(self, info: dict) -> None:
        raise KeyError("listener bug")

    def segment_finished(self, info: dict, error) -> None:
        raise RuntimeError("listener bug")


def test_hooks_see_every_event_and_activation_and_a_raising_listener_breaks_nothing(
    logs, capsys
):
    import rt_abc.a

    broken, recorder = hooks.subscribe(Broken()), hooks.subscribe(Recorder())
    try:
        result = rt_abc.a.abc(x=1, key="k", mode="ok")
        with pytest.raises(StepFailed) as failed:
            rt_abc.a.abc(x=1, key="k", mode="raise")
    finally:
        hooks.unsubscribe(broken)
        hooks.unsubscribe(recorder)

    assert result["trail"][-1] == "a6"
    seen = [e["attributes"]["sl2s.event_id"] for e in recorder.events]
    assert sorted(seen) == sorted(
        e["attributes"]["sl2s.event_id"] for e in written(logs)
    )
    assert (
        len(seen) == 11
    )  # 6 steps + 1 log line; then a1, b2, c3's log line, c3's ERROR
    first_run = recorder.started[:4]
    assert [(i["kind"], i["machine"], i["at"]) for i in first_run] == [
        ("entry", "a", None),
        ("segment", "b", "b2"),
        ("segment", "c", "c3"),
        ("segment", "b", "b5"),
    ]
    entry, b2, c3, b5 = first_run
    assert (
        b2["parent_span_id"] == entry["span_id"]
        and c3["parent_span_id"] == b2["span_id"]
    )
    assert b5["parent_span_id"] == entry["span_id"]
    assert len({i["trace_id"] for i in first_run}) == 1
    assert [(i["machine"], e) for i, e in recorder.finished[:4]] == [
        ("c", None),
        ("b", None),
        ("b", None),
        ("a", None),
    ]
    # the failing run: every activation finishes with the failure, innermost first
    failing = recorder.finished[4:]
    assert [i["machine"] for i, _ in failing] == ["c", "b", "a"]
    assert all(isinstance(e, StepFailed) and e.step == "c3" for _, e in failing)
    assert failed.value.step == "c3"
    err = capsys.readouterr().err
    assert (
        err.count("listener bug") == 1
    )  # reported once per listener object, then ignored


def test_an_inbound_hop_for_an_unknown_segment_comes_back_as_an_error_not_an_exception(
    logs,
):
    import rt_abc.a  # noqa: F401  (imports b and c through hops only when a flow runs)

    b = load_machine("rt_abc", "b")
    request = HopRequest(
        system="rt_abc",
        flow="abc",
        source="a",
        target="b",
        at="nowhere",
        resume_at="a4",
        fields={"x": 1},
        secrets=["key"],
        correlation_id="c" * 32,
        causation_id=None,
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        idempotency_key="k1",
        stack=["a"],
    )
    response = b.handle(HopRequest.from_dict(request.to_dict()))
    assert response.error is not None
    failure = failure_from_dict(response.error)
    assert isinstance(failure, WiringError)
    assert "machine 'b' has no segment of flow 'abc' starting at step 'nowhere'" in str(
        failure
    )
    event = next(e for e in written(logs) if e["event_name"] == "sl2s.wiring_error")
    assert (
        event["trace_id"] == "1" * 32
        and event["attributes"]["sl2s.correlation_id"] == "c" * 32
    )


def test_a_step_without_a_function_is_a_wiring_error_with_its_plan_line(
    tmp_path, monkeypatch, logs
):
    copy = tmp_path / "rt_abc_missing"
    shutil.copytree(TREE / "rt_abc", copy)
    user = copy / "c" / "abc.py"
    user.write_text(user.read_text().replace('id="c3"', 'id="c3_renamed"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    import rt_abc_missing.a

    with pytest.raises(WiringError) as failed:
        rt_abc_missing.a.abc(x=1, key="k")
    assert str(failed.value) == (
        "abc.csv:3: no @step function for step 'c3' of flow 'abc' on machine 'c' "
        "(expected in rt_abc_missing/c/abc.py)"
    )


def test_the_default_log_dir_is_inside_the_system_package(tmp_path, monkeypatch):
    shutil.copytree(TREE / "rt_login", tmp_path / "rt_login_copy")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SL2S_LOG_DIR", raising=False)
    import rt_login_copy.client

    rt_login_copy.client.feed()
    lines = (
        (tmp_path / "rt_login_copy/.sl2s/logs/client.jsonl").read_text().splitlines()
    )
    assert [json.loads(x)["attributes"]["sl2s.plan"] for x in lines] == ["login.csv:8"]
    events.close_all()


def test_the_same_step_defined_twice_on_one_machine_is_refused():
    def first():
        return None

    def second():
        return None

    step("dup_flow", "Do it")(first)
    with pytest.raises(
        WiringError, match="step 'do_it' of flow 'dup_flow' is defined twice"
    ):
        step("dup_flow", "Do it")(second)


def test_listeners_get_events_as_written_even_when_a_later_step_changes_a_list_in_place(
    tmp_path, monkeypatch, logs
):
    package = tmp_path / "rt_inplace"
    (package / "m").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "m" / "__init__.py").write_text(
        "from . import f, _wiring  # noqa: F401\n"
    )
    (package / "m" / "f.py").write_text(
        "from sl2s.runtime import step\n\n\n"
        '@step("f", "Start with :items")\n'
        "def start_with_items():\n"
        '    return {"items": ["first"]}\n\n\n'
        '@step("f", "Add to :items")\n'
        "def add_to_items(items):\n"
        '    items.append("second")  # in place\n'
    )
    (package / "m" / "_wiring.py").write_text(
        "from sl2s.runtime import Machine\n\n"
        'machine = Machine(__name__, "m")\n\n\n'
        "def f():\n"
        '    run = machine.start("f")\n'
        '    run.step("start_with_items")\n'
        '    run.step("add_to_items")\n'
        "    return run.finish()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import rt_inplace.m._wiring

    kept: list[dict] = []
    listener = hooks.subscribe(kept.append)
    try:
        assert rt_inplace.m._wiring.f() == {"items": ["first", "second"]}
    finally:
        hooks.unsubscribe(listener)
    assert [e["attributes"]["sl2s.fields"]["items"] for e in kept] == [
        ["first"],
        ["first", "second"],
    ]
    assert [e["body"] for e in kept] == [
        'Start with ["first"]',
        'Add to ["first", "second"]',
    ]
    assert "sl2s.plan" not in kept[0]["attributes"]  # no lock file: no plan location


def test_lines_still_buffered_when_the_process_exits_are_written(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        f"import sys; sys.path.insert(0, {str(TREE)!r})\n"
        "import rt_abc.a._wiring as wiring\n"
        "run = wiring.machine.start('abc', x=1, key='k', mode='ok')\n"
        "run.step('a1')\n"  # no finish(): the line is only buffered when the interpreter exits
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env["SL2S_LOG_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [json.loads(x)["attributes"]["sl2s.step"] for x in lines] == ["a1"]


def test_timestamps_are_utc_iso_with_microseconds_and_event_ids_are_unique():
    import datetime
    import re

    before = datetime.datetime.now(datetime.timezone.utc)
    stamp = events.now()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - datetime.timedelta(microseconds=1) <= parsed <= after
    ids = [events.new_event_id() for _ in range(1000)]
    assert (
        len(set(ids)) == 1000 and {len(i) for i in ids} == {32} and ids == sorted(ids)
    )


def test_fields_may_be_named_like_the_parameters_of_start(logs):
    import rt_abc.a._wiring as wiring

    run = wiring.machine.start("abc", flow="f", self="s", x=1, key="k", mode="ok")
    assert run.fields == {"flow": "f", "self": "s", "x": 1, "key": "k", "mode": "ok"}
    run.step("a1")
    assert run.finish()["trail"] == ["a1"]


def test_an_unwritable_log_dir_is_reported_once_and_never_breaks_a_flow(
    tmp_path, monkeypatch, logs, capsys
):
    import rt_abc.a

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("SL2S_LOG_DIR", str(blocker / "logs"))
    assert rt_abc.a.abc(x=1, key="k", mode="ok")["trail"][-1] == "a6"
    assert rt_abc.a.abc(x=2, key="k", mode="ok")["trail"][-1] == "a6"
    err = capsys.readouterr().err
    assert (
        err.count("sl2s: cannot write events to") == 3
    )  # once per machine file: a, b, c


def test_step_functions_may_take_keyword_only_and_catch_all_parameters(
    tmp_path, monkeypatch, logs
):
    package = tmp_path / "rt_kinds"
    (package / "m").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "m" / "__init__.py").write_text(
        "from . import f, _wiring  # noqa: F401\n"
    )
    (package / "m" / "f.py").write_text(
        "from sl2s.runtime import UNSET, step\n\n\n"
        '@step("f", "One :a", id="one")\n'
        "def one(a, *rest, b, c=3):\n"
        '    return {"seen": [a, rest, b is UNSET, c]}\n\n\n'
        '@step("f", "Two", id="two")\n'
        "def two(a, **context):\n"
        '    return {"keys": sorted(context)}\n'
    )
    (package / "m" / "_wiring.py").write_text(
        "from sl2s.runtime import Machine\n\n"
        'machine = Machine(__name__, "m")\n\n\n'
        "def f(**fields):\n"
        '    run = machine.start("f", **fields)\n'
        '    run.step("one")\n'
        '    run.step("two")\n'
        "    return run.finish()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import rt_kinds.m._wiring

    result = rt_kinds.m._wiring.f(a=1, z=26)
    assert result["seen"] == [1, (), True, 3]
    assert result["keys"] == ["seen", "z"]  # every field but the named ones


def test_listeners_get_each_event_equal_to_its_written_line(logs):
    import rt_abc.a

    seen: list[dict] = []
    listener = hooks.subscribe(seen.append)
    try:
        rt_abc.a.abc(x=1, key="k", mode="ok")
        rt_abc.a.abc(x=[1, {"y": 'q"%s\u00e9'}], key="k2", mode="ok")
    finally:
        hooks.unsubscribe(listener)
    by_id = {e["attributes"]["sl2s.event_id"]: e for e in written(logs)}
    raw = {
        json.loads(x)["attributes"]["sl2s.event_id"]: x
        for x in (logs / "a.jsonl").read_bytes().splitlines(keepends=True)
    }
    assert len(seen) == len(by_id) > 0
    for evt in seen:  # same fields, same values, same key order
        assert isinstance(evt, Mapping) and isinstance(evt, hooks.LazyEvent)
        line = by_id[evt["attributes"]["sl2s.event_id"]]
        assert json.dumps(dict(evt)) == json.dumps(line)
        assert evt == line and len(evt) == len(line) and list(evt) == list(line)
        for key in ("severity_number", "severity_text", "event_name"):
            assert getattr(evt, key) == evt[key] == line[key]
        assert evt.has_exception == ("exception.type" in line["attributes"])
        if (
            evt["attributes"]["sl2s.machine"] == "a"
        ):  # the line's bytes, exactly as written
            assert evt.line == raw[evt["attributes"]["sl2s.event_id"]]
    assert seen[0]["resource"] is not seen[1]["resource"]  # fresh dicts, safe to keep
    with pytest.raises(TypeError):
        seen[0]["body"] = "changed"  # read-only


def test_a_lazy_event_answers_severity_and_name_without_decoding():
    line = orjson.dumps(
        {
            "severity_text": "WARN",
            "severity_number": 13,
            "event_name": "x",
            "body": "b",
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
    evt = hooks.LazyEvent(line, 13, "WARN", "x")
    assert evt["severity_number"] == 13 and evt.get("event_name") == "x"
    assert "severity_text" in evt
    with pytest.raises(AttributeError):
        _ = evt._decoded  # nothing decoded yet
    assert evt["body"] == "b" and evt.decoded() is evt.decoded()
    assert "nope" not in evt and evt.get("nope") is None
    step = hooks.StepEvent(line)
    assert (step.severity_number, step.event_name, step.has_exception) == (
        9,
        "sl2s.step",
        False,
    )
    assert pickle.loads(pickle.dumps(evt)) == evt


def test_event_ids_are_unique_across_threads_and_forked_processes():
    import os
    import threading

    found: list[list[str]] = []

    def take():
        found.append([events.new_event_id() for _ in range(2000)])

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for chunk in found for i in chunk]
    if hasattr(os, "fork"):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its ids must differ from the parent's
            os.write(
                write, ",".join(events.new_event_id() for _ in range(100)).encode()
            )
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            ids += pipe.read().split(",")
        os.waitpid(pid, 0)
    ids += [events.new_event_id() for _ in range(100)]
    assert len(set(ids)) == len(ids) and {len(i) for i in ids} == {32}


def test_a_template_with_percent_signs_and_quotes_is_written_as_is(
    tmp_path, monkeypatch, logs
):
    package = tmp_path / "rt_pct"
    (package / "m").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "m" / "__init__.py").write_text(
        "from . import f, _wiring  # noqa: F401\n"
    )
    (package / "m" / "f.py").write_text(
        "from sl2s.runtime import step\n\n\n"
        '@step("f", "Took 10%s \\"off\\" %d :a%%", id="one")\n'
        "def one(a):\n"
        "    return None\n"
    )
    (package / "m" / "_wiring.py").write_text(
        "from sl2s.runtime import Machine\n\n"
        'machine = Machine(__name__, "m")\n\n\n'
        "def f(**fields):\n"
        '    run = machine.start("f", **fields)\n'
        '    run.step("one")\n'
        "    return run.finish()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import rt_pct.m._wiring

    rt_pct.m._wiring.f(a="%s%%")
    (evt,) = written(logs)
    assert evt["body"] == 'Took 10%s "off" %d %s%%%%'
    assert evt["attributes"]["sl2s.template"] == 'Took 10%s "off" %d :a%%'


def test_a_listener_that_logs_is_not_taken_for_the_step(logs):
    import rt_abc.a

    def chatty(evt):
        logging.getLogger("rt_listener").warning("saw %s", evt["event_name"])

    listener = hooks.subscribe(chatty)
    try:
        rt_abc.a.abc(x=1, key="k", mode="ok")
    finally:
        hooks.unsubscribe(listener)
    templates = [
        e["attributes"]["sl2s.log.template"]
        for e in written(logs)
        if e["event_name"] == "sl2s.log"
    ]
    assert templates == ["c3 got %s (key %s, limit %d)"]  # only the step's own record
