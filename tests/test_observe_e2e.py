"""End to end on a generated tree (sample_plans/login.csv): the runtime's real events feed the
flight recorder, OpenTelemetry spans, `sl2s story` and `sl2s patterns`.

Each scenario runs in a child process, as a service would: the runtime's hooks and the generated
package are process-global.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.observe.incidents import list_incidents

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("generated")
    shutil.copy(ROOT / "sample_plans" / "login.csv", base / "login.csv")
    result = CliRunner().invoke(
        app, ["generate", str(base / "login.csv"), "--out", str(base / "services")]
    )
    assert result.exit_code == 0, result.output
    server = base / "services" / "server" / "login.py"
    source = server.read_text()
    old = (
        "def testing_password_for_username(username: object) -> None:\n"
        "    # Not implemented yet: this step does nothing.\n"
        "    return None\n"
    )
    assert old in source
    server.write_text(
        source.replace(
            old,
            "def testing_password_for_username(username):\n"
            "    import logging\n\n"
            "    logging.getLogger('auth').info('ElasticSearch query failed to IP 10.0.0.7 on run 51')\n"
            "    if username == 'bob':\n"
            "        raise ValueError('wrong password for ' + username)\n"
            "    return None\n",
        )
    )
    return base


@pytest.fixture
def tree(generated, tmp_path) -> Path:
    shutil.copytree(generated, tmp_path / "app")
    return tmp_path / "app"


def run_child(tree: Path, body: str) -> str:
    script = "import sys, json\nsys.path.insert(0, '.')\n" + textwrap.dedent(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_step_raising_on_the_second_machine_makes_one_incident_on_that_machine(tree):
    run_child(
        tree,
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        from sl2s.observe import install
        recorder = install(trailing_events=3)
        import services.client as client
        client.login(username="ann", password="hunter2")
        try:
            client.login(username="bob", password="s3cret")
        except Exception as error:
            print(type(error).__name__)
        client.feed()
        client.feed()
        """,
    )
    logs = tree / "services" / ".sl2s" / "logs"
    (incident,) = list_incidents(logs)
    assert incident.path.name.endswith(".jsonl.gz") and incident.complete
    summary = incident.summary()
    assert summary["machine"] == "server"
    assert (summary["flow"], summary["step"]) == (
        "login",
        "testing_password_for_username",
    )
    assert (
        summary["exception"] == "ValueError"
        and summary["message"] == "wrong password for bob"
    )
    links = incident.header["links"]
    assert links["plan"].endswith("login.csv:4")
    assert links["source"].startswith("services/server/login.py:")
    assert len(incident.header["plan.digest"]) == 64
    # before: the ann run, then bob's steps up to the failing one, all in order
    before = [e for e in incident.events if e["sl2s.incident"] == "before"]
    bob = [
        e
        for e in before
        if e["attributes"]["sl2s.correlation_id"]
        == incident.trigger["attributes"]["sl2s.correlation_id"]
    ]
    assert [e["attributes"].get("sl2s.step") for e in bob] == [
        "user_attempted_login_as_username_and_password",
        "received_request_to_login_as_username",
        "testing_password_for_username",  # its user log line (INFO, captured) comes first
    ]
    assert bob[-1]["event_name"] == "sl2s.log"
    assert len([e for e in before if e not in bob]) >= 6  # ann's run and its log line
    assert incident.trigger["severity_text"] == "ERROR"
    after = [e for e in incident.events if e["sl2s.incident"] == "after"]
    assert len(after) == 3 and incident.footer["reason"] == "limit"
    assert "s3cret" not in incident.path.read_bytes().decode("latin-1")  # gz, but also:
    import gzip

    assert b"s3cret" not in gzip.decompress(incident.path.read_bytes())

    story = CliRunner().invoke(app, ["story", str(logs), "--failed"])
    assert story.exit_code == 0, story.output
    assert "-- call client -> server" in story.output
    assert (
        "stopped with ERROR at server login/testing_password_for_username: ValueError: wrong password for bob"
        in story.output
    )

    patterns = CliRunner().invoke(app, ["patterns", str(tree / "login.csv"), str(logs)])
    assert patterns.exit_code == 1, patterns.output
    lines = patterns.output.splitlines()
    assert any(
        x.startswith(
            "stopped early  1x  login: stopped after 'testing_password_for_username'"
        )
        for x in lines
    )
    assert any(
        x.startswith("log line  2x  ElasticSearch query failed to IP * on run *")
        for x in lines
    )
    assert not any(
        x.startswith(("unknown template", "wrong machine", "out of order"))
        for x in lines
    )


def test_otel_spans_per_segment_with_step_events(tree):
    out = run_child(
        tree,
        """
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry import trace
        from sl2s.observe import install
        from sl2s.observe.otel import SpanListener
        from sl2s.runtime import hooks

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        install()  # a configured SDK provider: the span listener comes with the recorder
        assert sum(isinstance(x, SpanListener) for x in hooks.listeners()) == 1
        events = []
        hooks.subscribe(events.append)
        import services.client as client
        client.login(username="ann", password="hunter2")
        try:
            client.login(username="bob", password="x")
        except Exception:
            pass
        spans = [
            {"name": s.name, "trace": f"{s.context.trace_id:032x}", "span": f"{s.context.span_id:016x}",
             "parent": f"{s.parent.span_id:016x}" if s.parent else None, "status": s.status.status_code.name,
             "events": [e.name for e in s.events]}
            for s in exporter.get_finished_spans()
        ]
        print(json.dumps({"spans": spans, "events": [[e["trace_id"], e["span_id"], e["attributes"].get("sl2s.step")] for e in events]}))
        """,
    )
    data = json.loads(out.strip().splitlines()[-1])
    spans = data["spans"]
    assert sorted(s["name"] for s in spans) == [
        "login @ client",
        "login @ client",
        "login @ server",
        "login @ server",
    ]
    by_span = {s["span"]: s for s in spans}
    # every event belongs to the span with its own trace/span id
    for trace_id, span_id, _step in data["events"]:
        assert by_span[span_id]["trace"] == trace_id
    ok_client = next(
        s for s in spans if s["name"] == "login @ client" and s["status"] != "ERROR"
    )
    ok_server = next(s for s in spans if s["parent"] == ok_client["span"])
    assert ok_client["events"] == [
        "user_attempted_login_as_username_and_password",
        "login_successful",
    ]
    assert ok_server["events"] == [
        "received_request_to_login_as_username",
        "testing_password_for_username",
        "setting_session_for_username",
        "finish_handling_user_login",
    ]
    failed = [s for s in spans if s["status"] == "ERROR"]
    assert {s["name"] for s in failed} == {"login @ server", "login @ client"}
