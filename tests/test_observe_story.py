"""`sl2s story`: runs reconstructed from shuffled multi-machine logs, in causal order."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import demo_plan, flow_run
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.diagnostics import Sl2sError
from sl2s.observe import events as ev
from sl2s.observe.story import (
    Selection,
    build_story,
    causal_order,
    collect_run,
    select_run,
    tell,
)

PLAN = demo_plan()
LOGIN = PLAN.flow("login").steps


def write_logs(tmp_path, runs, shuffle_seed=None):
    """One file per machine, like the runtime; optionally shuffled within each file."""
    per_machine: dict[str, list[dict]] = {}
    for run in runs:
        for e in run:
            per_machine.setdefault(ev.machine(e), []).append(e)
    rng = random.Random(shuffle_seed)
    for m, events in per_machine.items():
        if shuffle_seed is not None:
            rng.shuffle(events)
        (tmp_path / f"{m}.jsonl").write_bytes(
            b"".join(orjson.dumps(e) + b"\n" for e in events)
        )
    return tmp_path


def skew(events, machine, ms):
    """Shift one machine's clock: causal order must not depend on timestamps across machines."""
    from datetime import timedelta

    for e in events:
        if ev.machine(e) == machine:
            t = ev.parse_time(e["timestamp"]) + timedelta(milliseconds=ms)
            e["timestamp"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return events


def test_shuffled_logs_of_many_runs_reconstruct_each_run_in_causal_order(tmp_path):
    rng = random.Random(7)
    runs = [flow_run(LOGIN, cid=f"run-{i}", start_ms=i * 3, rng=rng) for i in range(20)]
    for run in runs:
        skew(run, "server", -50)  # the server's clock is 50 ms behind the client's
    write_logs(tmp_path, runs, shuffle_seed=3)
    files = ev.event_files([tmp_path])
    for i in (0, 7, 19):
        events = collect_run(files, f"run-{i}")
        assert len(events) == len(LOGIN)
        ordered = [ev.attrs(e)["sl2s.step"] for e, _ in causal_order(events)]
        assert ordered == [s.id for s in LOGIN]


def test_story_shows_hops_durations_and_where_it_stopped(tmp_path):
    rng = random.Random(1)
    ok = flow_run(LOGIN, cid="ok", start_ms=0, rng=rng)
    bad = flow_run(LOGIN, cid="bad", start_ms=100, rng=rng, fail_at=LOGIN[2].id)
    late = flow_run(LOGIN, cid="late", start_ms=200, rng=rng)
    write_logs(tmp_path, [ok, bad, late], shuffle_seed=5)
    files = ev.event_files([tmp_path])

    assert select_run(files, Selection(last=True)) == "late"
    assert select_run(files, Selection(failed=True)) == "bad"
    assert select_run(files, Selection(event_id=ev.event_id(ok[3]))) == "ok"

    story = build_story("bad", collect_run(files, "bad"))
    assert story.failed
    assert [x.text for x in story.lines if x.kind == "hop"] == ["call client -> server"]
    assert (
        "stopped with ERROR at server login/testing_password_for_username: ValueError: boom"
        in story.stopped
    )
    assert "plan.csv:4" in story.stopped

    text, failed = tell([str(tmp_path)], Selection(correlation_id="ok"))
    assert not failed
    lines = text.splitlines()
    assert lines[0].startswith(
        "run ok (flow login): 6 events on 2 machine(s): client, server"
    )
    assert "-- call client -> server" in text and "-- return server -> client" in text
    assert "+1.5 ms" in text  # time since the cause
    assert lines[-1].startswith("last event at client login/login_successful")

    marked, _ = tell([str(tmp_path)], Selection(event_id=ev.event_id(ok[3])))
    (line,) = [x for x in marked.splitlines() if x.startswith(">")]
    assert "setting_session_for_username" in line

    md, _ = tell([str(tmp_path)], Selection(failed=True), fmt="markdown")
    assert md.startswith("### Run `bad`")
    assert "| *call* | client → server |" in md
    assert "**Stopped:**" in md


def test_secrets_stay_redacted_and_incident_copies_are_not_counted_twice(tmp_path):
    rng = random.Random(2)
    run = flow_run(LOGIN, cid="c", start_ms=0, rng=rng)
    run[0]["body"] = "User attempted login as ann and ***"
    write_logs(tmp_path, [run])
    # an incident file named explicitly repeats events: they are deduplicated by event id
    (tmp_path / "copy.jsonl").write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in run[:3])
    )
    text, _ = tell([str(tmp_path)], Selection(correlation_id="c"))
    assert "ann and ***" in text
    assert text.count("login_successful:") == 1
    assert "6 events" in text.splitlines()[0]


def test_torn_lines_are_skipped_and_missing_paths_are_user_errors(tmp_path):
    rng = random.Random(3)
    write_logs(tmp_path, [flow_run(LOGIN, cid="c", start_ms=0, rng=rng)])
    with (tmp_path / "client.jsonl").open("ab") as f:
        f.write(b'{"timestamp": "2026-11-23T10:00:0')  # killed mid-line
    text, _ = tell([str(tmp_path)], Selection(last=True))
    assert "6 events" in text
    with pytest.raises(Sl2sError) as error:
        tell([str(tmp_path / "nope")], Selection(last=True))
    assert "nope: no such file or directory" in str(error.value)
    with pytest.raises(Sl2sError):
        tell([str(tmp_path)], Selection(correlation_id="unknown"))


def test_cli_story(tmp_path):
    rng = random.Random(4)
    write_logs(
        tmp_path, [flow_run(LOGIN, cid="c1", start_ms=0, rng=rng, fail_at=LOGIN[1].id)]
    )
    result = CliRunner().invoke(app, ["story", str(tmp_path), "--failed"])
    assert result.exit_code == 0, result.output
    assert "stopped with ERROR at server" in result.output
    result = CliRunner().invoke(
        app, ["story", str(tmp_path / "client.jsonl"), "--format", "markdown"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("### Run `c1`")


@settings(max_examples=60, deadline=None)
@given(
    parents=st.lists(
        st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40
    ),
    skews=st.lists(
        st.integers(min_value=-500, max_value=500), min_size=40, max_size=40
    ),
    seed=st.integers(0, 1000),
)
def test_causal_order_puts_every_cause_before_its_effects(parents, skews, seed):
    """Any causation tree, any clock skew per event, any input order: causes come first."""
    events = []
    for i, p in enumerate(parents):
        cause = f"e{p % i}" if i else None
        events.append(
            {
                "timestamp": f"2026-11-23T10:00:{(i * 7 + skews[i] % 50) % 60:02d}.000000Z",
                "attributes": {
                    "sl2s.event_id": f"e{i}",
                    "sl2s.causation_id": cause,
                    "sl2s.correlation_id": "c",
                },
            }
        )
    random.Random(seed).shuffle(events)
    ordered = causal_order(events)
    position = {ev.event_id(e): n for n, (e, _) in enumerate(ordered)}
    assert len(ordered) == len(events)
    for e, parent in ordered:
        cause = ev.causation_id(e)
        if cause is not None:
            assert position[cause] < position[ev.event_id(e)]
            assert ev.event_id(parent) == cause
