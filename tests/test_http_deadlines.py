"""Deadlines and version skew (docs/runtime.md "Deadlines", docs/hop-protocol.md "Deadline" and
"Version skew"): a hop is retried until its flow's deadline, a hung machine is noticed by the
per-attempt timeout, the failure says what became of the remote segment; a machine of another
version of a flow refuses its hops (409 version_skew) and the caller waits for the rollout.

The pure parts (retry schedule, digests, the thread's deadline) are tested directly; the rest with
real `sl2s serve` processes on 127.0.0.1 and `sl2s run --remote`, events and counts read back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import SL2S, loopback_socket, sl2s, stop, wait_healthy  # noqa: E402
from relay_flows import (  # noqa: E402  (the `relay` fixture: conftest.py)
    RELAY,
    USER_CODE,
    completions,
    counted,
    listening_socket,
    serve_on,
    store_of,
    wait_for,
)

from sl2s.generate.flowdigest import flow_digest, flow_digests  # noqa: E402
from sl2s.plan import parse_plan  # noqa: E402
from sl2s.projection import project  # noqa: E402
from sl2s.runtime.errors import HopFailed, failure_from_dict  # noqa: E402
from sl2s.runtime.transport import HopRequest  # noqa: E402
from sl2s.runtime.transport.http import deadlines  # noqa: E402
from sl2s.runtime.transport.http import protocol as p  # noqa: E402
from sl2s.runtime.transport.http.client import HopClient, HopUnreachable  # noqa: E402

SECRET = "tok-Zq8sW3-never-stored"


# -- the retry schedule ------------------------------------------------------------------------


def test_backoff_grows_with_full_jitter_and_never_passes_the_deadline():
    kw = dict(base=0.05, cap=2.0)
    assert [
        deadlines.backoff(n, 100.0, jitter=1.0, **kw) for n in (1, 2, 3, 7, 8, 20)
    ] == [
        0.05,
        0.1,
        0.2,
        2.0,  # 0.05 * 2**6 = 3.2, capped
        2.0,
        2.0,
    ]
    assert deadlines.backoff(3, 100.0, jitter=0.5, **kw) == 0.1
    assert deadlines.backoff(3, 100.0, jitter=0.0, **kw) == 0.0
    # the server's retry-after is a floor; the time left is a ceiling over both
    assert deadlines.backoff(1, 100.0, jitter=1.0, retry_after=1.0, **kw) == 1.0
    # a pause into the last look is cut so that one more attempt starts then; within it, the
    # pause runs to the deadline
    assert (
        deadlines.backoff(8, 1.0, jitter=1.0, retry_after=1.0, **kw)
        == 1.0 - deadlines.LAST_LOOK
    )
    assert deadlines.backoff(1, 0.2, jitter=1.0, **kw) == 0.2
    assert deadlines.backoff(8, -1.0, jitter=1.0, **kw) == 0.0
    assert deadlines.attempt_timeout(10.0, 60.0) == 10.0
    assert deadlines.attempt_timeout(10.0, 2.5) == 2.5
    assert deadlines.attempt_timeout(10.0, -3.0) == 0.0


def closed_url() -> str:
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there now: connection refused
    return url


def post(client: HopClient, url: str, deadline: float | None):
    return client.post(
        target="server",
        base_url=url,
        path="/sl2s/v1/hop/login/check",
        body=b"{}",
        idempotency_key="cid-0001.0.check",
        headers_for=lambda now: {p.H_IDEMPOTENCY_KEY: "cid-0001.0.check"},
        deadline=deadline,
    )


def test_a_machine_that_is_down_is_retried_until_the_deadline_not_a_count_of_attempts():
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    client = HopClient(attempts=None, sleep=sleep, jitter=lambda: 1.0)
    started = time.time()
    with pytest.raises(HopUnreachable) as caught:
        post(client, closed_url(), started + 1.2)
    error = caught.value
    assert (
        error.deadline_passed and not error.delivered
    )  # refused: it never reached the machine
    assert error.last == "connection refused" and error.attempts >= 5
    assert "before the flow's deadline" in str(error) and "cid-0001.0.check" in str(
        error
    )
    # exponential pauses (jitter pinned to its maximum), cut short of the deadline for a last look
    assert sleeps[:4] == [0.05, 0.1, 0.2, 0.4] and sleeps[4] < 0.8
    assert sum(sleeps) <= 1.2


def test_without_a_deadline_attempts_still_cap_the_tries():
    client = HopClient(attempts=3, sleep=lambda s: None, jitter=lambda: 1.0)
    with pytest.raises(HopUnreachable) as caught:
        post(client, closed_url(), None)
    assert caught.value.attempts == 3 and not caught.value.deadline_passed
    # and a deadline already passed sends nothing
    with pytest.raises(HopUnreachable) as caught:
        post(HopClient(attempts=None), closed_url(), time.time() - 1)
    assert caught.value.attempts == 0 and "deadline had passed" in caught.value.last


def test_a_hung_server_is_noticed_by_the_attempt_timeout_and_retried_with_the_same_key():
    """A server that accepts and never answers: each attempt ends after the hop timeout (cut to the
    time left); the retries carry the same idempotency key; the hop fails at the deadline.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    keys: list[bytes] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            conn.settimeout(5)
            try:
                keys.append(
                    [
                        line
                        for line in conn.recv(65536).split(b"\r\n")
                        if line.lower().startswith(b"idempotency-key")
                    ][0]
                )
            except (OSError, IndexError):
                pass

    threading.Thread(target=accept, daemon=True).start()
    client = HopClient(timeout=0.4, attempts=None, sleep=time.sleep, jitter=lambda: 0.0)
    started = time.monotonic()
    try:
        with pytest.raises(HopUnreachable) as caught:
            post(
                client, f"http://127.0.0.1:{server.getsockname()[1]}", time.time() + 1.5
            )
    finally:
        server.close()
        for conn in held:
            conn.close()
    elapsed = time.monotonic() - started
    error = caught.value
    assert error.last == "timed out" and error.deadline_passed and error.delivered
    assert (
        error.attempts >= 3
    )  # 0.4 s each within 1.5 s: the attempt timeout noticed the hang
    assert (
        elapsed < 5
    )  # at the deadline (1.5 s), not attempts x timeout of the old defaults
    assert len(set(keys)) == 1 and len(keys) == error.attempts


# -- the deadline a thread's hops keep to ------------------------------------------------------


def test_a_flow_run_keeps_one_deadline_and_an_inbound_hop_hands_its_own_on():
    run_deadline = deadlines.for_hop("cid-a", "cid-a.0.step_one", 60.0, 1000.0)
    assert run_deadline == 1060.0
    # a later hop of the same run (same correlation id and attempt): the same deadline
    assert deadlines.for_hop("cid-a", "cid-a.0.step_two", 60.0, 1030.0) == 1060.0
    # the run resumed (next attempt): a new deadline
    assert deadlines.for_hop("cid-a", "cid-a.1.step_one", 60.0, 2000.0) == 2060.0
    # a machine running an inbound hop: its hops keep to the caller's deadline, a little earlier
    seen = []

    def handler(request: HopRequest) -> str:
        seen.append(
            deadlines.for_hop(request.correlation_id, "cid-b.0.x", 60.0, 1000.0)
        )
        return "ok"

    request = HopRequest.from_dict(
        {
            "system": "s",
            "flow": "f",
            "source": "a",
            "target": "b",
            "at": "x",
            "correlation_id": "cid-b",
            "deadline": 1_005_000,  # epoch ms: 1005 s
        }
    )
    assert deadlines.serving(handler)(request) == "ok"
    assert seen == [1005.0 - deadlines.NESTED_MARGIN]
    # once the inbound hop is over, the thread keeps no trace of it
    assert deadlines.for_hop("cid-b", "cid-b.0.x", 60.0, 1000.0) == 1060.0


def test_hop_failed_carries_the_remote_state_across_machines():
    failure = HopFailed(
        "deadline", source="a", target="b", flow="f", at="x", remote_state="pending"
    )
    again = failure_from_dict(orjson.loads(orjson.dumps(failure.to_dict())))
    assert isinstance(again, HopFailed) and again.remote_state == "pending"
    assert (
        failure_from_dict({"class": "HopFailed", "message": "m"}).remote_state is None
    )


# -- digests -----------------------------------------------------------------------------------

PLAN = """request,log,machine
login,User attempted login as :username and #password,client
login,Received request to login as :username,server
login,Testing password for :username,server
login,Login successful,client
feed,Fetching feed,client
feed,Retrieving feed,server
"""


def digests(text: str) -> dict[str, str]:
    return flow_digests(project(parse_plan(text.encode(), "plan.csv")))


def test_the_same_plan_gives_the_same_digests():
    first = digests(PLAN)
    assert first == digests(PLAN) and set(first) == {"login", "feed"}
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in first.values())
    assert first["login"] != first["feed"]
    # reordering nothing but the flows' rows among each other (the same rows of each flow in the
    # same order), and rewording nothing that travels: the same digests
    lines = PLAN.splitlines()
    feed_first = "\n".join([lines[0], *lines[5:], *lines[1:5]]) + "\n"
    assert digests(feed_first) == first


def test_a_step_moved_to_another_machine_changes_only_its_flows_digest():
    first = digests(PLAN)
    moved = PLAN.replace(
        "Testing password for :username,server", "Testing password for :username,auth"
    )
    second = digests(moved)
    assert second["login"] != first["login"] and second["feed"] == first["feed"]
    # an extra step on a machine already in the flow changes it too
    extra = PLAN.replace(
        "Login successful,client",
        "Recording the login of :username,server\nlogin,Login successful,client",
    )
    assert digests(extra)["login"] not in (first["login"], second["login"])
    # swapping two steps of one machine's segment changes it (the order is part of the version)
    swapped = PLAN.replace(
        "login,Received request to login as :username,server\nlogin,Testing password for :username,server",
        "login,Testing password for :username,server\nlogin,Received request to login as :username,server",
    )
    assert digests(swapped)["login"] != first["login"]
    assert (
        flow_digest(project(parse_plan(PLAN.encode(), "other/path.csv")).flows[0])
        == first["login"]
    )


# -- the server's refusal ----------------------------------------------------------------------


def test_the_server_refuses_another_version_with_409_naming_both_digests_before_running():
    from harness import ThreadServer, raw_post

    from sl2s.runtime.transport import HopResponse
    from sl2s.runtime.transport.http.server import create_app

    ran: list[HopRequest] = []

    def handler(request: HopRequest) -> HopResponse:
        ran.append(request)
        return HopResponse(request.resume_at, {}, [], None)

    app = create_app(
        handler,
        machine="server",
        has_segment=lambda flow, at: at == "check",
        flow_digest={"login": "aaaaaaaaaaaaaaaa"}.get,
    )

    def hop(at: str, version: str | None, key: str):
        body = p.request_body(
            {
                "system": "s",
                "flow": "login",
                "source": "client",
                "target": "server",
                "at": at,
                "resume_at": None,
                "fields": {},
                "secrets": [],
                "correlation_id": "cid",
                "stack": ["client"],
                "deadline": int(time.time() * 1000) + 60_000,
                "version": version,
            }
        )
        return raw_post(
            server.url, p.hop_path("login", at), body, {p.H_IDEMPOTENCY_KEY: key}
        )

    with ThreadServer(app) as server:
        status, headers, data = hop("check", "bbbbbbbbbbbbbbbb", "key-skew-0000000001")
        answer = orjson.loads(data)
        assert (status, answer["code"]) == (409, "version_skew")
        assert (answer["digest"], answer["sent"]) == (
            "aaaaaaaaaaaaaaaa",
            "bbbbbbbbbbbbbbbb",
        )
        assert (
            "aaaaaaaaaaaaaaaa" in answer["message"]
            and "bbbbbbbbbbbbbbbb" in answer["message"]
        )
        assert headers[p.H_OUTCOME] == "rejected" and ran == []
        # a segment this machine lacks, asked for by another version: the skew is the answer
        status, _, data = hop("new_step", "bbbbbbbbbbbbbbbb", "key-skew-0000000002")
        assert (status, orjson.loads(data)["code"]) == (409, "version_skew")
        # ... and by the same version, still 404
        status, _, data = hop("new_step", "aaaaaaaaaaaaaaaa", "key-skew-0000000003")
        assert (status, orjson.loads(data)["code"]) == (404, "no_segment")
        # the refused key was never stored: the same key from the right version runs
        assert hop("check", "aaaaaaaaaaaaaaaa", "key-skew-0000000001")[0] == 200
        # a version that is no digest: refused as a malformed envelope, not echoed
        status, _, data = hop("check", "x" * 5000, "key-skew-0000000005")
        assert (status, orjson.loads(data)["code"]) == (400, "bad_envelope")
        assert "xxxx" not in data.decode()
        # no version sent (a tree generated before digests): not checked
        assert hop("check", None, "key-skew-0000000004")[0] == 200
        assert len(ran) == 2 and ran[0].deadline is not None


# -- real machines -----------------------------------------------------------------------------


def running_hops(env: dict, cid: str) -> list:
    store = store_of(env)
    try:
        return [h for h in store.hops_of(cid) if h.state == "running"]
    finally:
        store.close()


def run_remote(tree: Path, env: dict, job: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*SL2S, "run", str(tree), "relay", f"job={job}", f"token={SECRET}", "--remote"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def served(tree: Path, env: dict, machines=("middle", "back")):
    """`sl2s serve` per machine on sockets the test keeps; env gets their addresses."""
    sockets = {m: listening_socket() for m in machines}
    env = {
        **env,
        **{
            f"SL2S_URL_{m.upper()}": f"http://127.0.0.1:{s.getsockname()[1]}"
            for m, s in sockets.items()
        },
    }
    return sockets, env


@pytest.mark.parametrize("victim", ["middle", "back"])
def test_a_hung_machine_fails_the_caller_at_the_deadline_naming_it_and_its_segments_state(
    relay, victim
):
    """SIGSTOP a served machine: the entry fails at the flow's 3 s deadline (not 120 s), the per-
    attempt timeout having noticed the hang; the message names the machine, the segment and its
    state — `back` stopped inside its step: pending; `middle` stopped before the flow: not
    started — and how to resume. After SIGCONT, `sl2s flows resume` finishes the flow; no step's
    completion is recorded twice."""
    tree, env, counts = relay
    # each attempt may take 1 s: within the 3 s deadline, a hang is noticed and the hop re-sent
    sockets, env = served(tree, {**env, "SL2S_DEADLINE": "3", "SL2S_HOP_TIMEOUT": "1"})
    servers = {m: serve_on(tree, m, s, env) for m, s in sockets.items()}
    stopped = False
    try:
        if victim == "back":
            Path(f"{counts}.slow").write_text(
                ""
            )  # back's step sleeps 4 s: stopped inside it
        else:
            servers["middle"].send_signal(signal.SIGSTOP)
            stopped = True
        started = time.monotonic()
        client = run_remote(tree, env, "j1")
        if victim == "back":
            wait_for(lambda: counted(counts)["back_works_on_job"] == 1)
            servers["back"].send_signal(signal.SIGSTOP)
            stopped = True
        out, err = client.communicate(timeout=60)
        elapsed = time.monotonic() - started
        servers[victim].send_signal(signal.SIGCONT)
        stopped = False
    finally:
        if stopped:
            servers[victim].send_signal(signal.SIGCONT)
        if victim == "back":
            Path(f"{counts}.slow").unlink(missing_ok=True)
    try:
        assert client.returncode == 1, (out, err)
        assert elapsed < 20, elapsed  # the deadline (3 s), not 4 attempts x 30 s
        text = " ".join(err.split())
        assert (
            "did not answer before the flow's deadline" in text and "timed out" in text
        )
        attempts = int(text.split("before the flow's deadline (")[1].split()[0])
        assert (
            attempts >= 2
        )  # the attempt timeout noticed the hang; the hop was sent again
        if victim == "back":
            assert "hop middle -> back (flow 'relay', at 'back_works_on_job')" in text
            assert (
                "the segment of flow 'relay' at step 'back_works_on_job' on machine 'back' "
                "is still pending" in text
            )
        else:
            assert "hop front -> middle (flow 'relay', at 'middle_passes_job')" in text
            assert (
                "the segment of flow 'relay' at step 'middle_passes_job' on machine 'middle' "
                "had not started" in text
            )
        assert "the flow stays resumable: sl2s flows resume " in text
        cid = text.split("sl2s flows resume ")[1].split()[0].rstrip(";.)")
        # the machine is back; requests it had not read when stopped are handled now (under the
        # hop's key: the segment runs at most once): let them end before resuming
        wait_healthy(env[f"SL2S_URL_{victim.upper()}"])
        time.sleep(0.5)
        wait_for(lambda: not running_hops(env, cid))
        # resuming finishes the flow
        resumed = sl2s(
            "flows", "resume", str(tree), cid, f"token={SECRET}", "--remote", env=env
        )
        assert resumed.returncode == 0, resumed.stderr
        done = completions(env)
        assert all(n == 1 for n in done.values()), done
        assert {step for (c, step) in done if c == cid} == {
            "front_got_job_and_token",
            "middle_passes_job",
            "back_works_on_job",
            "middle_saw_back_finish_job",
            "front_done_with_job",
        }
    finally:
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()


def test_a_machine_down_then_back_within_the_deadline_finishes_the_flow_running_each_step_once(
    relay,
):
    tree, env, counts = relay
    sock = loopback_socket()
    port = sock.getsockname()[1]
    sock.close()  # middle is down: connections to it are refused
    back_socket = listening_socket()
    env = {
        **env,
        "SL2S_DEADLINE": "30",
        "SL2S_URL_MIDDLE": f"http://127.0.0.1:{port}",
        "SL2S_URL_BACK": f"http://127.0.0.1:{back_socket.getsockname()[1]}",
    }
    back = serve_on(tree, "back", back_socket, env)
    middle = None
    try:
        client = run_remote(tree, env, "j2")
        time.sleep(1.5)  # the entry is retrying its refused hop now
        assert client.poll() is None
        middle = subprocess.Popen(
            [*SL2S, "serve", str(tree), "middle", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert "done" in out
    finally:
        if middle is not None:
            stop(middle)
        stop(back)
        back_socket.close()
    steps = counted(counts)
    assert steps == Counter(
        {
            "front_got_job_and_token": 1,
            "middle_passes_job": 1,
            "back_works_on_job": 1,
            "middle_saw_back_finish_job": 1,
            "front_done_with_job": 1,
        }
    )
    assert sorted(completions(env).values()) == [1] * 5


# -- version skew ------------------------------------------------------------------------------

EXTRA_STEP = """

@step("relay", "Back double checks :job")
def back_double_checks_job(job):
    count("back_double_checks_job")
"""


def test_version_skew_is_refused_and_waited_out_never_skipping_a_step(relay, tmp_path):
    """The old machines run v1 of the relay flow; a client generated from v2 (an extra step on
    back) is refused by middle with 409 version_skew, waits, and fails at the deadline saying so:
    no step of v1 ran for it (nothing skipped). Halfway through the rollout (new middle, old back,
    side by side) a new flow runs middle's step and waits on back until its deadline; once back is
    new too, `sl2s flows resume` completes it on v2, new step included. An old client is then
    refused by the new machines in turn. Every flow completed on one version or waited.
    """
    old, env, counts = relay
    v2_plan = tmp_path / "relay_v2.csv"
    v2_plan.write_text(
        RELAY.read_text().replace(
            "relay,Back works on :job,back\n",
            "relay,Back works on :job,back\nrelay,Back double checks :job,back\n",
        )
    )
    new = tmp_path / "v2" / old.name
    new.parent.mkdir()
    shutil.copytree(old, new, ignore=shutil.ignore_patterns(".sl2s", "__pycache__"))
    done = sl2s("generate", str(v2_plan), "--out", str(new))
    assert done.returncode == 0, done.stderr
    (new / "back" / "relay.py").write_text(
        USER_CODE["back"] + EXTRA_STEP, encoding="utf-8"
    )
    old_digest = orjson.loads((old / "sl2s.lock.json").read_bytes())["flows"]["relay"]
    new_digest = orjson.loads((new / "sl2s.lock.json").read_bytes())["flows"]["relay"]
    assert old_digest != new_digest

    sockets, env = served(old, {**env, "SL2S_DEADLINE": "3"})
    servers = {m: serve_on(old, m, s, env) for m, s in sockets.items()}
    try:
        started = time.monotonic()
        refused = sl2s(
            "run", str(new), "relay", "job=j3", f"token={SECRET}", "--remote", env=env
        )
        elapsed = time.monotonic() - started
        assert refused.returncode == 1
        text = " ".join(refused.stderr.split())
        assert (
            f"version skew: this machine runs flow 'relay' {new_digest}, machine 'middle' runs "
            f"{old_digest}: finish the rollout or roll back" in text
        ), text
        assert "had not started" in text
        assert (
            elapsed > 2.5
        )  # it waited for the rollout until the deadline, then gave up
        # nothing of the flow ran on the old machines: no step skipped, none run from v1
        assert counted(counts)["middle_passes_job"] == 0
        assert counted(counts)["back_works_on_job"] == 0
        # halfway through the rollout: middle is new, back still old, side by side. The new flow
        # runs middle's step (v2 on both sides), then waits on back, which refuses v2
        stop(servers.pop("middle"))
        servers["middle"] = serve_on(new, "middle", sockets["middle"], env)
        halfway = sl2s(
            "run", str(new), "relay", "job=j4", f"token={SECRET}", "--remote", env=env
        )
        assert halfway.returncode == 1
        text = " ".join(halfway.stderr.split())
        assert (
            "hop middle -> back" in text
            and f"version skew: this machine runs flow 'relay' {new_digest}, machine 'back' "
            f"runs {old_digest}" in text
        ), text
        assert (
            counted(counts)["back_works_on_job"] == 0
        )  # v1's back ran nothing of v2's flow
        cid = text.split("sl2s flows resume ")[1].split()[0].rstrip(";.)")
        # the rollout ends: back is new too; the waiting flow is resumed and completes on v2
        stop(servers.pop("back"))
        servers["back"] = serve_on(new, "back", sockets["back"], env)
        resumed = sl2s(
            "flows", "resume", str(new), cid, f"token={SECRET}", "--remote", env=env
        )
        assert resumed.returncode == 0, resumed.stderr
        assert counted(counts)["back_double_checks_job"] == 1
        # and an old client, left over, is refused by the new machines in turn
        stale = sl2s(
            "run", str(old), "relay", "job=j5", f"token={SECRET}", "--remote", env=env
        )
        assert stale.returncode == 1
        assert (
            f"version skew: this machine runs flow 'relay' {old_digest}, machine 'middle' runs "
            f"{new_digest}" in " ".join(stale.stderr.split())
        )
    finally:
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()
    steps = counted(counts)
    # one flow ran, all of it on v2 (its middle step once, replayed on resume); none partly on v1
    assert steps == Counter(
        {
            "front_got_job_and_token": 3,  # every entry ran its first step (before any hop)
            "middle_passes_job": 1,
            "back_works_on_job": 1,
            "back_double_checks_job": 1,
            "middle_saw_back_finish_job": 1,
            "front_done_with_job": 1,
        }
    )


def test_a_tree_without_digests_is_not_checked(relay):
    """Trees generated before digests existed (no `flows` in the lock) hop as before."""
    tree, env, counts = relay
    lock = orjson.loads((tree / "sl2s.lock.json").read_bytes())
    del lock["flows"]
    (tree / "sl2s.lock.json").write_bytes(orjson.dumps(lock))
    sockets, env = served(tree, env)
    servers = {m: serve_on(tree, m, s, env) for m, s in sockets.items()}
    try:
        done = sl2s(
            "run", str(tree), "relay", "job=j6", f"token={SECRET}", "--remote", env=env
        )
        assert done.returncode == 0, done.stderr
    finally:
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()
    assert counted(counts)["front_done_with_job"] == 1
    assert os.path.exists(tree / "sl2s.lock.json")
