"""Replicas of a machine (docs/deploy.md, "Replicas"): several addresses per machine in sl2s.toml
and `SL2S_URL_<MACHINE>`, the hop client's turn-taking and failover between them, and, end to end,
two `sl2s serve` processes of one machine on a shared PostgreSQL flow store with one of them killed
with -9 while concurrent flows run.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter

import pytest
from harness import ThreadServer, read_events, stop  # noqa: E402
from relay_flows import (  # puts tests/data/http on sys.path; the `relay` fixture: conftest.py
    COUNT,
    STEPS,
    listening_socket,
    open_store,
    serve_on,
    wait_for,
)
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from sl2s.runtime.transport.http.client import HopClient, HopUnreachable
from sl2s.runtime.transport.http.config import HopConfigError, load_config

# -- addresses: lists in sl2s.toml, commas in the environment ---------------------------------------


def services(tmp_path, toml: str):
    root = tmp_path / "services"
    root.mkdir()
    (root / "sl2s.toml").write_text(toml, encoding="utf-8")
    return root


def test_a_machine_lists_its_replicas_in_the_file_and_the_environment(tmp_path):
    root = services(
        tmp_path,
        '[machines]\nserver = ["http://127.0.0.1:8001/", "http://127.0.0.1:8002"]\n'
        'email = "http://127.0.0.1:9000"\n'
        '[machines.pay]\nurl = ["http://10.0.0.1:80", "http://10.0.0.2:80"]\nreplicas = 2\n',
    )
    config = load_config(root, environ={})
    assert config.addresses("server") == (
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
    )
    assert config.addresses("pay") == ("http://10.0.0.1:80", "http://10.0.0.2:80")
    # one address stays a plain URL (the client's single-URL path); the first replica is `url`
    assert config.addresses("email") == "http://127.0.0.1:9000"
    assert config.url("server") == "http://127.0.0.1:8001"
    assert config.addresses("nobody") is None
    assert config.describe("server") == (
        "machine 'server' at http://127.0.0.1:8001, http://127.0.0.1:8002"
        " (from services/sl2s.toml)"
    )
    # the environment overrides the file per machine: several URLs, or back to one
    config = load_config(
        root,
        environ={
            "SL2S_URL_EMAIL": "http://a:1, http://b:2,http://c:3",
            "SL2S_URL_SERVER": "http://127.0.0.1:7000",
        },
    )
    assert config.addresses("email") == ("http://a:1", "http://b:2", "http://c:3")
    assert config.sources["email"] == "environment SL2S_URL_EMAIL"
    assert config.addresses("server") == "http://127.0.0.1:7000"
    assert "server" not in config.replicas


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        (
            "[machines]\nserver = []\n",
            {},
            "services/sl2s.toml: [machines] server: an empty list: give at least one URL",
        ),
        (
            '[machines]\nserver = ["http://a:1", "http://a:1/"]\n',
            {},
            "services/sl2s.toml: [machines] server: 'http://a:1' is listed twice",
        ),
        (
            '[machines]\nserver = ["http://a:1", "ftp://b"]\n',
            {},
            "services/sl2s.toml: [machines] server: 'ftp://b' is not an http:// or https:// URL"
            " with a host",
        ),
        (
            '[machines]\nserver = ["http://a:1", 8002]\n',
            {},
            "services/sl2s.toml: [machines] server: expected a URL string like"
            " http://127.0.0.1:8001",
        ),
        (
            "",
            {"SL2S_URL_SERVER": "http://a:1,,http://b:2"},
            "environment SL2S_URL_SERVER: 'http://a:1,,http://b:2' has an empty URL"
            " (separate replicas' URLs with single commas)",
        ),
        (
            "",
            {"SL2S_URL_SERVER": "http://a:1,http://b:x"},
            "environment SL2S_URL_SERVER: 'http://b:x' has an invalid port",
        ),
    ],
)
def test_bad_replica_addresses_are_one_line_errors_naming_file_and_key(
    tmp_path, toml, environ, message
):
    with pytest.raises(HopConfigError) as error:
        load_config(services(tmp_path, toml), environ=environ)
    assert str(error.value) == "sl2s: " + message


# -- the client: turns, and failover to the next replica --------------------------------------------


class Replica:
    """A real server that records the idempotency keys it was sent and answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.keys: list[str] = []
        self.lock = threading.Lock()

    async def hop(self, request):
        with self.lock:
            self.keys.append(request.headers["idempotency-key"])
        return Response(b"{}", status_code=self.status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hop", self.hop, methods=["POST"])])


def refusing_url() -> tuple[socket.socket, str]:
    """A URL whose port refuses connections (bound, not listening): a replica that is down."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def post(client: HopClient, urls, key: str):
    return client.post(
        target="server",
        base_url=urls,
        path="/hop",
        body=b"{}",
        idempotency_key=key,
        headers_for=lambda now: {"idempotency-key": key},
    )


def test_hops_take_turns_over_the_replicas():
    one, two = Replica(), Replica()
    with ThreadServer(one.app()) as a, ThreadServer(two.app()) as b:
        client = HopClient(timeout=5, attempts=4)
        answers = [post(client, (a.url, b.url), f"k{i}") for i in range(6)]
        client.close()
    assert [r.status for r in answers] == [200] * 6
    assert all(r.attempts == 1 for r in answers)
    assert (one.keys, two.keys) == (["k0", "k2", "k4"], ["k1", "k3", "k5"])


def test_a_failed_attempt_goes_on_to_the_next_replica_with_the_same_key_at_once():
    down, down_url = refusing_url()
    busy, fine = Replica(503), Replica()
    slept: list[float] = []
    try:
        with ThreadServer(busy.app()) as b, ThreadServer(fine.app()) as c:
            client = HopClient(timeout=5, attempts=6, sleep=slept.append)
            answers = [
                post(client, (down_url, b.url, c.url), f"k{i}") for i in range(4)
            ]
            client.close()
    finally:
        down.close()
    # k0 starts on the refusing replica and moves on at once (no backoff within a round), to the
    # busy one (503), then to the good one, with the same key; the two that failed now rest, so
    # the next hops start on the good one although it is not their turn
    assert [r.status for r in answers] == [200] * 4
    assert [r.attempts for r in answers] == [3, 1, 1, 1]
    assert busy.keys == ["k0"]
    assert fine.keys == ["k0", "k1", "k2", "k3"]
    assert slept == []


class Hung(Replica):
    async def hop(self, request):
        await super().hop(request)
        await asyncio.sleep(1.5)
        return Response(b"{}")


def test_a_hung_replica_costs_one_timed_out_attempt_then_rests():
    hung, fine = Hung(), Replica()
    with ThreadServer(hung.app()) as a, ThreadServer(fine.app()) as b:
        client = HopClient(timeout=0.3, attempts=4)
        answers = [post(client, (a.url, b.url), f"k{i}") for i in range(4)]
        client.close()
    assert [r.attempts for r in answers] == [2, 1, 1, 1]
    assert (hung.keys, fine.keys) == (["k0"], ["k0", "k1", "k2", "k3"])


def test_when_every_replica_fails_the_error_names_them_and_backs_off_between_rounds():
    down1, url1 = refusing_url()
    down2, url2 = refusing_url()
    slept: list[float] = []
    try:
        client = HopClient(
            timeout=1, attempts=5, sleep=slept.append, jitter=lambda: 1.0
        )
        with pytest.raises(HopUnreachable) as error:
            post(client, (url1, url2), "k-all")
    finally:
        down1.close()
        down2.close()
    # attempts: 1 2 | 3 4 | 5 — a pause after each full round of the two replicas
    assert error.value.attempts == 5
    assert len(slept) == 2 and slept[0] < slept[1]
    assert not error.value.delivered
    assert str(error.value) == (
        f"machine 'server' at replicas {url1}, {url2} did not answer after 5 attempt(s):"
        " connection refused (idempotency key k-all)"
    )


# -- end to end: two replicas of `back` on PostgreSQL, one killed with -9 mid-run ------------------

THREADS, PER_THREAD = 8, 10

BACK = COUNT + """

@step("relay", "Back works on :job")
def back_works_on_job(job):
    with open(os.environ["COUNTS"], "a") as handle:
        handle.write("back_works_on_job " + step_key() + " " + str(os.getpid()) + "\\n")
    time.sleep(0.15)
    return {"done_by": "back"}
"""

DRIVER = r"""
import importlib, json, sys, threading, time
sys.path.insert(0, sys.argv[1])
front = importlib.import_module(sys.argv[2] + ".front")
threads, per = int(sys.argv[3]), int(sys.argv[4])
results, lock = [], threading.Lock()

def worker(t):
    for i in range(per):
        job = f"j{t}-{i}"
        begun = time.monotonic()
        try:
            out = front.relay(job=job, token="tok-replicas")
            error = None if out.get("finished") is True else f"not finished: {out}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append({"job": job, "error": error, "seconds": time.monotonic() - begun})

workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(results), flush=True)
"""


def back_runs(counts) -> list[tuple[str, str]]:
    """(step key, pid) of every run of back's step, in the order they began."""
    return [
        (parts[1], parts[2])
        for parts in (line.split() for line in counts.read_text().splitlines())
        if parts[0] == "back_works_on_job"
    ]


def test_two_replicas_on_postgres_one_killed_mid_run_every_flow_completes(
    relay, pg_url
):
    """Two `sl2s serve` processes of `back`, both listed in SL2S_URL_BACK, share the PostgreSQL
    store; 8 threads x 10 relay flows run through them; one replica is killed with -9 while
    about half the in-flight flows are inside its step. `middle`'s retries go to the other
    replica with the same idempotency keys, which takes the dead owner's hops over. Every flow
    completes; no step's completion is stored or logged twice except the step in flight at the
    kill, which ran at most twice (its event may be logged twice: docs/durability.md).
    """
    tree, env, counts = relay
    (tree / "back" / "relay.py").write_text(BACK, encoding="utf-8")
    sockets = {name: listening_socket() for name in ("middle", "back_a", "back_b")}
    url = {n: f"http://127.0.0.1:{s.getsockname()[1]}" for n, s in sockets.items()}
    env = {
        **env,
        "SL2S_STORE": pg_url,
        "SL2S_URL_MIDDLE": url["middle"],
        "SL2S_URL_BACK": f"{url['back_a']},{url['back_b']}",
    }
    servers: dict[str, subprocess.Popen] = {}
    driver = None
    try:
        for name, sock in sockets.items():
            servers[name] = serve_on(tree, name.split("_")[0], sock, env)
            # only the server holds its socket now: once killed, its port refuses connections
            # (a socket kept here would accept them into a backlog nobody serves)
            sock.close()
        pids = {name: str(proc.pid) for name, proc in servers.items()}
        driver = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DRIVER,
                str(tree.parent),
                tree.name,
                str(THREADS),
                str(PER_THREAD),
            ],
            env={**env, "SL2S_TRANSPORT": "http"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # kill replica a once both replicas have run back's step a few times
        wait_for(
            lambda: Counter(pid for _, pid in back_runs(counts))[pids["back_a"]] >= 6
            and Counter(pid for _, pid in back_runs(counts))[pids["back_b"]] >= 6
        )
        killed_at = len(back_runs(counts))
        servers["back_a"].send_signal(signal.SIGKILL)
        servers["back_a"].wait(
            10
        )  # reaped: its pid is gone, so its running hops are dead
        out, err = driver.communicate(timeout=240)
        assert driver.returncode == 0, err[-2000:]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait(10)
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()

    results = json.loads(out.strip().splitlines()[-1])
    assert len(results) == THREADS * PER_THREAD
    assert [r for r in results if r["error"]] == []

    # the kill landed mid-run, and what was in flight on the dead replica ran again on the other
    runs = back_runs(counts)
    assert killed_at < len(runs) <= THREADS * PER_THREAD + THREADS
    per_key = Counter(key for key, _ in runs)
    assert len(per_key) == THREADS * PER_THREAD
    assert max(per_key.values()) <= 2
    twice = {key for key, n in per_key.items() if n == 2}
    assert 1 <= len(twice) <= THREADS
    for key in twice:  # first on the killed replica, then taken over by the live one
        assert [pid for k, pid in runs if k == key] == [pids["back_a"], pids["back_b"]]
    assert all(pid == pids["back_b"] for _, pid in runs[killed_at + THREADS :])

    # the other steps ran once per flow
    others = Counter(line.split()[0] for line in counts.read_text().splitlines())
    for step in STEPS:
        if step != "back_works_on_job":
            assert others[step] == THREADS * PER_THREAD, step

    # the store: every flow completed with each step once; the logs agree with it
    store = open_store(pg_url)
    try:
        flows = store.flows()
        assert len(flows) == THREADS * PER_THREAD
        assert {f.state for f in flows} == {"completed"}
        recorded = {f.correlation_id: store.steps_of(f.correlation_id) for f in flows}
        for f in flows:  # each hop's answer stored once, under its one key
            hops = store.hops_of(f.correlation_id)
            assert sorted((h.target, h.state, h.status) for h in hops) == [
                ("back", "answered", 200),
                ("middle", "answered", 200),
            ]
    finally:
        store.close()
    events: dict[tuple[str, str], list[str]] = {}
    for e in read_events(env["SL2S_LOG_DIR"]):
        if e["event_name"] == "sl2s.step" and e["severity_text"] == "INFO":
            a = e["attributes"]
            events.setdefault((a["sl2s.correlation_id"], a["sl2s.step"]), []).append(
                a["sl2s.event_id"]
            )
    assert {cid for cid, _ in events} == set(recorded)
    for cid, steps in recorded.items():
        assert set(steps) == set(STEPS), cid
        for step, rec in steps.items():
            logged = events[(cid, step)]
            assert rec.event_id in logged, (cid, step)
            # a second event only for the step in flight at the kill (logged, then not committed)
            assert len(logged) == 1 or (
                step == "back_works_on_job" and len(logged) == 2
            )
    assert len(events) == sum(len(s) for s in recorded.values())
