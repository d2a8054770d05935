"""Durable flow runs (docs/durability.md, "What survives a crash"), end to end with real processes and
the real SQLite flow store: a failed flow resumed after fixing the code, a process killed between a
step's effect and its checkpoint, a hop server killed with -9 mid-flow and restarted, the hop server's
idempotency kept in the store, and the secret that never reaches the store's bytes.

The system under test is the relay plan with counting user code (tests/relay_flows.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import SL2S, sl2s, stop
from relay_flows import (  # puts tests/data/http on sys.path; the `relay` fixture: conftest.py
    SECRET,
    STEPS,
    assert_logs_agree_with_store,
    assert_no_secret_in_store,
    completions,
    counted,
    listening_socket,
    open_store,
    serve_on,
    the_flow,
    wait_for,
)


def test_a_failed_flow_resumes_from_the_failed_step_once_the_code_is_fixed(relay):
    tree, env, counts = relay
    Path(f"{counts}.boom").write_text("")
    failed = sl2s("run", str(tree), "relay", "job=j1", f"token={SECRET}", env=env)
    assert failed.returncode == 1 and "back is broken today" in failed.stderr

    listed = sl2s("flows", "list", str(tree), "--state", "failed", env=env)
    assert listed.returncode == 0, listed.stderr
    rec, steps, _ = the_flow(env)
    assert rec.state == "failed" and rec.flow == "relay" and rec.machine == "front"
    assert rec.correlation_id in listed.stdout and "middle_passes_job" in listed.stdout
    assert set(steps) == {"front_got_job_and_token", "middle_passes_job"}
    assert "back is broken today" in rec.error["message"]
    shown = sl2s("flows", "show", str(tree), rec.correlation_id[:8], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "back is broken today" in shown.stdout and "token" in shown.stdout

    # the secret was never stored: a remaining step needs it, so resume asks for it by name
    Path(f"{counts}.boom").unlink()  # "fix the code"
    asked = sl2s("flows", "resume", str(tree), rec.correlation_id, env=env)
    assert asked.returncode == 1
    assert asked.stderr.count("\n") == 1 and "Traceback" not in asked.stderr
    assert "'token'" in asked.stderr and "front_done_with_job" in asked.stderr
    assert counted(counts)["back_works_on_job"] == 1  # nothing ran

    resumed = sl2s(
        "flows", "resume", str(tree), rec.correlation_id, f"token={SECRET}", env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert '"finished":true' in resumed.stdout and SECRET not in resumed.stdout
    # it prints the steps that ran now; replayed ones ran before and print nothing
    assert (
        "back: Back works on j1" in resumed.stdout and "Front got" not in resumed.stdout
    )
    # the steps recorded before the failure did not run again; the failed one ran again, once
    assert counted(counts) == {
        "front_got_job_and_token": 1,
        "middle_passes_job": 1,
        "back_works_on_job": 2,
        "middle_saw_back_finish_job": 1,
        "front_done_with_job": 1,
    }
    # replayed outcomes were merged: middle counted `passed` 1 -> 2 from the recorded value
    rec, steps, _ = the_flow(env)
    assert rec.state == "completed" and set(steps) == set(STEPS)
    assert steps["middle_saw_back_finish_job"].outcome == {"passed": 2}
    assert all(count == 1 for count in completions(env).values())
    assert_logs_agree_with_store(env, rec.correlation_id, steps)
    # the key handed to step code is the same in every run of the step
    keys = {
        x.split()[1] for x in counts.read_text().splitlines() if x.startswith("back")
    }
    assert keys == {f"{rec.correlation_id}:back_works_on_job"}
    assert_no_secret_in_store(env)

    again = sl2s(
        "flows", "resume", str(tree), rec.correlation_id, f"token={SECRET}", env=env
    )
    assert again.returncode == 1 and "already completed" in again.stderr


def test_a_crash_between_a_steps_effect_and_its_checkpoint_runs_that_step_again(relay):
    tree, env, counts = relay
    Path(f"{counts}.crash").write_text("")
    crashed = sl2s("run", str(tree), "relay", "job=j2", f"token={SECRET}", env=env)
    assert crashed.returncode == 9  # os._exit inside back's step, after its effect
    rec, steps, _ = the_flow(env)
    assert rec.state == "pending"
    # committed before the hop that led to back: front's and middle's first steps
    assert set(steps) == {"front_got_job_and_token", "middle_passes_job"}
    pending = sl2s(
        "flows", "list", str(tree), "--state", "pending", "--flow", "relay", env=env
    )
    assert rec.correlation_id in pending.stdout

    Path(f"{counts}.crash").unlink()
    resumed = sl2s(
        "flows",
        "resume",
        str(tree),
        rec.correlation_id[:10],
        f"token={SECRET}",
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    # at-least-once: the step in flight at the crash ran again; the committed ones did not
    assert counted(counts) == {
        "front_got_job_and_token": 1,
        "middle_passes_job": 1,
        "back_works_on_job": 2,
        "middle_saw_back_finish_job": 1,
        "front_done_with_job": 1,
    }
    rec, steps, _ = the_flow(env)
    assert rec.state == "completed" and set(steps) == set(STEPS)
    assert_logs_agree_with_store(env, rec.correlation_id, steps)
    assert_no_secret_in_store(env)


# -- over HTTP: a machine killed with -9 mid-flow and restarted ------------------------------------


@pytest.mark.parametrize("victim", ["middle", "back"])
def test_a_hop_server_killed_mid_flow_and_restarted_finishes_the_flow(relay, victim):
    """kill -9 of `middle` while back works (its hop to back is answered into the void), or of
    `back` inside its step; the machine is restarted on the same port; the callers' retries with the
    same idempotency keys complete the flow. No step's completion is recorded twice; only a step in
    flight at the kill (back's, when back is killed) runs twice."""
    tree, env, counts = relay
    sockets = {m: listening_socket() for m in ("middle", "back")}
    urls = {m: f"http://127.0.0.1:{s.getsockname()[1]}" for m, s in sockets.items()}
    env = {
        **env,
        **{f"SL2S_URL_{m.upper()}": url for m, url in urls.items()},
        "SL2S_HOP_TIMEOUT": "20",
        "SL2S_HOP_ATTEMPTS": "6",
    }
    servers = {m: serve_on(tree, m, s, env) for m, s in sockets.items()}
    Path(f"{counts}.slow").write_text("")
    client = subprocess.Popen(
        [*SL2S, "run", str(tree), "relay", "job=j4", f"token={SECRET}", "--remote"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: counted(counts)["back_works_on_job"] == 1)
        servers[victim].send_signal(signal.SIGKILL)
        servers[victim].wait(10)
        if victim == "back":
            Path(f"{counts}.slow").unlink()
        else:
            time.sleep(4.5)  # back finishes its step and answers a caller that is gone
        servers[victim] = serve_on(tree, victim, sockets[victim], env)
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        assert '"finished":true' in out
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()
    expected = {step: 1 for step in STEPS}
    if victim == "back":
        expected["back_works_on_job"] = 2  # in flight at the kill: at-least-once
    assert counted(counts) == expected
    rec, steps, hops = the_flow(env)
    assert rec.state == "completed" and set(steps) == set(STEPS)
    # its deadline (the default 60 s, from the first hop) went in with its record
    assert 60 <= rec.deadline - rec.created < 65
    assert sorted((h.target, h.state, h.status) for h in hops) == [
        ("back", "answered", 200),
        ("middle", "answered", 200),
    ]
    assert all(count == 1 for count in completions(env).values())
    assert_logs_agree_with_store(env, rec.correlation_id, steps)
    assert_no_secret_in_store(env)


# -- the hop server's idempotency on the store ------------------------------------------------------

HOP_KEY = b"k" * 32
HOP_PATH = "/sl2s/v1/hop/login/check"


class Handler:
    """Counts the hops it runs; answers with a secret field when told to."""

    def __init__(self) -> None:
        self.runs = 0
        self.secret: str | None = None

    def __call__(self, request):
        from sl2s.runtime.transport import HopResponse

        self.runs += 1
        fields = {**request.fields, "seen": self.runs}
        secrets = []
        if self.secret is not None:
            fields.update(password=self.secret, note=f"pw was {self.secret}")
            secrets = ["password"]
        return HopResponse("done", fields, secrets, "evt-from-server")


def hop_body(cid: str) -> bytes:
    from sl2s.runtime.transport import HopRequest
    from sl2s.runtime.transport.http import protocol as p

    return p.request_body(
        HopRequest(
            system="services", flow="login", source="client", target="server", at="check",
            resume_at="done", fields={"username": "ann"}, secrets=["password"],
            correlation_id=cid, causation_id=None, traceparent="", idempotency_key="",
            stack=["client"],
        ).to_dict()
    )  # fmt: skip


def post(url: str, body: bytes, key: str, headers: dict | None = None):
    from harness import raw_post

    from sl2s.runtime.transport.http import protocol as p

    headers = headers or p.request_headers(
        keys=(HOP_KEY,), idempotency_key=key, path=HOP_PATH, body=body, now=time.time(),
        traceparent=None, causation_id=None,
    )  # fmt: skip
    status, out, data = raw_post(url, HOP_PATH, body, headers)
    return status, out, data, headers


def test_the_hop_server_keeps_answers_in_the_store_across_restarts_and_takes_over_dead_hops(
    tmp_path,
):
    import orjson
    from harness import ThreadServer

    from sl2s.runtime.core import durable
    from sl2s.runtime.store import HopRecord
    from sl2s.runtime.transport.http.server import create_app

    url = f"sqlite:///{str(tmp_path).lstrip('/')}/flows.sqlite3"
    store = open_store(url)
    handler = Handler()

    def app():
        return create_app(
            handler, machine="server", keys=(HOP_KEY,), flows=open_store(url)
        )

    cid = "c" * 32
    body = hop_body(cid)
    with ThreadServer(app()) as server:
        status, out, data, first = post(server.url, body, f"{cid}.0.check")
        assert status == 200 and orjson.loads(data)["fields"]["seen"] == 1
        # the very same signed bytes again: refused; the same key with another body: refused
        assert post(server.url, body, "", first)[0] == 401
        other = hop_body(cid).replace(b"ann", b"eve")
        assert post(server.url, other, f"{cid}.0.check")[0] == 422
        # a hop whose process is alive and still running it: 409, retry later
        store.hop_begin(
            HopRecord(f"{cid}.0.busy", durable_digest(body), cid, "login", "server", "check",
                      "running", 0, {}, None, time.time(), durable.owner())
        )  # fmt: skip
        status, out, _, _ = post(server.url, body, f"{cid}.0.busy")
        assert (status, out["retry-after"]) == (409, "1")
    assert handler.runs == 1

    # "restarted": a new server on the same store answers the retry from the store
    with ThreadServer(app()) as server:
        status, out, data, _ = post(server.url, body, f"{cid}.0.check")
        assert status == 200 and out["sl2s-replayed"] == "true"
        assert orjson.loads(data)["fields"]["seen"] == 1 and handler.runs == 1
        # a running hop whose process is gone (pid not running) is taken over and runs again
        dead = f"{durable.owner().rsplit(':', 2)[0]}:{2**22 + 1}:1"
        store.hop_begin(
            HopRecord(f"{cid}.0.dead", durable_digest(body), cid, "login", "server", "check",
                      "running", 0, {}, None, time.time(), dead)
        )  # fmt: skip
        status, _, data, _ = post(server.url, body, f"{cid}.0.dead")
        assert status == 200 and handler.runs == 2
        taken = store.hop_get(f"{cid}.0.dead")
        assert taken.state == "answered" and taken.owner == durable.owner()
        # an answer carrying a secret: the caller gets it, the store never does, a retry re-runs
        handler.secret = SECRET
        status, _, data, _ = post(server.url, body, f"{cid}.0.secret")
        assert status == 200 and orjson.loads(data)["fields"]["password"] == SECRET
        status, out, data, _ = post(server.url, body, f"{cid}.0.secret")
        assert status == 200 and orjson.loads(data)["fields"]["password"] == SECRET
        assert handler.runs == 4 and "sl2s-replayed" not in out
        stored = store.hop_get(f"{cid}.0.secret")
        assert orjson.loads(stored.body)["fields"]["note"] == "pw was ***"
    store.close()
    for path in tmp_path.glob("flows.sqlite3*"):
        assert SECRET.encode() not in path.read_bytes(), path.name


def durable_digest(body: bytes) -> str:
    from sl2s.runtime.transport.http import protocol as p

    return p.body_digest(body)


def test_hop_keys_are_deterministic_valid_and_carry_the_attempt():
    from sl2s.runtime import step_key
    from sl2s.runtime.core import durable
    from sl2s.runtime.transport.http import protocol as p

    cid = "0123456789abcdef" * 2
    key = durable.hop_key(cid, 0, "received_request")
    assert (
        key
        == f"{cid}.0.received_request"
        == durable.hop_key(cid, 0, "received_request")
    )
    assert durable.hop_key(cid, 1, "received_request") != key
    odd = durable.hop_key(
        cid, 3, "étape spéciale/" + "x" * 200
    )  # not a key's alphabet, long
    assert odd.startswith(f"{cid}.3.") and len(odd) <= 128
    for made in (key, odd):
        assert p.check_idempotency_key(made) == made
    assert durable.attempt_of(odd, cid) == 3 and durable.attempt_of(key, cid) == 0
    assert durable.attempt_of("some-foreign-key-000000", cid) == 0
    with pytest.raises(RuntimeError, match="outside a running step"):
        step_key()


def test_a_checkpoint_never_holds_a_secret_and_steps_that_saw_one_run_again(
    tmp_path, monkeypatch
):
    """A step that sets a secret field, or a field holding a secret's value, is checkpointed
    without it and marked not replayable: on resume it runs again; plain steps replay.
    """
    import textwrap

    package = tmp_path / "dur_secret_sys"
    (package / "shop").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "shop" / "__init__.py").write_text(
        "from . import orders, _wiring  # noqa\n"
    )
    (package / "shop" / "orders.py").write_text(textwrap.dedent("""
        from sl2s.runtime import step

        RAN = []


        @step("orders", "Placed by :username with #card", id="placed")
        def placed(username, card):
            RAN.append("placed")
            return {"card": card + "-checked", "plain": 1}


        @step("orders", "Noted :note", id="noted")
        def noted(card):
            RAN.append("noted")
            return {"note": "card was " + card}


        @step("orders", "Counted :plain", id="counted")
        def counted(plain):
            RAN.append("counted")
            return {"plain": plain + 1}


        @step("orders", "Failing", id="failing")
        def failing(plain):
            RAN.append("failing")
            if plain < 10:
                raise ValueError("not yet")
            return None
        """))
    (package / "shop" / "_wiring.py").write_text(textwrap.dedent("""
        from sl2s.runtime import Machine

        machine = Machine(__name__, "shop")


        def orders(**fields):
            run = machine.start("orders", **fields)
            for step_id in ("placed", "noted", "counted", "failing"):
                run.step(step_id)
            return run.finish()
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SL2S_STORE", raising=False)
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    from dur_secret_sys.shop import _wiring, orders

    from sl2s.runtime import StepFailed
    from sl2s.runtime.core import durable

    with pytest.raises(StepFailed, match="not yet"):
        _wiring.orders(username="ann", card=SECRET)
    store = durable.store_for(str(package))
    (rec,) = store.flows()
    steps = store.steps_of(rec.correlation_id)
    assert rec.state == "failed" and rec.context == {"username": "ann"}
    assert rec.secrets == ("card",)
    assert steps["placed"].outcome == {"plain": 1} and not steps["placed"].replayable
    assert (
        steps["noted"].outcome == {"note": "card was ***"}
        and not steps["noted"].replayable
    )
    assert steps["counted"].outcome == {"plain": 2} and steps["counted"].replayable

    # resume: the two steps that saw the secret run again, the plain one replays (its recorded
    # value 2 is merged, so `placed` setting plain=1 again is overwritten back to 2)
    orders.RAN.clear()
    resumed = store.flow_resumed(rec.correlation_id, time.time())
    with durable.resuming(rec.correlation_id, resumed.attempt):
        with pytest.raises(StepFailed, match="not yet"):
            _wiring.orders(username="ann", card=SECRET)
    assert orders.RAN == ["placed", "noted", "failing"]
    again = store.flow(rec.correlation_id)
    assert again.state == "failed" and again.attempt == 1
    assert store.steps_of(rec.correlation_id)["counted"].outcome == {"plain": 2}
    durable.forget()
    for path in (tmp_path / "logs").glob("flows.sqlite3*"):
        assert SECRET.encode() not in path.read_bytes(), path.name


def test_group_commit_writes_concurrent_batches_together_and_fails_only_a_bad_one(
    tmp_path,
):
    import threading

    from sl2s.runtime.core import durable
    from sl2s.runtime.store import FlowRecord, StoreError

    store = open_store(f"sqlite:///{str(tmp_path).lstrip('/')}/flows.sqlite3")
    transactions = []
    commit = store.commit

    def counting_commit(**batch):
        transactions.append(len(batch.get("steps") or ()))
        time.sleep(
            0.005
        )  # a write under way long enough for the others to queue behind it
        return commit(**batch)

    store.commit = counting_commit
    group = durable.GroupCommit(store)
    start, errors = threading.Barrier(16), {}

    def flow(i: int) -> FlowRecord:
        now = time.time()
        context = {"n": i} if i != 7 else {"n": i, "pin": "1234"}  # 7 leaks a secret
        return FlowRecord(
            f"{i:032x}", "sys", "f", "m", "pending", context, ("pin",), None, None, None,
            now, now,
        )  # fmt: skip

    def worker(i: int) -> None:
        start.wait()
        for j in range(5):
            steps = [(f"{i:032x}", f"s{j}", "m", "{}", True, str(j), time.time())]
            try:
                group.commit(
                    durable._Batch([flow(i)] if j == 0 else [], steps, [], None)
                )
            except StoreError as error:
                errors[(i, j)] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert set(errors) == {(7, 0)} and "in clear" in str(errors[(7, 0)])
    for i in range(16):
        steps = store.steps_of(f"{i:032x}")
        assert len(steps) == (4 if i == 7 else 5), i
    # 80 batches in fewer transactions: those that met a write under way went together (a
    # failed group was retried batch by batch, so its steps are counted twice)
    assert sum(transactions) >= 80 and len(transactions) < 80
    store.close()


def test_hop_claims_join_the_group_commit_and_each_key_is_claimed_once(tmp_path):
    """SQLite: concurrent claims share transactions with each other (and with answers); of two
    claims of one key, exactly one inserts it and the other gets the record; each gets its own
    flow's state."""
    import threading

    from sl2s.runtime.core import durable
    from sl2s.runtime.store import FlowRecord, HopRecord

    store = open_store(f"sqlite:///{str(tmp_path).lstrip('/')}/flows.sqlite3")
    now = time.time()
    for i in range(8):
        store.flow_started(FlowRecord(
            f"{i:032x}", "sys", "f", "m", "pending", {}, (), None, None, None, now, now,
        ))  # fmt: skip
    store.set_state(f"{3:032x}", "cancelled", now)
    transactions, claims_seen = [], []
    commit, claim_alone = store.commit, store.hop_claim

    def counting_commit(**batch):
        transactions.append("group")
        claims_seen.extend(rec.key for rec in batch.get("claims") or ())
        return commit(**batch)

    def counting_claim(rec):
        transactions.append("alone")
        claims_seen.append(rec.key)
        return claim_alone(rec)

    store.commit, store.hop_claim = counting_commit, counting_claim
    group = durable.GroupCommit(store)
    start, results, lock = threading.Barrier(32), {}, threading.Lock()

    def worker(i: int) -> None:
        cid = f"{i % 8:032x}"
        rec = HopRecord(
            f"{cid}.0.at{i % 16}", "digest", cid, "f", "m", f"at{i % 16}", "running", 0,
            {}, None, time.time(), f"owner{i}",
        )  # fmt: skip
        start.wait()
        found = group.claim(rec)
        with lock:
            results.setdefault(rec.key, []).append(found)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 16 and sorted(claims_seen) == sorted(
        key for key, got in results.items() for _ in got
    )
    for key, got in results.items():
        assert len(got) == 2, key
        cid = key.split(".")[0]
        state = "cancelled" if cid == f"{3:032x}" else "pending"
        inserted = [g for g in got if g[0] is None]
        assert len(inserted) == 1, (key, got)  # claimed once
        other = next(g for g in got if g[0] is not None)
        assert other[0].key == key and other[0].state == "running"
        assert all(g[1] == state for g in got), (key, got)
        stored = store.hop_get(key)
        assert stored.state == "running" and stored.owner in {
            f"owner{i}" for i in range(32)
        }
    assert len(transactions) < 32  # claims that met a write under way went together
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_hop_retried_while_it_runs_gets_409_and_then_the_one_stored_answer(
    tmp_path, backend, request
):
    """The claim is committed before the segment runs (on PostgreSQL without waiting for the WAL
    flush); a retry meanwhile is told 409, and afterwards gets the one stored answer."""
    import threading

    import orjson
    from harness import ThreadServer

    from sl2s.runtime.transport.http.server import create_app

    if backend == "sqlite":
        url = f"sqlite:///{str(tmp_path).lstrip('/')}/flows.sqlite3"
    else:
        url = request.getfixturevalue("pg_url")
    entered, release = threading.Event(), threading.Event()

    class Slow(Handler):
        def __call__(self, hop):
            entered.set()
            assert release.wait(20)
            return super().__call__(hop)

    handler = Slow()
    flows = open_store(url)
    cid = "d" * 32
    body = hop_body(cid)
    first: list = []
    with ThreadServer(
        create_app(handler, machine="server", keys=(HOP_KEY,), flows=flows)
    ) as server:
        runner = threading.Thread(
            target=lambda: first.append(post(server.url, body, f"{cid}.0.check"))
        )
        runner.start()
        assert entered.wait(20)
        status, out, _, _ = post(server.url, body, f"{cid}.0.check")
        assert (status, out["retry-after"]) == (409, "1")
        release.set()
        runner.join(20)
        assert first[0][0] == 200
        status, out, data, _ = post(server.url, body, f"{cid}.0.check")
        assert status == 200 and out["sl2s-replayed"] == "true"
        assert orjson.loads(data)["fields"]["seen"] == 1 and handler.runs == 1
    stored = flows.hop_get(f"{cid}.0.check")
    assert (
        stored.state == "answered" and orjson.loads(stored.body)["fields"]["seen"] == 1
    )
    flows.close()


def test_group_commit_wakes_every_waiting_thread_exactly_once_under_contention(
    tmp_path,
):
    # each queued batch parks on a lock of its own, released once by the thread that wrote it
    # (or that hands it the next write): no thread is left parked, none is woken twice
    # (releasing an unlocked lock raises), every batch is on disk when its commit returns
    import threading

    from sl2s.runtime.core import durable

    store = open_store(f"sqlite:///{str(tmp_path).lstrip('/')}/flows.sqlite3")
    group = durable.GroupCommit(store)
    start, failures, seen = threading.Barrier(32), [], []

    def worker(i: int) -> None:
        start.wait()
        try:
            for j in range(60):
                cid = f"{i:016x}{j:016x}"
                group.commit(
                    durable._Batch(
                        [], [(cid, "s", "m", "{}", True, "e", 1.0)], [], None
                    )
                )
                seen.append(len(store.steps_of(cid)))  # on disk once commit returned
        except BaseException as error:  # noqa: BLE001 - asserted below
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert seen == [1] * (32 * 60)
    assert group._queue == [] and group._writing is False
    store.close()
