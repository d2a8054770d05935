"""A step's event line is serialised once per step and reused by every activation with its own
correlation, trace and span ids put in (sl2s.runtime.core.run.events): the reused line must be the
line a fresh serialisation gives, for any ids, and no activation may show another's ids.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from eventlog import written
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sl2s.runtime.core import events
from sl2s.runtime.core.run.events import _line_parts

TREE = Path(__file__).resolve().parent / "data" / "runtime_tree"


@pytest.fixture
def logs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TREE))
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("SL2S_STORE", "none")
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    monkeypatch.delenv("SL2S_SECRETS", raising=False)
    yield tmp_path / "logs"
    events.close_all()


def test_every_flow_run_writes_its_own_ids_in_every_step_line(logs):
    from rt_login.client._wiring import login

    for _ in range(3):
        login(username="ann", password="hunter2")
    events.flush_all()
    lines = [e for e in written(logs) if e["event_name"] == "sl2s.step"]
    assert len(lines) == 18
    runs: dict[str, set[tuple[str, str]]] = {}
    for e in lines:
        runs.setdefault(e["attributes"]["sl2s.correlation_id"], set()).add(
            (e["trace_id"], e["attributes"]["sl2s.machine"] + ":" + e["span_id"])
        )
    assert len(runs) == 3  # three flow runs, each with its own correlation id
    traces = [{t for t, _ in ids} for ids in runs.values()]
    assert all(len(t) == 1 for t in traces)  # one trace per flow run
    assert len(set().union(*traces)) == 3  # and no run shows another's trace
    # two activations (client, server) per run, each its own span
    assert all(len({s for _, s in ids}) == 2 for ids in runs.values())


ids = st.text(
    min_size=0, max_size=40
)  # quotes, backslashes, control characters, any plane


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(correlation_id=ids, trace_id=ids, span_id=ids)
def test_the_reused_line_is_the_freshly_serialised_line_for_any_ids(
    logs, correlation_id, trace_id, span_id
):
    from rt_login.client._wiring import machine

    run = machine.start("login", username="ann", password="pw")
    run.step("user_attempted_login_as_username_and_password")
    p = run._steps["user_attempted_login_as_username_and_password"]
    own = run.correlation_id, run.trace_id, run.span_id
    run.correlation_id, run.trace_id, run.span_id = correlation_id, trace_id, span_id
    try:
        reused = run._static_parts(p)
        fresh = _line_parts(p, run, correlation_id, trace_id, span_id, {})
    finally:
        run.correlation_id, run.trace_id, run.span_id = own
        run.finish()
    assert reused == fresh
    # and the line they make is JSON with those ids
    line = b"".join(
        (
            fresh[0],
            b"2026-01-01T00:00:00.",
            b"000000",
            fresh[1],
            b'"m"',
            fresh[2],
            b"1",
            fresh[3],
            b"null",
            fresh[4],
            b"{}",
            fresh[5],
            b"[]",
            fresh[6],
        )
    )
    event = orjson.loads(line)
    assert (event["trace_id"], event["span_id"]) == (trace_id, span_id)
    assert event["attributes"]["sl2s.correlation_id"] == correlation_id
