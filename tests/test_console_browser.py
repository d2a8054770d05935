"""The console in a real browser (Playwright driving the system's Chromium; `.ci/ensure-chromium`
installs Debian's package): the sample login plan generated and run (one run failing), its logs
indexed, the console served on 127.0.0.1, and pages used as support would use them.

Screenshots go to the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from console_server import Served
from playwright.sync_api import expect, sync_playwright

from sl2s.console.app import build_app, open_console

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hunter2"
LOGIN = [
    "user_attempted_login_as_username_and_password",
    "received_request_to_login_as_username",
    "testing_password_for_username",
    "setting_session_for_username",
    "finish_handling_user_login",
    "login_successful",
]


def sl2s(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    return subprocess.run(
        [sys.executable, "-c", "from sl2s.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("console-browser")
    shutil.copy(ROOT / "sample_plans" / "login.csv", base / "login.csv")
    done = sl2s(base, "generate", "login.csv", "--out", "services")
    assert done.returncode == 0, done.stderr
    server = base / "services" / "server" / "login.py"
    old = (
        "def testing_password_for_username(username: object) -> None:\n"
        "    # Not implemented yet: this step does nothing.\n"
        "    return None\n"
    )
    source = server.read_text()
    assert old in source
    server.write_text(
        source.replace(
            old,
            (
                "def testing_password_for_username(username: str) -> None:\n"
                "    if username == 'bob':\n"
                "        raise PermissionError('wrong password for ' + username)\n"
                "    return None\n"
            ),
        )
    )
    assert (
        sl2s(
            base, "run", "services", "login", "username=ann", f"password={SECRET}"
        ).returncode
        == 0
    )
    failed = sl2s(
        base, "run", "services", "login", "username=bob", f"password={SECRET}"
    )
    assert failed.returncode == 1 and "PermissionError" in failed.stderr
    assert sl2s(base, "run", "services", "feed").returncode == 0
    return base


@pytest.fixture(scope="module")
def console_url(tree):
    console = open_console(
        [str(tree / "services" / ".sl2s" / "logs")],
        index_path=str(tree / "console.sqlite3"),
    )
    with Served(build_app(console, refresh_every=0)) as server:
        server.console = console
        yield server


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: run .ci/ensure-chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # nothing may be fetched from anywhere but the console itself
    elsewhere: list[str] = []
    context.on(
        "request",
        lambda r: (
            None if r.url.startswith("http://127.0.0.1:") else elsewhere.append(r.url)
        ),
    )
    p = context.new_page()
    yield p
    p.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert SECRET not in p.content()
    assert elsewhere == []
    context.close()


def run_of(served, username: str) -> str:
    return served.console.index.conn.execute(
        "SELECT cid FROM run_fields JOIN runs ON runs.id = run_fields.run "
        "WHERE key = 'username' AND value = ?",
        (username,),
    ).fetchone()[0]


def test_searching_a_field_value_finds_the_run(page, console_url):
    page.goto(console_url.url + "/")
    page.keyboard.press("/")  # the search box has the keyboard
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("username=bob")
    page.keyboard.press("Enter")
    links = page.locator("a.run-link")
    expect(links).to_have_count(1)
    expect(links.first).to_have_text(run_of(console_url, "bob"))
    expect(page.locator("tbody tr .badge")).to_have_text("failed")
    links.first.click()
    expect(page.locator("h1")).to_contain_text(run_of(console_url, "bob"))


def test_a_run_page_shows_every_step_and_hop_in_order(page, console_url):
    page.goto(f"{console_url.url}/run/{run_of(console_url, 'ann')}")
    steps = page.locator("ol.timeline li.event code.step").all_inner_texts()
    assert steps == LOGIN
    hops = page.locator("ol.timeline li.hop").all_inner_texts()
    assert [h.strip() for h in hops] == [
        "call client → server",
        "return server → client",
    ]
    order = page.locator("ol.timeline > li").evaluate_all(
        "items => items.map(li => li.classList.contains('hop') ? 'hop' : 'event')"
    )
    assert order == ["event", "hop", "event", "event", "event", "event", "hop", "event"]
    expect(page.locator("svg.seq a")).to_have_count(6)
    expect(page.locator("svg.seq line.seq-msg")).to_have_count(2)
    expect(page.get_by_text("completed").first).to_be_visible()
    assert (
        "password" in page.locator("ol.timeline li.event").first.inner_text()
    )  # fields, masked


def test_an_event_permalink_loads_with_the_event_highlighted(page, console_url):
    cid = run_of(console_url, "ann")
    eid = console_url.console.index.conn.execute(
        "SELECT event_id FROM events JOIN runs ON runs.id = events.run "
        "WHERE runs.cid = ? AND step = 'testing_password_for_username'",
        (cid,),
    ).fetchone()[0]
    page.goto(f"{console_url.url}/event/{eid}")
    marked = page.locator("li.event.highlight")
    expect(marked).to_have_count(1)
    expect(marked).to_have_attribute("id", f"e-{eid}")
    expect(marked).to_be_focused()
    expect(marked).to_be_in_viewport()
    expect(page.locator("svg.seq rect.seq-highlight")).to_have_count(1)
    # its permalink is on the page, and the causation link leads to the step before
    expect(marked.locator("a.permalink")).to_have_attribute("href", f"/event/{eid}")
    cause = marked.locator("dd a[href^='#e-']")
    target = cause.get_attribute("href")
    cause.click()
    assert page.url.endswith(target)
    expect(page.locator(target)).to_contain_text(
        "received_request_to_login_as_username"
    )


def test_a_failed_run_shows_its_incident(page, console_url):
    page.goto(f"{console_url.url}/run/{run_of(console_url, 'bob')}")
    incident = page.locator("section.incident")
    expect(incident).to_have_count(1)
    expect(incident).to_contain_text("PermissionError")
    expect(incident).to_contain_text("wrong password for bob")
    expect(page.locator("li.event.failed code.step")).to_have_text(
        "testing_password_for_username"
    )
    expect(page.locator("p.stopped")).to_contain_text("stopped with ERROR")


def test_keyboard_focus_is_visible_and_no_secret_is_in_any_page(
    page, console_url, tmp_path
):
    for path in [
        "/",
        f"/run/{run_of(console_url, 'ann')}",
        f"/run/{run_of(console_url, 'bob')}",
        "/stream?field=username%3Dann",
    ]:
        page.goto(console_url.url + path)
        assert SECRET not in page.content(), path
    page.goto(f"{console_url.url}/run/{run_of(console_url, 'ann')}")
    page.keyboard.press("Tab")  # the skip link first
    expect(page.locator("a.skip")).to_be_focused()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    assert (tmp_path / "run.png").stat().st_size > 10_000


def test_the_index_file_holds_no_secret(console_url, tree):
    conn = console_url.console.index.conn
    with console_url.console.lock:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = list(tree.glob("console.sqlite3*"))
    assert files
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    # while the run's events were indexed: the password field is there, masked
    assert (
        conn.execute(
            'SELECT count(*) FROM events WHERE instr(CAST(data AS TEXT), \'"password":"***"\') > 0'
        ).fetchone()[0]
        >= 2
    )
