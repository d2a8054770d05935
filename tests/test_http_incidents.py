"""A served machine's incidents over HTTP (`GET /sl2s/v1/incidents/…`, signed like hops) and
`sl2s incidents list|show|errors --url`, against `sl2s serve` processes on 127.0.0.1 whose step
raises; the failures are driven by `sl2s run --remote`.
"""

from __future__ import annotations

import http.client
import sys
import time
from pathlib import Path

import orjson
import pytest

from sl2s.observe.incidents import fetch_remote, fetch_remote_errors, signed_get_headers
from sl2s.runtime.transport.http import protocol as p

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import (  # noqa: E402
    ThreadServer,
    base_env,
    loopback_socket,
    serve_process,
    sl2s,
    stop,
)

KEY = "test-hop-key-" + "0123456789abcdef" * 2
KEYS = (KEY.encode(),)
BASE = "/sl2s/v1/incidents"

PLAN = """request,log,machine
job,Client sends :job,client
job,Server works on :job,server
job,Client got :job back,client
"""

SERVER_STEPS = '''"""Steps of flow 'job' that run on machine 'server' (test behaviour)."""

from sl2s.runtime import step


@step("job", "Server works on :job")
def server_works_on_job(job):
    if job.startswith("boom"):
        raise ValueError(f"server cannot do {job}")
    return {"done_by": "server"}
'''


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("incidents")
    (base / "job.csv").write_text(PLAN, encoding="utf-8")
    out = base / "svc_incidents"
    done = sl2s("generate", str(base / "job.csv"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    (out / "server" / "job.py").write_text(SERVER_STEPS, encoding="utf-8")
    return out


class Served:
    """`sl2s serve TREE server` with a hop key and its own log dir."""

    def __init__(self, tree: Path, logs: Path) -> None:
        self.tree, self.logs = tree, logs
        self.proc, self.url = serve_process(
            tree, "server", base_env(SL2S_HOP_KEY=KEY, SL2S_LOG_DIR=str(logs))
        )

    def fail(self, job: str, client_logs: Path) -> None:
        """Run the flow from this process's side (`--remote`) so that the server's step raises."""
        env = base_env(
            SL2S_HOP_KEY=KEY, SL2S_URL_SERVER=self.url, SL2S_LOG_DIR=str(client_logs)
        )
        done = sl2s("run", str(self.tree), "job", f"job={job}", "--remote", env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"server cannot do {job}" in done.stderr

    def stop(self) -> None:
        # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully
        assert stop(self.proc) in (0, -15), self.proc.stderr.read()


def wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def request(
    url: str, target: str, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    """One GET of `target` exactly as given, on a fresh connection."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def signed_get(url: str, target: str, now: float | None = None, keys=KEYS):
    headers = signed_get_headers(keys, target, time.time() if now is None else now)
    return request(url, target, headers)


@pytest.fixture(scope="module")
def served(tree, tmp_path_factory):
    """A served machine with one incident (its step raised once)."""
    logs = tmp_path_factory.mktemp("served")
    server = Served(tree, logs / "server")
    try:
        server.fail("boom-1", logs / "client")
        assert wait_for(lambda: fetch_remote(server.url, keys=KEYS))
        yield server
    finally:
        server.stop()


def test_list_over_http_shows_the_incident_of_the_step_that_raised(served):
    status, headers, data = signed_get(served.url, BASE + "/")
    assert status == 200, data
    answer = orjson.loads(data)
    (summary,) = answer["incidents"]
    assert answer["cursor"] == summary["id"]
    assert summary["machine"] == "server" and summary["flow"] == "job"
    assert summary["exception"] == "ValueError"
    assert summary["message"] == "server cannot do boom-1"
    assert summary["links"]["plan"].endswith("job.csv:3")
    # the files are the machine's (SL2S_LOG_DIR of the served process)
    assert any(served.logs.glob(f"{summary['id']}.jsonl*"))
    # the client helper reads the same, from the machine's base URL or the endpoint itself
    assert fetch_remote(served.url, keys=KEYS) == answer["incidents"]
    assert fetch_remote(served.url + BASE, keys=KEYS) == answer["incidents"]


def test_show_returns_the_incident_lines(served):
    (summary,) = fetch_remote(served.url, keys=KEYS)
    status, headers, data = signed_get(served.url, f"{BASE}/{summary['id']}")
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in data.splitlines()]
    assert lines[0]["sl2s.incident"] == "header" and lines[0]["id"] == summary["id"]
    (trigger,) = [line for line in lines if line["sl2s.incident"] == "trigger"]
    assert trigger["attributes"]["exception.type"] == "ValueError"
    assert "boom-1" in trigger["attributes"]["exception.message"]
    # a unique part of the id is enough; an unknown id is a 404
    incident = fetch_remote(served.url, incident_id=summary["id"][-8:], keys=KEYS)
    assert incident.id == summary["id"] and incident.header == lines[0]
    assert signed_get(served.url, f"{BASE}/incident-19990101")[0] == 404
    # the error groups
    status, _, data = signed_get(served.url, f"{BASE}/errors")
    (group,) = orjson.loads(data)["errors"]
    assert status == 200 and group["count"] >= 1
    assert group["exception_type"] == "ValueError"
    assert group["incidents"] == [summary["id"]]
    (remote_group,) = fetch_remote_errors(served.url, keys=KEYS).sorted()
    assert remote_group.as_dict() == group


def rejected(answer, code: str) -> bool:
    status, headers, data = answer
    return (
        status == 401
        and headers[p.H_OUTCOME] == "rejected"
        and orjson.loads(data)["code"] == code
    )


def test_unsigned_forged_stale_and_replayed_reads_get_401(served):
    url = served.url
    for target in (
        BASE + "/",
        f"{BASE}/errors",
        f"{BASE}/anything",
        BASE + "/?since=x",
    ):
        assert rejected(request(url, target), "unsigned"), target
    target = BASE + "/"
    # another key; a signature for another path or query; a signed POST sent as GET
    assert rejected(signed_get(url, target, keys=(b"x" * 32,)), "bad_signature")
    forged = signed_get_headers(KEYS, BASE + "/?since=a", time.time())
    assert rejected(request(url, BASE + "/?since=b", forged), "bad_signature")
    forged = signed_get_headers(KEYS, f"{BASE}/errors", time.time())
    assert rejected(request(url, target, forged), "bad_signature")
    headers = signed_get_headers(KEYS, target, time.time())
    headers[p.H_SIGNATURE] = p.sign(
        KEYS[0],
        headers[p.H_TIMESTAMP],
        headers[p.H_IDEMPOTENCY_KEY],
        "POST",
        target,
        b"",
    )
    assert rejected(request(url, target, headers), "bad_signature")
    # too old, too far ahead (the window is ±300 s)
    assert rejected(signed_get(url, target, now=time.time() - 400), "stale")
    assert rejected(signed_get(url, target, now=time.time() + 400), "stale")
    # headers no signature can match are refused, not a crash (and named, as on hops)
    headers = signed_get_headers(KEYS, target, time.time())
    headers[p.H_TIMESTAMP] = "\u00b2" * 3
    assert rejected(request(url, target, headers), "bad_timestamp")
    # a captured signed read is accepted once
    headers = signed_get_headers(KEYS, target, time.time())
    assert request(url, target, headers)[0] == 200
    assert rejected(request(url, target, headers), "replayed")
    # a new nonce makes a new signature: accepted
    assert signed_get(url, target)[0] == 200
    # health stays open for probes
    assert request(url, "/sl2s/v1/health")[0] == 200


def test_since_cursor_returns_only_newer_incidents(tree, tmp_path):
    server = Served(tree, tmp_path / "server")
    try:
        server.fail("boom-a", tmp_path / "client")
        first = wait_for(lambda: fetch_remote(server.url, keys=KEYS))
        (a,) = first
        # a failure inside the first incident's trailing window joins that incident: wait it out
        assert wait_for(
            lambda: fetch_remote(server.url, keys=KEYS)[0]["complete"], seconds=30
        )
        status, _, data = signed_get(server.url, f"{BASE}/?since={a['id']}")
        assert status == 200
        assert orjson.loads(data) == {"incidents": [], "cursor": a["id"]}
        server.fail("boom-b", tmp_path / "client")
        newer = wait_for(lambda: fetch_remote(server.url, since=a["id"], keys=KEYS))
        (b,) = newer
        assert b["id"] > a["id"] and b["message"] == "server cannot do boom-b"
        assert [s["id"] for s in fetch_remote(server.url, keys=KEYS)] == [
            a["id"],
            b["id"],
        ]
        status, _, data = signed_get(server.url, f"{BASE}/?since={a['id']}")
        assert orjson.loads(data)["cursor"] == b["id"]
    finally:
        server.stop()


def cli(*args: str, **env: str):
    return sl2s("incidents", *args, env=base_env(**env))


def test_cli_reads_incidents_from_a_running_machine(served, tmp_path):
    url = served.url
    (summary,) = fetch_remote(url, keys=KEYS)
    done = cli("list", "--url", url, SL2S_HOP_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert summary["id"] in done.stdout and "ValueError" in done.stdout
    done = cli("list", "--url", url, "--since", summary["id"], SL2S_HOP_KEY=KEY)
    assert done.returncode == 0 and done.stdout == "no incidents\n"
    done = cli("show", summary["id"], "--url", url + BASE, SL2S_HOP_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(summary["id"])
    assert "server cannot do boom-1" in done.stdout and "job.csv:3" in done.stdout
    done = cli("errors", "--url", url, SL2S_HOP_KEY=KEY)
    assert done.returncode == 0 and "ValueError" in done.stdout, done.stderr
    # the key `sl2s up` wrote for DIR (DIR/.sl2s/hop.key) when SL2S_HOP_KEY is not set
    directory = tmp_path / "services"
    (directory / ".sl2s").mkdir(parents=True)
    (directory / ".sl2s" / "hop.key").write_text(KEY + "\n", encoding="utf-8")
    done = cli("list", "--url", url, "--dir", str(directory))
    assert done.returncode == 0 and summary["id"] in done.stdout, done.stderr


def test_cli_says_what_is_wrong_without_a_traceback(served):
    url = served.url
    done = cli("list", "--url", url)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "401 unsigned" in done.stderr and "SL2S_HOP_KEY" in done.stderr
    done = cli("show", "whatever", "--url", url, SL2S_HOP_KEY="another-key-" + "9" * 20)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "401 bad_signature" in done.stderr and "SL2S_HOP_KEY" in done.stderr
    done = cli("show", "incident-19990101", "--url", url, SL2S_HOP_KEY=KEY)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "404" in done.stderr and "no incident" in done.stderr
    sock = loopback_socket()  # a port nobody answers on once closed
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    done = cli("errors", "--url", closed, SL2S_HOP_KEY=KEY)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot reach the machine" in done.stderr and closed in done.stderr


def test_without_a_key_reads_are_open_like_hops(tmp_path):
    """No hop key (only loopback, or --insecure): unsigned reads pass, as unsigned hops do."""
    from starlette.applications import Starlette

    from sl2s.runtime.transport.http.server import incidents_mount

    with ThreadServer(Starlette(routes=[incidents_mount(tmp_path, keys=())])) as server:
        status, _, data = request(server.url, BASE + "/")
        assert status == 200 and orjson.loads(data) == {
            "incidents": [],
            "cursor": None,
        }
        assert fetch_remote(server.url, keys=KEYS) == []  # a signed read passes too
