"""`sl2s story` prints each event's id, or console permalinks when the console's URL is
configured, and the fields each step saw; `sl2s incidents show` prints the fields too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.observe.incidents import Incident, render_show

DATA = Path(__file__).resolve().parent / "data" / "console"
PARENT = "aaaa0000000000000000000000000001"


def story(tmp_path, monkeypatch, *args, env=None):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SL2S_CONSOLE_URL", raising=False)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    shutil.copy(DATA / "run_meta_parent_and_child.jsonl", logs / "server.jsonl")
    result = CliRunner().invoke(
        app, ["story", str(logs), "--correlation-id", PARENT, *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_story_prints_event_ids_and_fields(tmp_path, monkeypatch):
    out = story(tmp_path, monkeypatch)
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "user_attempted_login" in line)
    assert lines[first].endswith("  #10000000000000000000000000000001")
    assert lines[first + 1].strip() == "fields: username=ann password=***"
    assert "fields: username=ann session=s-ann" in out
    assert out.count("  #") == 6


def test_story_prints_permalinks_when_the_console_url_is_set(tmp_path, monkeypatch):
    out = story(
        tmp_path, monkeypatch, env={"SL2S_CONSOLE_URL": "http://127.0.0.1:8700/"}
    )
    assert out.splitlines()[0].endswith(f"  http://127.0.0.1:8700/run/{PARENT}")
    assert "  http://127.0.0.1:8700/event/20000000000000000000000000000002" in out
    (tmp_path / "sl2s.toml").write_text('[console]\nurl = "https://console.example"\n')
    out = story(tmp_path, monkeypatch, "--format", "markdown")
    assert (
        "[`20000000000000000000000000000006`](https://console.example/event/20000000000000000000000000000006)"
        in out
    )
    assert "| username=ann password=*** |" in out


def test_incidents_show_prints_the_fields_each_event_saw():
    events = [
        orjson.loads(line)
        for line in (DATA / "run_meta_parent_and_child.jsonl")
        .read_bytes()
        .splitlines()[-3:]
    ]
    for e in events:
        e["sl2s.incident"] = "before"
    header = {
        "sl2s.incident": "header",
        "id": "incident-1",
        "trigger": events[-1],
        "service.name": "server",
    }
    text = render_show(Incident("incident-1", Path("x"), header, tuple(events), None))
    assert "      fields: username=carol password=*** tenant_id=1234" in text
    assert "#20000000000000000000000000000008" in text
