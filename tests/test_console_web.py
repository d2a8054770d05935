"""The console served for real on 127.0.0.1 (uvicorn in a thread), read over HTTP: pages, links,
tokens, headers, secrets; and machines read over the signed incidents/events endpoints.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from console_server import Served
from typer.testing import CliRunner

from sl2s.cli import app as cli
from sl2s.console.app import build_app, check_bind, open_console
from sl2s.diagnostics import Sl2sError

DATA = Path(__file__).resolve().parent / "data" / "console"
PARENT = "aaaa0000000000000000000000000001"
CHILD = "bbbb0000000000000000000000000002"
FAILED = "cccc0000000000000000000000000003"
DAVE = "dddd0000000000000000000000000004"  # its legacy machine's log line carries an exception


@pytest.fixture
def logs(tmp_path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    shutil.copy(DATA / "run_meta_parent_and_child.jsonl", d / "server.jsonl")
    shutil.copy(DATA / "leaked_secret_value.jsonl", d / "legacy.jsonl")
    return d


@pytest.fixture
def served(tmp_path, logs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SL2S_REPO_URL", "https://github.com/org/app")
    console = open_console([str(logs)], index_path=str(tmp_path / "i.sqlite3"))
    with Served(build_app(console, refresh_every=0)) as server:
        yield server


def test_the_runs_page_finds_runs_by_metadata_and_links_each(served):
    status, html, headers = served.get("/?q=actor%3Dbob")
    assert status == 200
    assert re.findall(r'class="run-link" href="/run/(\w+)"', html) == [PARENT, CHILD]
    assert "actor=bob" in html and "ticket=JIRA-12" in html
    # a child run names its parent by the end of its id: ids begin with the time they were made,
    # so runs started together share their first characters
    assert f'child of <a href="/run/{PARENT}">{PARENT[-8:]}</a>' in html
    assert 'class="stream-link" href="/stream?field=actor%3Dbob&amp;flow="' in html
    status, html, _ = served.get("/?outcome=failed")
    assert re.findall(r'class="run-link" href="/run/(\w+)"', html) == [DAVE, FAILED]
    status, html, _ = served.get("/?outcome=lost")
    assert status == 400 and "unknown outcome" in html


def test_a_run_page_shows_metadata_fields_links_and_its_child_runs(served):
    status, html, _ = served.get(f"/run/{PARENT}")
    assert status == 200
    assert "ann cannot log in" in html and "JIRA-12" in html
    assert f'class="child-link" href="/run/{CHILD}"' in html
    assert (
        '<a class="permalink" href="/event/20000000000000000000000000000002">' in html
    )
    assert 'href="#e-20000000000000000000000000000001"' in html  # causation link
    assert "https://github.com/org/app/blob/HEAD/services/server/login.py#L17" in html
    assert (
        '<a href="https://github.com/org/app/blob/HEAD/login.csv#L4">login.csv:4</a>'
        in html
    )
    assert '<th scope="row">session</th><td><a href="/?q=session%3Ds-ann"' in html
    assert '<th scope="row">password</th><td>***</td>' in html
    assert "<svg" in html and "flow login" in html
    _, child, _ = served.get(f"/run/{CHILD}")
    assert f'class="parent-link" href="/run/{PARENT}"' in child
    assert "setting_session_for_username" in child


def test_an_event_permalink_opens_its_run_with_the_event_highlighted(served):
    status, html, _ = served.get("/event/20000000000000000000000000000004")
    assert status == 200
    assert f"Run <code>{CHILD}</code>" in html
    marked = re.findall(r'<li id="e-(\d+)" class="event[^"]*highlight"', html)
    assert marked == ["20000000000000000000000000000004"]
    assert served.get("/event/404")[0] == 404
    assert served.get("/run/nope")[0] == 404


def test_a_failed_run_shows_its_failure(served):
    _, html, _ = served.get(f"/run/{FAILED}")
    assert "PermissionError" in html and "wrong password for carol" in html
    assert 'class="badge failed"' in html


def test_a_stream_is_a_linkable_audit_page(served):
    status, html, _ = served.get("/stream?field=tenant_id%3D1234&flow=login")
    assert status == 200
    assert html.count("<tr") == 1 + 3
    assert served.get("/stream?field=oops")[0] == 400


def test_no_page_loads_anything_from_elsewhere_and_secrets_stay_masked(served):
    pages = [
        "/",
        f"/run/{PARENT}",
        f"/run/{FAILED}",
        "/run/dddd0000000000000000000000000004",
        "/event/30000000000000000000000000000002",
        "/stream?field=username%3Ddave",
    ]
    for path in pages:
        status, html, headers = served.get(path)
        assert status == 200, path
        assert "Tr0ub4dor" not in html, path
        assert "default-src 'none'" in headers["content-security-policy"]
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert url.startswith(("/", "#", "?", "https://github.com/org/app/")), (
                path,
                url,
            )
    assert (
        "retrying with *** for dave"
        in served.get("/run/dddd0000000000000000000000000004")[1]
    )


def test_a_token_is_asked_for_beyond_loopback_and_checked_on_every_request(
    tmp_path, logs
):
    with pytest.raises(Sl2sError, match="requires a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t0k")
    check_bind("127.0.0.1", None)
    console = open_console([str(logs)], index_path=str(tmp_path / "i.sqlite3"))
    with Served(build_app(console, token="s3cr3t-token", refresh_every=0)) as server:
        assert server.get("/")[0] == 401
        assert server.get("/?token=wrong")[0] == 401
        assert server.get("/", {"Authorization": "Bearer s3cr3t-token"})[0] == 200
        import http.cookiejar
        import urllib.request

        browser = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        with browser.open(
            server.url + "/run/" + PARENT + "?token=s3cr3t-token"
        ) as answer:
            # redirected to the page without the token in its address, the cookie set
            assert answer.geturl() == server.url + "/run/" + PARENT
            assert "s3cr3t-token" not in answer.read().decode()
        with browser.open(server.url + "/") as answer:
            assert answer.status == 200
        assert server.get("/", {"Cookie": "sl2s_console_token=s3cr3t-token"})[0] == 200


def test_the_command_refuses_a_public_address_without_a_token_and_missing_logs(
    tmp_path,
):
    result = CliRunner().invoke(cli, ["console", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "requires a token" in str(result.exception)
    result = CliRunner().invoke(cli, ["console", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such file or directory" in str(
        result.exception
    )


def test_machines_are_read_over_the_signed_endpoints(tmp_path, logs, monkeypatch):
    """A machine serving its incidents and events behind the hop signature; the console pulls
    them with the key, incrementally, and says so when the key is wrong."""
    from starlette.applications import Starlette

    from sl2s.runtime.transport.http.server import events_mount, incidents_mount

    key = (b"k" * 32,)
    machine_logs = tmp_path / "machine"
    machine_logs.mkdir()
    shutil.copy(logs / "server.jsonl", machine_logs / "server.jsonl")
    machine = Starlette(
        routes=[
            # as every served machine mounts them (transport.http.server.machine_app)
            incidents_mount(machine_logs, key),
            events_mount(machine_logs, key),
        ]
    )
    monkeypatch.chdir(tmp_path)
    with Served(machine) as m:
        console = open_console([], [m.url], str(tmp_path / "i.sqlite3"), key)
        assert console.remote.errors == {}
        count = "SELECT count(*) FROM runs"
        assert console.index.conn.execute(count).fetchone()[0] == 3
        extra = (DATA / "leaked_secret_value.jsonl").read_bytes()
        with (machine_logs / "server.jsonl").open("ab") as handle:
            handle.write(extra)
        stats = console.refresh()
        assert stats.events == 2
        assert console.index.conn.execute(count).fetchone()[0] == 4
        wrong = open_console([], [m.url], str(tmp_path / "j.sqlite3"), (b"x" * 32,))
        assert "refused (401" in wrong.remote.errors[m.url]


def test_the_command_prints_its_address_and_serves_until_stopped(tmp_path, logs):
    import os
    import re as _re
    import signal
    import subprocess
    import sys
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sl2s.cli import main; main()",
            "console",
            str(logs),
            "--port",
            "0",
            "--refresh",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        found = _re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        assert found, line + process.stderr.read()
        assert "4 runs indexed" in line
        with urllib.request.urlopen(
            found.group(1) + "?q=username%3Dann", timeout=20
        ) as page:
            assert PARENT in page.read().decode()
        assert (tmp_path / ".sl2s" / "console.sqlite3").is_file()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode == 0, process.stderr.read()
