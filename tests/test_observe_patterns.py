"""`sl2s patterns`: each kind of deviation is flagged; conforming logs give silence."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import orjson
from synthetic import demo_plan, event, flow_run
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.observe import events as ev
from sl2s.observe.patterns import Analyzer

ROOT = Path(__file__).resolve().parent.parent
PLAN = demo_plan()
LOGIN = PLAN.flow("login").steps
FEED = PLAN.flow("feed").steps


def conforming(rng, n=10):
    runs = []
    for i in range(n):
        runs.append(flow_run(LOGIN, cid=f"login-{i}", start_ms=i * 10, rng=rng))
        runs.append(flow_run(FEED, cid=f"feed-{i}", start_ms=i * 10 + 5, rng=rng))
    return runs


def write(tmp_path, runs, seed=0, name="logs", shuffle=True):
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    per_machine: dict[str, list[dict]] = {}
    for run in runs:
        for e in run:
            per_machine.setdefault(ev.machine(e), []).append(e)
    rng = random.Random(seed)
    for m, events in per_machine.items():
        if shuffle:
            rng.shuffle(events)
        with (directory / f"{m}.jsonl").open("ab") as handle:
            handle.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return directory


def analyse(runs):
    analyzer = Analyzer(PLAN)
    events = [e for run in runs for e in run]
    random.Random(9).shuffle(events)
    for i, e in enumerate(events):
        analyzer.feed(f"{ev.machine(e)}.jsonl", i + 1, e)
    return {p.key: p for p in analyzer.finish()}


def test_conforming_logs_give_silence(tmp_path):
    assert analyse(conforming(random.Random(1))) == {}
    plan = tmp_path / "login.csv"
    shutil.copy(ROOT / "sample_plans" / "login.csv", plan)
    logs = write(tmp_path, conforming(random.Random(2)))
    result = CliRunner().invoke(app, ["patterns", str(plan), str(logs)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "0 pattern(s) the plan does not predict in 80 events from 2 file(s)"
    )


def test_each_kind_of_deviation_is_flagged_grouped_and_counted():
    rng = random.Random(3)
    runs = conforming(rng, 5)
    # unknown template: a renamed log line, twice
    for cid in ("u1", "u2"):
        run = flow_run(LOGIN, cid=cid, start_ms=100, rng=rng)
        run[2]["attributes"]["sl2s.template"] = "Testing pasword for :username"
        runs.append(run)
    # wrong machine: the session is set on the client
    run = flow_run(LOGIN, cid="wm", start_ms=200, rng=rng)
    run[3]["attributes"]["sl2s.machine"] = "client"
    run[3]["resource"]["service.name"] = "client"
    runs.append(run)
    # out of order: the 3rd and 4th steps swapped
    run = flow_run(LOGIN, cid="oo", start_ms=300, rng=rng)
    for key in ("sl2s.step", "sl2s.template"):
        run[2]["attributes"][key], run[3]["attributes"][key] = (
            run[3]["attributes"][key],
            run[2]["attributes"][key],
        )
    runs.append(run)
    # stopped early: failed at the 3rd step, and one cut short after the 5th
    runs.append(flow_run(LOGIN, cid="st1", start_ms=400, rng=rng, fail_at=LOGIN[2].id))
    runs.append(flow_run(LOGIN, cid="st2", start_ms=500, rng=rng)[:5])
    # user log lines differing only in values: one pattern
    runs.append(
        flow_run(
            LOGIN,
            cid="lg",
            start_ms=600,
            rng=rng,
            log_lines={
                LOGIN[2].id: [
                    "ElasticSearch query failed to IP 10.0.0.7 on run 51",
                    "ElasticSearch query failed to IP 10.0.0.9 on run 52",
                ],
            },
        )
    )
    # an event the plan cannot predict
    runs.append(
        [
            event(
                flow="login",
                step="",
                machine="client",
                template="",
                body="hop to server failed after 3 tries",
                cid="hf",
                cause=None,
                eid="e-hf",
                at_ms=700,
                severity="ERROR",
                event_name="sl2s.hop_failed",
            )
        ]
    )

    found = analyse(runs)
    kinds = {}
    for p in found.values():
        kinds.setdefault(p.kind, []).append(p)

    (unknown,) = kinds["unknown template"]
    assert (
        unknown.count == 2 and unknown.text == 'login: "Testing pasword for :username"'
    )
    (wrong,) = kinds["wrong machine"]
    assert (
        wrong.count == 1
        and "setting_session_for_username" in wrong.text
        and "planned on server" in wrong.text
    )
    order = {p.key for p in kinds["out of order"]}
    assert (
        "out of order|login|received_request_to_login_as_username|setting_session_for_username"
        in order
    )
    assert all(
        p.example == "oo" and p.count == 1 for p in kinds["out of order"]
    )  # renamed templates do not cascade
    stopped = {p.key: p.count for p in kinds["stopped early"]}
    assert stopped == {
        "stopped early|login|testing_password_for_username": 1,
        "stopped early|login|finish_handling_user_login": 1,
    }
    (log,) = kinds["log line"]
    assert log.text == "ElasticSearch query failed to IP * on run *" and log.count == 2
    (unexpected,) = kinds["unexpected event"]
    assert unexpected.text == "sl2s.hop_failed: hop to server failed after * tries"
    # the two renamed-template runs still end at their last step: no other kinds for them
    assert not any(
        p.example in ("u1", "u2")
        for p in found.values()
        if p.kind != "unknown template"
    )


def test_new_since_reports_only_new_patterns_with_context_and_exits_1(tmp_path):
    plan = tmp_path / "login.csv"
    shutil.copy(ROOT / "sample_plans" / "login.csv", plan)
    state = tmp_path / "state" / "patterns.json"
    rng = random.Random(4)
    first = conforming(rng, 3) + [
        flow_run(
            LOGIN,
            cid="a",
            start_ms=50,
            rng=rng,
            log_lines={
                LOGIN[1].id: ["ElasticSearch query failed to IP 10.0.0.7 on run 51"]
            },
        )
    ]
    logs = write(tmp_path, first)
    runner = CliRunner()

    result = runner.invoke(
        app, ["patterns", str(plan), str(logs), "--new-since", str(state)]
    )
    assert result.exit_code == 1, result.output
    assert (
        "NEW  log line  1x  ElasticSearch query failed to IP * on run *"
        in result.output
    )
    assert state.exists()

    again = runner.invoke(
        app, ["patterns", str(plan), str(logs), "--new-since", str(state)]
    )
    assert again.exit_code == 0, again.output
    assert again.output.startswith("0 new pattern(s)")

    more = [
        flow_run(
            LOGIN,
            cid="b",
            start_ms=900,
            rng=rng,
            log_lines={
                LOGIN[1].id: [
                    "ElasticSearch query failed to IP 10.0.0.9 on run 52"
                ],  # known pattern
                LOGIN[3].id: ["Session store slow: 250ms for ann"],  # new
            },
        )
    ]
    logs2 = write(tmp_path, more, name="logs2", shuffle=False)
    third = runner.invoke(
        app,
        [
            "patterns",
            str(plan),
            str(logs),
            str(logs2),
            "--new-since",
            str(state),
            "--format",
            "text",
        ],
    )
    assert third.exit_code == 1, third.output
    lines = third.output.splitlines()
    assert lines[0].startswith("NEW  log line  1x  Session store slow: * for ann")
    context = [re.search(r"login/\w+", x).group(0) for x in lines[1:5]]
    assert [x.split(":")[0].strip() for x in lines[1:5]] == [
        "before",
        "before",
        "after",
        "after",
    ]
    assert context == [
        "login/received_request_to_login_as_username",
        "login/testing_password_for_username",
        "login/setting_session_for_username",
        "login/finish_handling_user_login",
    ]
    assert "ElasticSearch" not in third.output
    assert lines[-1].startswith("1 new pattern(s)")

    markdown = runner.invoke(
        app, ["patterns", str(plan), str(logs), "--format", "markdown"]
    )
    assert (
        markdown.exit_code == 1
        and "| log line | 1 | `ElasticSearch query failed to IP * on run *`"
        in markdown.output
    )

    bad = runner.invoke(app, ["patterns", str(tmp_path / "missing.csv"), str(logs)])
    assert bad.exit_code == 1
