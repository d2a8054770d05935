"""Flight recorder: incidents with the events before, the trigger and a trailing window."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import orjson
from synthetic import demo_plan, event, flow_run
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.observe import events as ev
from sl2s.observe.fingerprint import ErrorGroups, fingerprint, frames_from_stacktrace
from sl2s.observe.incidents import (
    error_groups,
    fetch_remote,
    find_incident,
    list_incidents,
    read_incident,
    routes,
)
from sl2s.observe.recorder import FlightRecorder

PLAN = demo_plan()
LOGIN = PLAN.flow("login").steps
FEED = PLAN.flow("feed").steps


def hop_failed(run: list[dict], rng) -> dict:
    """What the calling machine emits when the callee raised (ERROR on the caller)."""
    last = run[-1]
    return event(
        flow="login",
        step=LOGIN[0].id,
        machine="client",
        template="",
        body="hop to server failed",
        cid=ev.correlation_id(last),
        cause=ev.event_id(last),
        eid=f"{rng.getrandbits(64):x}",
        at_ms=999,
        severity="ERROR",
        event_name="sl2s.hop_failed",
        exception=("ValueError", "boom", ""),
    )


def test_step_raising_on_the_second_machine_makes_exactly_one_incident(tmp_path):
    rng = random.Random(1)
    recorder = FlightRecorder(tmp_path, trailing_events=5, trailing_seconds=30)
    noise = [flow_run(FEED, cid=f"feed-{i}", start_ms=i, rng=rng) for i in range(3)]
    failing = flow_run(LOGIN, cid="bad", start_ms=50, rng=rng, fail_at=LOGIN[2].id)
    for e in noise[0] + noise[1] + failing + [hop_failed(failing, rng)]:
        recorder.event(e)
    after = [
        e
        for run in (
            flow_run(FEED, cid=f"later-{i}", start_ms=200 + i, rng=rng)
            for i in range(5)
        )
        for e in run
    ]
    for e in after:
        recorder.event(e)
    recorder.close()

    incidents = list_incidents(tmp_path)
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident.path.name.endswith(".jsonl.gz")
    assert not list(
        tmp_path.glob("incident-*.jsonl")
    ), "the plain file is removed once the gz is complete"
    h = incident.header
    assert h["service.name"] == "server"
    assert h["trigger"]["attributes"]["sl2s.step"] == LOGIN[2].id
    assert h["links"] == {"plan": "plan.csv:4", "source": "services/server/login.py:14"}
    assert h["exception"] == {"type": "ValueError", "message": "boom"}
    assert h["pid"] == os.getpid() and h["sl2s.version"] and h["python.version"]
    assert "plan.digest" in h and "git.revision" in h and h["service.instance.id"]
    assert h["fingerprint"]

    phases = [e["sl2s.incident"] for e in incident.events]
    before = [e for e in incident.events if e["sl2s.incident"] == "before"]
    # the preceding events of the failing flow, in order, plus the other flows' events before it
    assert [ev.event_id(e) for e in before if ev.correlation_id(e) == "bad"] == [
        ev.event_id(e) for e in failing[:-1]
    ]
    assert len(before) == 4 + 2  # two feed runs of 2 events + two login steps
    assert phases.index("trigger") == len(before)
    trailing = [e for e in incident.events if e["sl2s.incident"] == "after"]
    assert len(trailing) == 5  # the window closes after trailing_events
    assert (
        trailing[0]["event_name"] == "sl2s.hop_failed"
        and trailing[0]["sl2s.trigger"] is True
    )
    assert ev.event_id(trailing[1]) == ev.event_id(after[0])
    assert incident.footer["reason"] == "limit" and incident.footer["triggers"] == 2


def test_time_window_closes_the_incident_without_further_events(tmp_path):
    rng = random.Random(2)
    recorder = FlightRecorder(tmp_path, trailing_seconds=0.3, trailing_events=100)
    for e in flow_run(LOGIN, cid="x", start_ms=0, rng=rng, fail_at=LOGIN[1].id):
        recorder.event(e)
    recorder.event(flow_run(FEED, cid="y", start_ms=1, rng=rng)[0])
    deadline = time.monotonic() + 5
    while not recorder.written and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recorder.written, "the writer closes the incident when its window ends"
    late = flow_run(FEED, cid="late", start_ms=2, rng=rng)
    for e in late:
        recorder.event(e)  # after the window: INFO, so no new incident
    recorder.close()
    (incident,) = list_incidents(tmp_path)
    assert incident.footer["reason"] == "window"
    assert [
        ev.correlation_id(e) for e in incident.events if e["sl2s.incident"] == "after"
    ] == ["y"]


def test_ring_buffers_are_bounded_per_severity_and_the_qualifier_is_pluggable(tmp_path):
    rng = random.Random(3)
    only_fatal = lambda e: e.get("severity_number", 0) >= 21  # noqa: E731
    recorder = FlightRecorder(
        tmp_path,
        capacity={"INFO": 3, "WARN": 2},
        qualifier=only_fatal,
        trailing_events=0,
    )
    for i in range(10):
        for e in flow_run(FEED, cid=f"f{i}", start_ms=i, rng=rng):
            recorder.event(e)
        w = flow_run(FEED, cid=f"w{i}", start_ms=i, rng=rng)[0]
        w["severity_text"], w["severity_number"] = "WARN", 13
        recorder.event(w)  # WARN does not qualify with this qualifier
    assert not list(tmp_path.iterdir())
    fatal = flow_run(FEED, cid="fatal", start_ms=99, rng=rng)[0]
    fatal["severity_text"], fatal["severity_number"] = "FATAL", 21
    recorder.event(fatal)
    recorder.close()
    (incident,) = list_incidents(tmp_path)
    before = [e for e in incident.events if e["sl2s.incident"] == "before"]
    assert [e["severity_text"] for e in before].count("INFO") == 3
    assert [e["severity_text"] for e in before].count("WARN") == 2
    # the newest of each severity, merged back into emission order
    assert [ev.correlation_id(e) for e in before] == ["f8", "w8", "f9", "f9", "w9"]


def test_recorder_never_breaks_the_flow_when_it_cannot_write(tmp_path):
    rng = random.Random(4)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log dir should be")
    recorder = FlightRecorder(blocked, durable_timeout=0.5)
    for e in flow_run(LOGIN, cid="x", start_ms=0, rng=rng, fail_at=LOGIN[0].id):
        recorder.event(e)  # must not raise
    recorder.event({"severity_number": "garbage"})
    recorder.close()
    assert recorder.failures >= 1


def test_fingerprint_groups_the_same_bug_and_separates_different_ones():
    def trace(path, line, function):
        return (
            "Traceback (most recent call last):\n"
            '  File "/usr/lib/python3.11/threading.py", line 1, in run\n'
            '  File "/venv/lib/python3.11/site-packages/sl2s/runtime/run.py", line 9, in step\n'
            f'  File "{path}", line {line}, in {function}\n'
            "KeyError: 'x'\n"
        )

    a = frames_from_stacktrace(trace("/srv/a/services/server/login.py", 12, "check"))
    b = frames_from_stacktrace(
        trace("/home/b/services/server/login.py", 40, "check")
    )  # moved, edited
    c = frames_from_stacktrace(
        trace("/srv/a/services/server/login.py", 12, "set_session")
    )
    assert fingerprint("KeyError", a) == fingerprint("KeyError", b)
    assert fingerprint("KeyError", a) != fingerprint("KeyError", c)
    assert fingerprint("KeyError", a) != fingerprint("ValueError", a)

    groups = ErrorGroups()
    rng = random.Random(5)
    for i, (stack, message) in enumerate(
        [(a, "user 1"), (b, "user 2"), (c, "user 3"), (a, "user 4")]
    ):
        e = flow_run(
            LOGIN, cid=f"c{i}", start_ms=i * 1000, rng=rng, fail_at=LOGIN[2].id
        )[-1]
        e["attributes"]["exception.type"] = "KeyError"
        e["attributes"]["exception.message"] = message
        e["attributes"]["exception.stacktrace"] = "".join(
            f'  File "{f}", line 1, in {fn}\n' for f, fn in stack
        )
        groups.add(e)
    top, other = groups.sorted()
    assert top.count == 3 and other.count == 1
    assert top.frames == ["server/login.py:check"]
    assert top.first_seen < top.last_seen


def test_kill_right_after_the_trigger_leaves_a_readable_incident(tmp_path):
    script = textwrap.dedent("""
        import random, sys, time
        from sl2s.observe.recorder import FlightRecorder
        from synthetic import demo_plan, flow_run
        steps = demo_plan().flow("login").steps
        recorder = FlightRecorder(sys.argv[1], trailing_seconds=60)
        rng = random.Random(1)
        for e in flow_run(steps, cid="ok", start_ms=0, rng=rng):
            recorder.event(e)
        for e in flow_run(steps, cid="bad", start_ms=10, rng=rng, fail_at=steps[3].id):
            recorder.event(e)
        print("triggered", flush=True)
        time.sleep(60)
        """)
    bench = str(Path(__file__).resolve().parent.parent / "bench")  # synthetic.py
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [bench, os.environ.get("PYTHONPATH")])
            ),
        },
    )
    try:
        assert child.stdout.readline().strip() == "triggered"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    (incident,) = list_incidents(tmp_path)
    assert incident.path.suffix == ".jsonl" and not incident.complete
    assert incident.header["trigger"]["attributes"]["sl2s.step"] == LOGIN[3].id
    assert [e["sl2s.incident"] for e in incident.events][-1] == "trigger"
    assert sum(1 for e in incident.events if ev.correlation_id(e) == "bad") == 4
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "list", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "incomplete" in listed.output


def test_cli_list_show_errors(tmp_path, monkeypatch):
    rng = random.Random(6)
    recorder = FlightRecorder(tmp_path, trailing_events=1)
    for i in range(3):
        for e in flow_run(
            LOGIN, cid=f"c{i}", start_ms=i * 100, rng=rng, fail_at=LOGIN[2].id
        ):
            recorder.event(e)
        recorder.event(flow_run(FEED, cid=f"f{i}", start_ms=i * 100 + 50, rng=rng)[0])
    recorder.close()
    incidents = list_incidents(tmp_path)
    assert len(incidents) == 3
    assert list_incidents(tmp_path, since=incidents[0].id) == incidents[1:]
    runner = CliRunner()
    out = runner.invoke(app, ["incidents", "list", str(tmp_path)])
    assert out.exit_code == 0 and out.output.count("ValueError: boom") == 3, out.output
    shown = runner.invoke(app, ["incidents", "show", str(tmp_path), incidents[1].id])
    assert shown.exit_code == 0, shown.output
    assert "plan          plan.csv:4" in shown.output
    assert "> " in shown.output  # the trigger is marked
    assert find_incident(tmp_path, incidents[1].id[-8:]).id == incidents[1].id
    errors = runner.invoke(app, ["incidents", "errors", str(tmp_path)])
    assert errors.exit_code == 0 and "3x  ValueError" in errors.output, errors.output
    assert error_groups(incidents).sorted()[0].count == 3
    missing = runner.invoke(app, ["incidents", "show", str(tmp_path), "nope"])
    assert missing.exit_code == 1
    monkeypatch.setenv(
        "SL2S_LOG_DIR", str(tmp_path)
    )  # the runtime's log dir is the default
    default = runner.invoke(app, ["incidents", "show", incidents[2].id])
    assert default.exit_code == 0 and incidents[2].id in default.output, default.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_routes_serve_incidents_with_a_since_cursor(tmp_path):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    rng = random.Random(7)
    recorder = FlightRecorder(tmp_path, trailing_events=0)
    for i in range(2):
        for e in flow_run(LOGIN, cid=f"c{i}", start_ms=i, rng=rng, fail_at=LOGIN[1].id):
            recorder.event(e)
    recorder.close()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Mount("/_sl2s/incidents", routes=routes(tmp_path))]),
            host="127.0.0.1",
            port=port,
            log_level="error",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{port}/_sl2s/incidents"
        summaries = fetch_remote(url)
        assert [s["id"] for s in summaries] == [i.id for i in list_incidents(tmp_path)]
        assert (
            fetch_remote(url, since=summaries[0]["id"])[0]["id"] == summaries[1]["id"]
        )
        remote = fetch_remote(url, incident_id=summaries[1]["id"])
        assert remote.header == read_incident(list_incidents(tmp_path)[1].path).header
        import json
        import urllib.request

        with urllib.request.urlopen(url + "/errors", timeout=10) as response:
            (group,) = json.loads(response.read())["errors"]
        assert group["count"] == 2 and group["exception_type"] == "ValueError"
        result = CliRunner().invoke(app, ["incidents", "list", "--url", url])
        assert (
            result.exit_code == 0 and result.output.count("ValueError") == 2
        ), result.output
    finally:
        server.should_exit = True
        thread.join(5)


def test_concurrent_triggers_each_land_in_exactly_one_incident(tmp_path):
    recorder = FlightRecorder(tmp_path, trailing_events=7, durable_timeout=0)
    errors_sent = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(40):
            fail = LOGIN[rng.randrange(len(LOGIN))].id if i % 4 == 0 else None
            run = flow_run(LOGIN, cid=f"t{seed}-{i}", start_ms=i, rng=rng, fail_at=fail)
            for e in run:
                recorder.event(e)
            if fail:
                errors_sent.append(ev.event_id(run[-1]))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    recorder.close()
    assert recorder.failures == 0
    incidents = list_incidents(tmp_path)
    assert incidents and all(i.complete for i in incidents)
    marked = [
        ev.event_id(e) for i in incidents for e in i.events if e.get("sl2s.trigger")
    ]
    assert sorted(marked) == sorted(
        errors_sent
    )  # every error recorded once, none twice
    assert sum(g.count for g in error_groups(incidents).groups.values()) == len(
        errors_sent
    )


def test_readers_prefer_the_complete_gzip_and_ignore_a_half_written_one(tmp_path):
    rng = random.Random(8)
    recorder = FlightRecorder(tmp_path, trailing_events=0)
    for e in flow_run(LOGIN, cid="x", start_ms=0, rng=rng, fail_at=LOGIN[1].id):
        recorder.event(e)
    recorder.close()
    (gz,) = tmp_path.glob("incident-*.jsonl.gz")
    stem = gz.name[: -len(".gz")]
    # died after the rename, before removing the plain file: the plain one is a torn copy
    (tmp_path / stem).write_bytes(
        b'{"sl2s.incident": "header", "id": "torn"}\n{"sl2s.inc'
    )
    # and a later incident died while compressing: only its plain file counts
    later = stem.replace("incident-", "incident-z")
    (tmp_path / later).write_bytes(gzip_free_copy(gz))
    (tmp_path / (later + ".gz.tmp")).write_bytes(b"\x1f\x8b garbage")
    found = list_incidents(tmp_path)
    assert [i.path.name for i in found] == [gz.name, later]
    assert found[0].complete and found[1].complete


def gzip_free_copy(path: Path) -> bytes:
    import gzip

    return gzip.decompress(path.read_bytes())


def test_lazy_events_are_kept_undecoded_and_written_as_their_exact_lines(tmp_path):
    from sl2s.runtime.hooks import LazyEvent, StepEvent

    def lazy(e: dict) -> LazyEvent:
        # bytes a plain dumps would not produce (spacing): the incident must repeat them as is
        line = orjson.dumps(e).replace(b'"body":', b'"body": ') + b"\n"
        if e["event_name"] == "sl2s.step" and e["severity_number"] == 9:
            if "exception.type" not in e["attributes"]:
                return StepEvent(line)
        return LazyEvent(
            line,
            e["severity_number"],
            e["severity_text"],
            e["event_name"],
            "exception.type" in e["attributes"],
        )

    rng = random.Random(7)
    recorder = FlightRecorder(tmp_path, trailing_events=2, trailing_seconds=30)
    quiet = [lazy(e) for e in flow_run(FEED, cid="ok", start_ms=0, rng=rng)]
    failing = [
        lazy(e)
        for e in flow_run(LOGIN, cid="bad", start_ms=10, rng=rng, fail_at=LOGIN[2].id)
    ]
    later = [lazy(e) for e in flow_run(FEED, cid="later", start_ms=20, rng=rng)]
    for e in quiet:
        recorder.event(e)
    # qualifying an INFO step needs no decoding (severity and exception flag are attributes)
    assert all(not hasattr(e, "_decoded") for e in quiet)
    for e in failing + later:
        recorder.event(e)
    recorder.close()

    (incident,) = list_incidents(tmp_path)
    assert incident.header["trigger"] == failing[-1]
    assert incident.header["exception"]["type"] == "ValueError"
    kept = [*quiet, *failing, *later[:2]]
    lines = [x for x in incident_lines(incident.path) if b'"sl2s.incident":"h' not in x]
    for line, e in zip(lines, kept):
        # the marker keys in front, then the line exactly as logged
        assert line.endswith(e.line[1:]), (line, e.line)
    assert len(lines) == len(kept) + 1  # and the footer


def incident_lines(path: Path) -> list[bytes]:
    return list(ev.open_lines(path))
