"""Fixes of the flight recorder and log capture (issue: errors reach people first, item 7):

- under `sl2s serve` a step's `logging.info(...)` is an event, as under `sl2s run`;
- capacity keys accept the severity texts events carry (WARNING, CRITICAL, any case) and refuse
  anything else;
- `install(qualifier=…)` after the generated system installed the default recorder applies;
- an incident whose process is still running is labelled open, not "stopped mid-incident".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from observe_tree import clean_env, make_tree, run_child, run_job, sl2s

from sl2s.observe import install
from sl2s.observe.incidents import list_incidents, render_list
from sl2s.observe.recorder import FlightRecorder, capacities

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import serve_process, stop  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("fixes"))


def _events(path: Path) -> list[dict]:
    return [
        orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()
    ]


def test_info_records_of_a_served_step_are_events(tree, tmp_path):
    server_logs, client_logs = tmp_path / "server", tmp_path / "client"
    proc, url = serve_process(tree, "server", clean_env(SL2S_LOG_DIR=str(server_logs)))
    try:
        done = run_job(
            tree,
            "ok-1",
            SL2S_URL_SERVER=url,
            SL2S_LOG_DIR=str(client_logs),
            SL2S_TRANSPORT="http",
        )
        assert done.returncode == 0, done.stderr
    finally:
        stop(proc)
    logs = [
        e
        for e in _events(server_logs / "server.jsonl")
        if e["event_name"] == "sl2s.log"
    ]
    assert [(e["severity_text"], e["body"]) for e in logs] == [
        ("INFO", "working on ok-1")
    ]


def test_the_same_info_record_under_run(tree, tmp_path):
    done = run_job(tree, "ok-2", SL2S_LOG_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    logs = [
        e for e in _events(tmp_path / "server.jsonl") if e["event_name"] == "sl2s.log"
    ]
    assert [(e["severity_text"], e["body"]) for e in logs] == [
        ("INFO", "working on ok-2")
    ]


def warning(i: int) -> dict:
    return {
        "severity_number": 13,
        "severity_text": "WARNING",
        "body": f"w{i}",
        "attributes": {},
    }


@pytest.mark.parametrize("key", ["WARNING", "warning", "WARN", "Warn"])
def test_capacity_keys_name_the_severity_events_carry(key, tmp_path):
    recorder = FlightRecorder(
        tmp_path, capacity={key: 2}, qualifier=lambda e: False, durable_timeout=0
    )
    for i in range(5):
        recorder.event(warning(i))
    assert [e["body"] for _, e in recorder._buffers[3]] == ["w3", "w4"]
    assert recorder._buffers[2].maxlen == 100  # INFO keeps the default


def test_critical_is_fatal_and_unknown_keys_are_refused():
    assert capacities({"critical": 7})[5] == 7
    with pytest.raises(ValueError, match="'WARNINGS': not a severity"):
        capacities({"WARNINGS": 2})
    with pytest.raises(ValueError, match="must be 0 or more"):
        capacities({"INFO": -1})
    with pytest.raises(ValueError, match="not a severity"):
        install("never-made", capacity={"LOUD": 1})


def test_install_with_a_qualifier_after_the_system_is_imported(tree, tmp_path):
    logs = tmp_path / "logs"
    out = run_child(
        tree.parent,
        f"""
        import {tree.name}.client as client
        from sl2s.observe import install
        recorder = install(qualifier=lambda event: False, capacity={{"WARNING": 3}})
        again = install()
        print(recorder is again, recorder._qualifier is not None, recorder._buffers[3].maxlen)
        try:
            client.job(job="perm-1", token="tok-1")
        except Exception as error:
            print(type(error).__name__)
        recorder.flush()
        """,
        SL2S_LOG_DIR=str(logs),
    )
    assert out.split() == ["True", "True", "3", "StepFailed"]
    assert (logs / "server.jsonl").is_file()
    assert not list(logs.glob("incident-*")), "the qualifier said no incident"


def _incident_file(directory: Path, pid: int, name: str) -> None:
    import socket

    header = {
        "sl2s.incident": "header",
        "id": name,
        "opened_at": "2026-01-01T00:00:00.000000Z",
        "pid": pid,
        "host.name": socket.gethostname(),
        "service.name": "server",
        "trigger": {"severity_text": "ERROR", "body": "x", "attributes": {}},
    }
    (directory / f"{name}.jsonl").write_bytes(orjson.dumps(header) + b"\n")


def test_a_live_incident_is_open_and_a_dead_ones_is_stopped(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _incident_file(tmp_path, os.getpid(), "incident-20260101T000000.000000Z-aaaaaaaa")
    _incident_file(tmp_path, dead.pid, "incident-20260101T000001.000000Z-bbbbbbbb")
    live, stopped = list_incidents(tmp_path)
    assert (live.state, stopped.state) == ("open", "stopped")
    text = render_list([live.summary(), stopped.summary()])
    first, second = text.splitlines()
    assert first.endswith("(open: still recording)")
    assert second.endswith("(incomplete: the process stopped mid-incident)")
    done = sl2s("incidents", "list", str(tmp_path), env=clean_env())
    assert "open: still recording" in done.stdout
