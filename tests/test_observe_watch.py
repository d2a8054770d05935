"""`sl2s watch` end to end (issue: errors reach people first, item 4): real `sl2s watch` processes
follow log directories, a plain-text log and a served machine, and announce to the terminal, to a
webhook received by a real HTTP server on 127.0.0.1 (signature verified), and to a command.
"""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from observe_tree import SL2S, clean_env, make_tree, run_job, sl2s

from sl2s.observe.announce import Announcement, Gate, sign, verify

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import serve_process, stop  # noqa: E402

SECRET = "watch-secret-0123456789"


class Receiver:
    """A webhook receiver: a real HTTP server on 127.0.0.1 keeping what it was sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((dict(self.headers), body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Watcher:
    """`sl2s watch …` in a subprocess; started once it says it is watching."""

    def __init__(self, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [*SL2S, "watch", *args],
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err: list[str] = []
        self.out: list[str] = []
        self._threads = [
            threading.Thread(
                target=self._read, args=(self.proc.stderr, self.err), daemon=True
            ),
            threading.Thread(
                target=self._read, args=(self.proc.stdout, self.out), daemon=True
            ),
        ]
        for t in self._threads:
            t.start()
        assert wait_for(
            lambda: any(line.startswith("watching ") for line in self.err)
        ), "".join(self.err)

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(20)
        for t in self._threads:
            t.join(5)
        return code


def wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("watch"))


def test_a_new_error_after_a_known_one_is_announced_once_to_the_webhook(tree, tmp_path):
    logs = str(tmp_path / "logs")
    sl2s(
        "deploys",
        "record",
        str(tree),
        "--revision",
        "r7",
        "--target",
        "prod",
        "--logs",
        logs,
        env=clean_env(),
    )
    assert (
        run_job(tree, "perm-1", SL2S_LOG_DIR=logs, SL2S_REVISION="r7").returncode == 1
    )
    receiver = Receiver()
    try:
        watcher = Watcher(
            logs,
            "--webhook",
            receiver.url,
            "--settle",
            "0.5",
            SL2S_WATCH_SECRET=SECRET,
            SL2S_REVISION="r7",
        )
        assert (
            run_job(tree, "perm-2", SL2S_LOG_DIR=logs, SL2S_REVISION="r7").returncode
            == 1
        )
        assert (
            run_job(tree, "empty-1", SL2S_LOG_DIR=logs, SL2S_REVISION="r7").returncode
            == 1
        )
        assert (
            run_job(tree, "empty-2", SL2S_LOG_DIR=logs, SL2S_REVISION="r7").returncode
            == 1
        )
        assert wait_for(lambda: receiver.received)
        time.sleep(1.5)  # anything else would have arrived by now
        assert watcher.stop() == 0
    finally:
        receiver.close()
    assert len(receiver.received) == 1, [b for _, b in receiver.received]
    headers, body = receiver.received[0]
    assert headers["Content-Type"] == "application/json"
    assert verify(
        SECRET.encode(), headers["X-Sl2s-Timestamp"], body, headers["X-Sl2s-Signature"]
    )
    assert not verify(
        b"another secret",
        headers["X-Sl2s-Timestamp"],
        body,
        headers["X-Sl2s-Signature"],
    )
    data = json.loads(body)
    assert data["text"].startswith(
        "[new error] IndexError: Cannot choose from an empty sequence"
    )
    assert data["sl2s"]["kind"] == "new error"
    details = data["sl2s"]["details"]
    assert details["line"].endswith("server/job.py:17")
    assert details["suspected"].startswith("deploy #1 of r7")
    assert data["sl2s"]["correlation_id"]
    assert data["sl2s"]["before"]  # the lines before it
    assert "tok-s3cr3t-42" not in body.decode()
    assert "watch stopped after" in "".join(watcher.err)


def test_a_resolved_error_that_recurs_in_a_later_revision_is_announced_as_reactivated(
    tree, tmp_path
):
    logs = str(
        tree / ".sl2s" / "logs"
    )  # the tree's own: its sl2s.revision says the revision
    env = clean_env()
    assert (
        sl2s("deploys", "record", str(tree), "--revision", "r1", env=env).returncode
        == 0
    )
    assert run_job(tree, "empty-1").returncode == 1
    listed = sl2s("errors", "list", "--logs", logs, env=env).stdout
    fp = next(line.split()[0] for line in listed.splitlines() if "IndexError" in line)
    assert (
        sl2s("errors", "resolve", fp, "--in", "r2", "--logs", logs, env=env).returncode
        == 0
    )
    out = tmp_path / "announced.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import sys\n"
        f"open({str(out)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')\n",
        encoding="utf-8",
    )
    watcher = Watcher(logs, "--command", f"{sys.executable} {hook}", "--quiet")
    try:
        assert (
            sl2s("deploys", "record", str(tree), "--revision", "r2", env=env).returncode
            == 0
        )
        assert run_job(tree, "empty-2").returncode == 1
        assert wait_for(lambda: out.exists() and out.read_text().strip())
        time.sleep(1.0)
    finally:
        assert watcher.stop() == 0
    (announced,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert announced["kind"] == "reactivated error"
    assert announced["details"]["revision"] == "r2"
    assert announced["details"]["suspected"].startswith("deploy #2 of r2")
    assert "".join(watcher.out) == ""  # --quiet
    shown = sl2s("errors", "show", fp, "--logs", logs, env=env).stdout
    assert "state         reactivated" in shown


def test_a_never_seen_text_line_is_announced_with_the_lines_before_it(tmp_path):
    log = tmp_path / "app.log"
    known = (
        "2026-11-23 10:00:01,234 INFO app.web: user 12 logged in from 10.0.0.7\n"
        "2026-11-23 10:00:02,001 INFO app.web: user 13 logged in from 10.0.0.9\n"
    )
    log.write_text(known, encoding="utf-8")
    watcher = Watcher(str(log), "--state", str(tmp_path / "state"))
    try:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(
                "2026-11-23 10:00:03,001 INFO app.web: user 14 logged in from 10.0.0.7\n"
            )
            handle.flush()
            time.sleep(0.3)
            handle.write(
                "2026-11-23 10:00:04,000 ERROR php: PHP Fatal error:  Uncaught Error: Call to "
                "undefined function mysql_connect() in /var/www/shop/db.php:41\n"
            )
        assert wait_for(lambda: any("[new pattern]" in line for line in watcher.out))
        time.sleep(0.5)
    finally:
        assert watcher.stop() == 0
    text = "".join(watcher.out)
    assert text.count("[new pattern]") == 1, text
    assert (
        "[new pattern] log line: PHP Fatal error: Uncaught Error: Call to undefined"
        in text
    )
    assert "(app.log; app.log:4)" in text
    assert "    before:    app.log:2  INFO  user 13 logged in from 10.0.0.9\n" in text
    assert "    before:    app.log:3  INFO  user 14 logged in from 10.0.0.7\n" in text


def test_from_end_learns_nothing_from_what_is_there(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("2026-11-23 10:00:01 INFO user 12 logged in\n", encoding="utf-8")
    watcher = Watcher(str(log), "--from-end", "--state", str(tmp_path / "state"))
    try:
        with log.open("a", encoding="utf-8") as handle:
            handle.write("2026-11-23 10:00:02 INFO user 13 logged in\n")
        assert wait_for(lambda: any("[new pattern]" in line for line in watcher.out))
    finally:
        assert watcher.stop() == 0
    text = "".join(watcher.out)
    assert "[new pattern] log line: user * logged in  (app.log; app.log:2)" in text
    assert "before:" not in text  # the line before it was not read


def test_a_served_machine_is_followed_through_its_signed_endpoint(tree, tmp_path):
    key = "watch-hop-key-" + "0123456789abcdef" * 2
    server_logs = tmp_path / "server"
    proc, url = serve_process(
        tree,
        "server",
        clean_env(SL2S_HOP_KEY=key, SL2S_LOG_DIR=str(server_logs), SL2S_REVISION="r9"),
    )
    try:
        bad = subprocess.run(  # an unsigned watcher is refused and says why
            [
                *SL2S,
                "watch",
                "--url",
                url,
                "--state",
                str(tmp_path / "w0"),
                "--duration",
                "2",
            ],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "refused (401 unsigned)" in bad.stderr, bad.stderr
        assert bad.returncode == 0 and "Traceback" not in bad.stderr
        watcher = Watcher(
            "--url",
            url,
            "--state",
            str(tmp_path / "w"),
            "--settle",
            "0.5",
            SL2S_HOP_KEY=key,
        )
        try:
            done = run_job(
                tree,
                "perm-3",
                SL2S_URL_SERVER=url,
                SL2S_HOP_KEY=key,
                SL2S_TRANSPORT="http",
                SL2S_LOG_DIR=str(tmp_path / "client"),
            )
            assert done.returncode == 1, done.stderr
            assert wait_for(lambda: any("[new error]" in line for line in watcher.out))
        finally:
            assert watcher.stop() == 0
    finally:
        stop(proc)
    text = "".join(watcher.out)
    assert "[new error] PermissionError: no access to perm-3" in text
    assert "    revision:  r9\n" in text


def test_the_gate_deduplicates_and_rate_limits():
    now = [0.0]
    gate = Gate(rate_per_minute=60, burst=2, clock=lambda: now[0])

    def a(key):
        return Announcement("new pattern", key, key)

    assert gate.admit(a("k1")) and not gate.admit(a("k1"))
    assert gate.admit(a("k2"))
    assert not gate.admit(a("k3")) and not gate.admit(a("k4"))  # the burst is spent
    now[0] += 1.0
    fifth = a("k5")
    assert gate.admit(fifth) and fifth.suppressed == 2
    assert "(2 more announcement(s) held back by the rate limit)" in fifth.text()


def test_signatures_cover_time_and_body():
    s = sign(b"k", "100", b"{}")
    assert verify(b"k", "100", b"{}", s)
    assert not verify(b"k", "101", b"{}", s)
    assert not verify(b"k", "100", b"{ }", s)


def _event(i: int, cid: str, step: str, template: str, machine: str = "client") -> str:
    return json.dumps(
        {
            "timestamp": f"2026-11-23T10:00:0{i}.000000Z",
            "severity_text": "INFO",
            "severity_number": 9,
            "body": template,
            "event_name": "sl2s.step",
            "resource": {"service.name": machine},
            "attributes": {
                "sl2s.event_id": f"{cid}-{i}",
                "sl2s.correlation_id": cid,
                "sl2s.causation_id": f"{cid}-{i - 1}" if i else None,
                "sl2s.flow": "job",
                "sl2s.step": step,
                "sl2s.machine": machine,
                "sl2s.template": template,
            },
        }
    )


def test_with_the_plan_a_new_stopping_point_and_an_unknown_step_are_announced(
    tree, tmp_path
):
    logs = tmp_path / "logs"
    logs.mkdir()
    events = logs / "client.jsonl"
    events.write_text("", encoding="utf-8")
    plan = str(tree.parent / "job.csv")
    watcher = Watcher(str(logs), "--plan", plan, "--settle", "0.3")
    try:
        with events.open("a", encoding="utf-8") as handle:
            handle.write(
                _event(
                    0,
                    "r1",
                    "client_sends_job_with_token",
                    "Client sends :job with #token",
                )
                + "\n"
            )
            handle.write(_event(1, "r1", "client_hums", "Client hums :tune") + "\n")
        assert wait_for(lambda: "stopped early" in "".join(watcher.out))
        time.sleep(0.5)
    finally:
        assert watcher.stop() == 0
    text = "".join(watcher.out)
    assert '[new pattern] unknown template: job: "Client hums :tune"' in text
    assert (
        "[stopped early] flow job stopped after 'client_sends_job_with_token' on client, "
        "before its last step 'client_got_job_back'" in text
    )
    assert text.count("[stopped early]") == 1
