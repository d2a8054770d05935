"""The flow store (sl2s.runtime.store): the same tests against SQLite (a file in tmp_path) and a
real PostgreSQL (a fresh database in the throw-away cluster of tests/pg.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from sl2s.runtime.store import (
    HOP_RETENTION,
    AmbiguousPrefix,
    FlowRecord,
    HopRecord,
    StepRecord,
    StoreError,
    default_url,
    open_store,
    redact,
    store_setting,
)
from sl2s.runtime.store.schema import SCHEMA_VERSION, statements

NOW = 1_800_000_000.0
CID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/flows.sqlite3"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(url):
    opened = open_store(url)
    yield opened
    opened.close()


def flow_rec(cid: str = CID, **changes) -> FlowRecord:
    fields = dict(
        correlation_id=cid, system="services", flow="login", machine="client",
        state="pending", context={"username": "ann"}, secrets=("password",), position=None,
        error=None, deadline=NOW + 60, created=NOW, updated=NOW,
    )  # fmt: skip
    fields.update(changes)
    return FlowRecord(**fields)


def step_rec(step: str, cid: str = CID, **changes) -> StepRecord:
    fields = dict(
        correlation_id=cid, step=step, machine="server", outcome={"ok": True},
        replayable=True, event_id=f"ev-{step}", completed=NOW + 1,
    )  # fmt: skip
    fields.update(changes)
    return StepRecord(**fields)


def hop_rec(
    key: str, owner: str = "host:1:0", cid: str = CID, created: float = NOW
) -> HopRecord:
    return HopRecord(
        key=key, digest="d" * 64, correlation_id=cid, flow="login", target="server",
        at="received", state="running", status=0, headers={}, body=None, created=created,
        owner=owner,
    )  # fmt: skip


def dump(url: str) -> str:
    """Every row of every sl2s table, as text (what a reader of the file or database sees)."""
    tables = ["sl2s_meta", "sl2s_flows", "sl2s_steps", "sl2s_hops", "sl2s_nonces"]
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite:///") - 1 :]) as conn:
            rows = [r for t in tables for r in conn.execute(f"SELECT * FROM {t}")]
    else:
        with psycopg.connect(url) as conn:
            rows = [r for t in tables for r in conn.execute(f"SELECT * FROM {t}")]
    return "\n".join(
        repr(
            tuple(
                bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview)) else v
                for v in row
            )
        )
        for row in rows
    )


# ---------------------------------------------------------------------------------------------
# flows


def test_flow_lifecycle(store):
    assert store.flow(CID) is None
    store.flow_started(flow_rec())
    assert store.flow(CID) == flow_rec()
    # starting again (a resume) does not overwrite what is there
    store.flow_started(flow_rec(context={"username": "bob"}, created=NOW + 5))
    assert store.flow(CID).context == {"username": "ann"}

    store.flow_ended(CID, "failed", {"kind": "step", "message": "boom"}, NOW + 3)
    got = store.flow(CID)
    assert (got.state, got.error, got.updated) == (
        "failed",
        {"kind": "step", "message": "boom"},
        NOW + 3,
    )
    assert got.has_secrets and got.secrets == ("password",)

    assert store.set_state(CID, "pending", NOW + 4) is True
    assert store.flow(CID).state == "pending"
    assert store.set_state("f" * 32, "cancelled", NOW) is False
    with pytest.raises(ValueError, match="unknown flow state 'done'"):
        store.set_state(CID, "done", NOW)
    store.flow_ended(CID, "completed", None, NOW + 9)
    got = store.flow(CID)
    assert (got.state, got.error, got.updated) == ("completed", None, NOW + 9)


def test_flow_resumed_bumps_the_attempt(store):
    store.flow_started(flow_rec(attempt=2))
    store.flow_ended(CID, "failed", {"message": "boom"}, NOW + 1)
    got = store.flow_resumed(CID, NOW + 5)
    assert (got.state, got.attempt, got.error, got.updated) == (
        "pending",
        3,
        None,
        NOW + 5,
    )
    assert store.flow(CID) == got
    assert store.flow_resumed("f" * 32, NOW) is None


def test_flow_by_unique_prefix(store):
    store.flow_started(flow_rec("abcdef01" + "0" * 24))
    store.flow_started(flow_rec("abcdef02" + "0" * 24))
    store.flow_started(flow_rec("abcdeg00" + "0" * 24))
    assert store.flow("abcdef01").correlation_id == "abcdef01" + "0" * 24
    assert store.flow("abcdeg").correlation_id == "abcdeg00" + "0" * 24
    with pytest.raises(
        AmbiguousPrefix, match="'abcdef0' is the start of several flows"
    ):
        store.flow("abcdef0")
    assert store.flow("abcde") is None  # shorter than 6 characters: only a full id
    assert store.flow("abcdef03") is None
    assert store.flow("abcdef01" + "0" * 24).flow == "login"


def test_flow_by_unique_suffix_when_no_prefix_matches(store):
    # flows started together share the start of their ids (the time) and differ at the end
    first, second = (
        "0191aa00000a" + "0" * 13 + "1d00d51",
        "0191aa00000a" + "0" * 13 + "2d00d51",
    )
    store.flow_started(flow_rec(first))
    store.flow_started(flow_rec(second))
    with pytest.raises(AmbiguousPrefix, match="'0191aa00000a' is the start of several"):
        store.flow("0191aa00000a")
    assert store.flow("1d00d51").correlation_id == first
    assert store.flow("2d00d51").correlation_id == second
    with pytest.raises(AmbiguousPrefix, match="'d00d51' is the end of several flows"):
        store.flow("d00d51")
    assert store.flow("3d00d51") is None
    assert store.flow("%d00d51") is None  # not a pattern
    assert store.flow("00d51") is None  # shorter than 6 characters: only a full id


def test_flows_filters_newest_first(store):
    for i, (state, flow, machine) in enumerate(
        [("pending", "login", "client"), ("failed", "login", "client"),
         ("completed", "shop", "web"), ("pending", "shop", "web"), ("failed", "shop", "client")]
    ):  # fmt: skip
        store.flow_started(
            flow_rec(
                f"{i:032x}", state=state, flow=flow, machine=machine, updated=NOW + i
            )
        )
    ids = lambda recs: [int(r.correlation_id, 16) for r in recs]  # noqa: E731
    assert ids(store.flows()) == [4, 3, 2, 1, 0]
    assert ids(store.flows(limit=2)) == [4, 3]
    assert ids(store.flows(state="failed")) == [4, 1]
    assert ids(store.flows(flow="shop")) == [4, 3, 2]
    assert ids(store.flows(machine="client")) == [4, 1, 0]
    assert ids(store.flows(older_than=NOW + 2)) == [1, 0]
    assert ids(store.flows(state="pending", flow="shop", machine="web")) == [3]
    assert store.flows(flow="nothing") == []
    with pytest.raises(ValueError, match="unknown flow state"):
        store.flows(state="running")


# ---------------------------------------------------------------------------------------------
# step checkpoints


def test_step_batches_and_position(store):
    store.flow_started(flow_rec())
    batch = [step_rec("a", completed=NOW + 1), step_rec("b", completed=NOW + 2),
             step_rec("c", completed=NOW + 3, outcome={}, replayable=False, event_id=None)]  # fmt: skip
    store.steps_done(batch, (CID, "c"))
    assert store.steps_of(CID) == {r.step: r for r in batch}
    got = store.flow(CID)
    assert (got.position, got.updated) == ("c", NOW + 3)

    # a step recorded twice keeps its first outcome (the one a resume replays)
    store.steps_done(
        [step_rec("a", outcome={"ok": False}, completed=NOW + 4)], (CID, "a")
    )
    assert store.steps_of(CID)["a"].outcome == {"ok": True}
    assert store.flow(CID).position == "a"

    store.steps_done([], None)  # nothing to do
    assert len(store.steps_of(CID)) == 3
    assert store.steps_of("f" * 32) == {}
    # steps of a flow whose entry lives in another store: recorded, no position to move
    store.steps_done([step_rec("x", cid="e" * 32)], ("e" * 32, "x"))
    assert list(store.steps_of("e" * 32)) == ["x"]


def test_one_batch_for_several_flows(store):
    """A group commit across flows: steps of two flows, both positions, one transaction."""
    other = "f" * 32
    store.flow_started(flow_rec())
    store.flow_started(flow_rec(other))
    store.steps_done(
        [step_rec("a", completed=NOW + 7), step_rec("b", cid=other, completed=NOW + 8)],
        [(CID, "a"), (other, "b")],
    )
    assert (store.flow(CID).position, store.flow(other).position) == ("a", "b")
    assert store.flow(CID).updated == NOW + 8  # the batch's time
    assert list(store.steps_of(other)) == ["b"]


def test_progress_counts_as_an_update(store):
    store.flow_started(flow_rec(updated=NOW))
    assert [r.correlation_id for r in store.flows(older_than=NOW + 5)] == [CID]
    store.steps_done([step_rec("a", completed=NOW + 10)], (CID, "a"))
    assert store.flow(CID).updated == NOW + 10
    assert store.flows(older_than=NOW + 5) == []  # it moved since
    assert [r.correlation_id for r in store.flows(older_than=NOW + 11)] == [CID]


def test_group_commit(store):
    """`commit`: flows, steps (tuples with JSON outcomes, or StepRecords), positions, a hop's
    answer and flow ends, all in one transaction."""
    other = "f" * 32
    store.hop_begin(hop_rec("k1"))
    store.commit(
        flows=[flow_rec(), flow_rec(other, flow="shop")],
        steps=[
            (CID, "a", "client", '{"n":1}', True, "e1", NOW + 1),
            (CID, "b", "client", "{}", False, None, NOW + 2),
            step_rec("x", cid=other, completed=NOW + 3),
        ],
        answered=("k1", 200, {"h": "v"}, b"answer", NOW + 3),
        ended=[(other, "completed", None, NOW + 4)],
    )
    assert store.steps_of(CID)["a"] == StepRecord(
        CID, "a", "client", {"n": 1}, True, "e1", NOW + 1
    )
    assert store.steps_of(CID)["b"].replayable is False
    assert (store.flow(CID).position, store.flow(CID).state) == ("b", "pending")
    assert (store.flow(other).position, store.flow(other).state) == ("x", "completed")
    assert store.hop_get("k1").body == b"answer"
    store.commit()  # nothing to do
    # one transaction: an unknown hop key undoes the flows and steps that came with it
    with pytest.raises(StoreError, match="no such hop"):
        store.commit(flows=[flow_rec("e" * 32)], steps=[step_rec("y", cid="e" * 32)],
                     answered=("nope", 200, {}, b"", NOW))  # fmt: skip
    assert store.flow("e" * 32) is None and store.steps_of("e" * 32) == {}
    # a flow already there is left alone; a step already there keeps its first outcome
    store.commit(flows=[flow_rec(context={"username": "zed"})],
                 steps=[(CID, "a", "client", '{"n":2}', True, "e9", NOW + 9)])  # fmt: skip
    assert store.flow(CID).context == {"username": "ann"}
    assert store.steps_of(CID)["a"].outcome == {"n": 1}


def test_steps_from_many_threads(store):
    """Each thread writes its own batches (SQLite: its own connection; PostgreSQL: the pool)."""
    errors = []

    def work(n: int) -> None:
        try:
            for b in range(20):
                cid = f"{n:016x}{b:016x}"
                store.steps_done(
                    [step_rec(f"s{i}", cid=cid) for i in range(4)], (cid, "s3")
                )
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(12):
        for b in range(20):
            assert sorted(store.steps_of(f"{n:016x}{b:016x}")) == [
                "s0",
                "s1",
                "s2",
                "s3",
            ]


# ---------------------------------------------------------------------------------------------
# hops


def test_hop_begin_is_insert_or_get(store):
    assert store.hop_begin(hop_rec("k1", owner="a")) is None
    again = store.hop_begin(hop_rec("k1", owner="b", created=NOW + 1))
    assert again == hop_rec("k1", owner="a")  # never overwritten
    assert store.hop_get("k1") == again
    assert store.hop_get("nope") is None


def test_hop_begin_under_thread_concurrency(store):
    keys = [f"key-{i}" for i in range(25)]
    results: dict[str, list] = {k: [] for k in keys}
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for key in keys:
            got = store.hop_begin(hop_rec(key, owner=f"t{n}"))
            with lock:
                results[key].append((f"t{n}", got))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, outcomes in results.items():
        winners = [owner for owner, got in outcomes if got is None]
        assert len(winners) == 1, key
        assert all(got.owner == winners[0] for _, got in outcomes if got is not None)
        assert store.hop_get(key).owner == winners[0]


RACER = textwrap.dedent("""
    import json, sys, time
    from sl2s.runtime.store import HopRecord, open_store
    url, owner, start, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    store = open_store(url)
    while time.time() < start:
        time.sleep(0.001)
    won = []
    for i in range(count):
        rec = HopRecord(key=f"k{i}", digest="d", correlation_id="c" * 32, flow="f", target="m",
                        at="s", state="running", status=0, headers={}, body=None,
                        created=time.time(), owner=owner)
        if store.hop_begin(rec) is None:
            won.append(rec.key)
    store.close()
    print(json.dumps(won))
""")


def test_hop_begin_across_processes(url):
    open_store(url).close()  # schema first, so both racers start at the same moment
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, f"p{n}", str(start), "200"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for n in range(2)
    ]
    won = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        won.append(set(json.loads(out)))
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == {f"k{i}" for i in range(200)}
    store = open_store(url)
    try:
        for n, keys in enumerate(won):
            assert all(store.hop_get(k).owner == f"p{n}" for k in keys)
    finally:
        store.close()


def test_hop_finish_stores_the_answer(store):
    store.hop_begin(hop_rec("k1"))
    body = bytes(range(256)) * 4  # binary, with NULs
    store.hop_finish("k1", 200, {"content-type": "application/json"}, body, NOW + 2)
    got = store.hop_get("k1")
    assert (got.state, got.status, got.headers, got.body) == (
        "answered",
        200,
        {"content-type": "application/json"},
        body,
    )
    assert store.hop_begin(hop_rec("k1", owner="other")) == got
    with pytest.raises(StoreError, match="hop missing: no such hop"):
        store.hop_finish("missing", 200, {}, b"", NOW)


def test_hop_answer_and_its_checkpoints_commit_together(store):
    store.flow_started(flow_rec())
    store.hop_begin(hop_rec("k1"))
    store.hop_finish(
        "k1", 200, {}, b"ok", NOW + 3,
        steps=[step_rec("a", completed=NOW + 2), step_rec("b", completed=NOW + 3)],
        position=(CID, "b"),
    )  # fmt: skip
    assert store.hop_get("k1").body == b"ok"
    assert sorted(store.steps_of(CID)) == ["a", "b"] and store.flow(CID).position == "b"
    # a failing answer (unknown key) records none of its steps either
    with pytest.raises(StoreError, match="no such hop"):
        store.hop_finish(
            "nope", 200, {}, b"", NOW, steps=[step_rec("c")], position=(CID, "c")
        )
    assert "c" not in store.steps_of(CID) and store.flow(CID).position == "b"


def test_hops_of_a_flow(store):
    store.hop_begin(hop_rec("k2", created=NOW + 2))
    store.hop_begin(hop_rec("k1", created=NOW + 1))
    store.hop_begin(hop_rec("other", cid="f" * 32))
    assert [h.key for h in store.hops_of(CID)] == ["k1", "k2"]
    assert store.hops_of("e" * 32) == []


def test_hop_takeover(store):
    store.hop_begin(hop_rec("k1", owner="dead"))
    assert store.hop_takeover("k1", "b", stale_owner="dead") is True
    assert store.hop_get("k1").owner == "b"
    assert store.hop_takeover("k1", "c", stale_owner="dead") is False  # b got it first
    assert store.hop_takeover("nope", "c", stale_owner="dead") is False
    store.hop_finish("k1", 200, {}, b"done", NOW)
    assert (
        store.hop_takeover("k1", "c", stale_owner="b") is False
    )  # answered: nothing to take

    store.hop_begin(hop_rec("k2", owner="dead"))
    wins = []
    barrier = threading.Barrier(6)

    def claim(n: int) -> None:
        barrier.wait()
        if store.hop_takeover("k2", f"t{n}", stale_owner="dead"):
            wins.append(f"t{n}")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and store.hop_get("k2").owner == wins[0]


def test_nonces(store):
    assert store.nonce_seen("n1", NOW + 10) is False
    assert store.nonce_seen("n1", NOW + 10) is True
    assert store.nonce_seen("n2", NOW + 20) is False
    assert store.expire(NOW + 15) == 1  # n1 went
    assert store.nonce_seen("n1", NOW + 30) is False
    assert store.nonce_seen("n2", NOW + 30) is True


# ---------------------------------------------------------------------------------------------
# retention


def test_expire_by_retention(url):
    store = open_store(url, hop_retention=100.0, flow_retention=1000.0)
    try:
        store.hop_begin(hop_rec("answered", created=NOW + 50))  # kept until NOW + 150
        store.hop_finish("answered", 200, {}, b"x", NOW + 60)
        store.hop_begin(hop_rec("running", created=NOW))  # abandoned: until NOW + 100
        assert store.expire(NOW + 99) == 0
        assert store.expire(NOW + 100) == 1
        assert (
            store.hop_get("running") is None and store.hop_get("answered") is not None
        )
        assert store.expire(NOW + 150) == 1
        assert store.hop_get("answered") is None

        for i, state in enumerate(["completed", "cancelled", "failed", "pending"]):
            cid = f"{i:032x}"
            store.flow_started(flow_rec(cid, state=state, updated=NOW))
            store.steps_done([step_rec("a", cid=cid)], None)
        assert store.expire(NOW + 999) == 0
        assert (
            store.expire(NOW + 1000) == 2
        )  # completed and cancelled flows; failed ones wait
        assert [r.state for r in store.flows()] == ["failed", "pending"] or [
            r.state for r in store.flows()
        ] == ["pending", "failed"]
        assert store.steps_of(f"{0:032x}") == {} and store.steps_of(f"{1:032x}") == {}
        assert list(store.steps_of(f"{2:032x}")) == ["a"]
        assert store.prune(NOW + 1, ["failed"]) == 1
        assert [r.state for r in store.flows()] == ["pending"]
    finally:
        store.close()


def test_expire_in_batches(store, monkeypatch):
    from sl2s.runtime.store import base

    monkeypatch.setattr(base, "EXPIRE_BATCH", 7)
    for i in range(30):
        store.nonce_seen(f"n{i}", NOW + i)
    assert store.expire(NOW + 100) == 30
    assert store.nonce_seen("n0", NOW + 200) is False


def test_expiry_walks_an_index(url):
    """What `expire`, retention and the hot lookups run is an index search, never a table scan."""
    open_store(url).close()
    sql = statements("sqlite")
    probes = {
        "hops_expire": (NOW, 10),
        "nonces_expire": (NOW, 10),
        "flows_ended": ("completed", NOW, 10),
        "hop_get": ("k",),
        "hops_of": (CID + ".", CID + "/", CID, CID),
        "steps_of": (CID,),
        "flow_prefix": ("abcdef", "abcdeg"),
    }
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite:///") - 1 :]) as conn:
            for name, args in probes.items():
                plan = [
                    row[3]
                    for row in conn.execute("EXPLAIN QUERY PLAN " + sql[name], args)
                ]
                assert plan and all(not line.startswith("SCAN") for line in plan), (
                    name,
                    plan,
                )
                assert any(line.startswith("SEARCH") for line in plan), (name, plan)
    else:
        pg = statements("postgres")
        with psycopg.connect(url) as conn:
            conn.execute(
                "SET enable_seqscan = off"
            )  # the tables are tiny: ask what it *can* do
            for name, args in probes.items():
                plan = "\n".join(
                    r[0] for r in conn.execute("EXPLAIN " + pg[name], args)
                )
                assert "Seq Scan" not in plan, (name, plan)
                assert "Index" in plan, (name, plan)


# ---------------------------------------------------------------------------------------------
# secrets


def test_secrets_are_never_stored(url, store):
    leaked = flow_rec(context={"username": "ann", "password": "hunter2"})
    with pytest.raises(StoreError, match="secret field.*password in clear"):
        store.flow_started(leaked)
    assert store.flow(CID) is None

    # masked data is kept exactly as given: absent, or ***
    store.flow_started(flow_rec(context={"username": "ann", "password": "***"}))
    store.steps_done(
        [step_rec("token", outcome={"session": "***"}, replayable=False)],
        (CID, "token"),
    )
    store.flow_ended(
        CID,
        "failed",
        {"message": "wrong password for ann", "fields": {"password": "***"}},
        NOW,
    )
    assert store.flow(CID).context == {"username": "ann", "password": "***"}
    assert store.steps_of(CID)["token"].outcome == {"session": "***"}
    assert store.steps_of(CID)["token"].replayable is False
    text = dump(url)
    assert "hunter2" not in text
    assert "***" in text and "ann" in text


# ---------------------------------------------------------------------------------------------
# opening, reopening, schema


def test_reopen_after_close_keeps_everything(url):
    store = open_store(url)
    store.flow_started(flow_rec())
    store.steps_done([step_rec("a")], (CID, "a"))
    store.hop_begin(hop_rec("k1"))
    store.hop_finish("k1", 201, {"x": "y"}, b"answer", NOW)
    store.nonce_seen("n1", NOW + 10**6)
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.flow(CID)

    again = open_store(url)
    try:
        assert again.flow(CID).position == "a"
        assert list(again.steps_of(CID)) == ["a"]
        assert again.hop_get("k1").body == b"answer"
        assert again.nonce_seen("n1", NOW) is True
    finally:
        again.close()


OPENER = textwrap.dedent("""
    import sys, time
    from sl2s.runtime.store import open_store
    url, start = sys.argv[1], float(sys.argv[2])
    while time.time() < start:
        time.sleep(0.001)
    store = open_store(url)
    store.nonce_seen(sys.argv[3], 2e9)
    store.close()
""")


def test_schema_creation_is_idempotent_across_processes(url):
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, url, str(start), f"n{n}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for n in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = open_store(url)  # a fourth time, from here
    try:
        assert [store.nonce_seen(f"n{n}", 2e9) for n in range(3)] == [True, True, True]
    finally:
        store.close()
    assert dump(url).count("schema_version") == 1
    assert f"('schema_version', '{SCHEMA_VERSION}')" in dump(url)


def test_a_newer_schema_is_refused(url):
    open_store(url).close()
    sql = "UPDATE sl2s_meta SET value = '99' WHERE key = 'schema_version'"
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite:///") - 1 :]) as conn:
            conn.execute(sql)
    else:
        with psycopg.connect(url) as conn:
            conn.execute(sql)
    with pytest.raises(
        StoreError,
        match=f"schema version 99; this sl2s knows version {SCHEMA_VERSION}.*upgrade",
    ):
        open_store(url)


def _indexes(url: str) -> set[str]:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite:///") - 1 :]) as conn:
            sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'sl2s_%'"
            return {row[0] for row in conn.execute(sql)}
    with psycopg.connect(url) as conn:
        sql = "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'sl2s_%'"
        return {row[0] for row in conn.execute(sql)}


def test_a_store_of_schema_version_1_is_brought_to_2_and_keeps_its_rows(url):
    # version 1 indexed hops by correlation id (and, on SQLite, by expiry): a claim wrote two
    # b-trees more than it does now
    store = open_store(url)
    try:
        store.flow_started(flow_rec())
        store.hop_begin(hop_rec(f"{CID}.0.received"))
    finally:
        store.close()
    old = [
        "CREATE INDEX sl2s_hops_correlation ON sl2s_hops (correlation_id)",
        "UPDATE sl2s_meta SET value = '1' WHERE key = 'schema_version'",
    ]
    if url.startswith("sqlite:"):
        old.insert(0, "CREATE INDEX sl2s_hops_expires ON sl2s_hops (expires)")
        with sqlite3.connect(url[len("sqlite:///") - 1 :]) as conn:
            for sql in old:
                conn.execute(sql)
    else:
        with psycopg.connect(url) as conn:
            for sql in old:
                conn.execute(sql)
    assert "sl2s_hops_correlation" in _indexes(url)

    store = open_store(url)
    try:
        assert store.flow(CID).flow == "login"
        assert [h.key for h in store.hops_of(CID)] == [f"{CID}.0.received"]
    finally:
        store.close()
    assert f"('schema_version', '{SCHEMA_VERSION}')" in dump(url)
    found = _indexes(url)
    assert "sl2s_hops_correlation" not in found and "sl2s_hops_foreign" in found
    assert ("sl2s_hops_expires" in found) == url.startswith("postgres")

    # an sl2s of version 1 opening it creates its indexes again before it is refused: the next
    # open of this version drops them again
    if url.startswith("sqlite:"):
        with sqlite3.connect(url[len("sqlite:///") - 1 :]) as conn:
            conn.execute(old[1])
    else:
        with psycopg.connect(url) as conn:
            conn.execute(old[0])
    open_store(url).close()
    assert "sl2s_hops_correlation" not in _indexes(url)


def test_a_flows_hops_whatever_their_keys_oldest_first(store):
    # the keys sl2s makes begin with the flow's id; a caller of the protocol may make others
    other = "f" * 32
    store.hop_begin(hop_rec(f"{CID}.0.back", created=NOW + 2))
    store.hop_begin(hop_rec("someone-elses-key-0001", created=NOW + 1))
    store.hop_begin(hop_rec(f"{CID}.1.back", created=NOW + 3))
    store.hop_begin(hop_rec(f"{other}.0.back", cid=other, created=NOW))
    store.hop_begin(
        hop_rec(f"{CID}.0.x", cid=other, created=NOW)
    )  # its id, another flow's
    assert [h.key for h in store.hops_of(CID)] == [
        "someone-elses-key-0001", f"{CID}.0.back", f"{CID}.1.back"]  # fmt: skip
    assert [h.key for h in store.hops_of(other)] == [f"{other}.0.back", f"{CID}.0.x"]


def test_sqlite_settings(tmp_path):
    store = open_store(
        f"sqlite:///{tmp_path}/deep/er/flows.sqlite3"
    )  # creates its directory
    try:
        conn = store._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        other = []
        t = threading.Thread(target=lambda: other.append(store._conn()))
        t.start()
        t.join()
        assert other[0] is not conn  # a connection per thread
    finally:
        store.close()


def test_sqlite_writes_of_all_threads_share_one_connection(tmp_path):
    """One write connection per process (its page cache and statements stay valid between
    writes); reads keep a connection per thread."""
    store = open_store(f"sqlite:///{tmp_path}/flows.sqlite3")
    try:
        used = []

        def write(i: int) -> None:
            with store._write() as cur:
                used.append(cur.connection)
            store.flow_started(flow_rec(f"{i:032x}"))

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(conn) for conn in used}) == 1
        assert not store._conns  # no thread opened a connection of its own for writing
        assert len(store.flows(limit=20)) == 8  # a read: this thread's own connection
        assert len(store._conns) == 1 and used[0] not in [
            c for _, c in store._conns.values()
        ]
    finally:
        store.close()


def test_sqlite_wal_rewinds_under_sustained_writes(tmp_path, monkeypatch):
    """Writes that never pause for long: the checkpointer still rewinds the WAL, so it holds
    only the last moments' writes (a PASSIVE checkpoint alone never caught up: the WAL grew by
    everything written, 300 MB in this test)."""
    import os

    from sl2s.runtime.store import sqlite as backend

    monkeypatch.setattr(backend, "CHECKPOINT_EVERY", 0.05)
    monkeypatch.setattr(backend, "RESTART_FRAMES", 256)
    path = tmp_path / "flows.sqlite3"
    store = open_store(f"sqlite:///{path}")
    try:
        outcome = {"text": "x" * 900}
        written, stop = 0, time.monotonic() + 2.0
        while time.monotonic() < stop:
            cid = os.urandom(16).hex()  # a new leaf of the steps' b-tree, mostly
            store.steps_done([step_rec(f"s{i}", cid=cid, outcome=outcome) for i in range(4)],
                             None)  # fmt: skip
            written += 1
        # frames in the WAL since it last started again; every commit appended at least one
        _, frames, _ = store._wconn_.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        assert written > 200
        assert frames < written, (frames, written)
        assert os.path.getsize(f"{path}-wal") <= backend.WAL_SIZE_LIMIT + (1 << 20)
    finally:
        store.close()


def test_postgres_pool_is_bounded(pg_url):
    store = open_store(pg_url)
    try:
        errors = []

        def work(n: int) -> None:
            try:
                for i in range(30):
                    store.nonce_seen(f"{n}-{i}", 2e9)
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store._open <= store.pool_size == 8
        with psycopg.connect(pg_url) as conn:
            dbname = conn.info.dbname
            count = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
            ).fetchone()[0]
        assert count <= 8 + 1  # the pool, and this connection
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------
# choosing a store


def test_store_setting_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("SL2S_STORE", raising=False)
    monkeypatch.delenv("SL2S_LOG_DIR", raising=False)
    services = tmp_path / "services"
    services.mkdir()
    expected = (
        f"sqlite:///{str(services / '.sl2s' / 'logs' / 'flows.sqlite3').lstrip('/')}"
    )
    assert store_setting(str(services)) == (expected, "default")
    assert default_url(str(services)) == expected
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    assert (
        store_setting(str(services))[0]
        == f"sqlite:///{str(tmp_path / 'logs' / 'flows.sqlite3').lstrip('/')}"
    )

    (services / "sl2s.toml").write_text('[store]\nurl = "sqlite:state/flows.db"\n')
    assert store_setting(str(services)) == (
        f"sqlite:///{str(services / 'state' / 'flows.db').lstrip('/')}",
        "services/sl2s.toml [store] url",
    )
    monkeypatch.setenv("SL2S_STORE", "postgresql://u:pw@db.example:5432/flows")
    assert store_setting(str(services)) == (
        "postgresql://u:pw@db.example:5432/flows",
        "SL2S_STORE",
    )
    monkeypatch.setenv("SL2S_STORE", "none")
    assert open_store(services_dir=str(services)) is None

    monkeypatch.delenv("SL2S_STORE")
    (services / "sl2s.toml").write_text(
        '[store]\nurl = "sqlite:state/flows.db"\npath = "x"\n'
    )
    with pytest.raises(
        StoreError, match=r"sl2s.toml: \[store\] has unknown setting\(s\): path"
    ):
        store_setting(str(services))
    (services / "sl2s.toml").write_text("[store]\nurl = 3\n")
    with pytest.raises(StoreError, match="url must be a non-empty string"):
        store_setting(str(services))


def test_opening_by_setting_creates_the_default_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SL2S_STORE", raising=False)
    monkeypatch.delenv("SL2S_LOG_DIR", raising=False)
    store = open_store(services_dir=str(tmp_path))
    try:
        store.nonce_seen("n", 2e9)
    finally:
        store.close()
    assert (tmp_path / ".sl2s" / "logs" / "flows.sqlite3").exists()


def test_bad_store_urls_say_what_to_write(tmp_path):
    with pytest.raises(
        StoreError, match=r"'mysql://u:\*\*\*@h/db' is not a store URL: use sqlite:///"
    ):
        open_store("mysql://u:secret@h/db")
    with pytest.raises(StoreError, match="names no file"):
        open_store("sqlite:")
    with pytest.raises(
        StoreError, match="cannot reach the store postgresql://u:\\*\\*\\*@/nowhere"
    ):
        open_store(f"postgresql://u:pw@/nowhere?host={tmp_path}&connect_timeout=2")
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="garbage.db.*not a database"):
        open_store(f"sqlite:///{tmp_path}/garbage.db")


def test_redact_hides_passwords():
    assert redact("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact("postgresql://u@h/db?password=pw&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert redact("sqlite:///a/b") == "sqlite:///a/b"


def test_hop_retention_default_is_three_days():
    assert HOP_RETENTION == 3 * 24 * 3600


def test_postgres_reconnects_after_its_connections_were_cut(pg_url):
    """The server ended every connection (a restart, a failover): the next call fails with a
    one-line StoreError and drops the pool; the call after it connects afresh."""
    store = open_store(pg_url)
    try:
        store.nonce_seen("before", 2e9)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(
            StoreError, match=r"^sl2s: store postgresql://sl2s@/\S+: .*terminat"
        ):
            store.nonce_seen("during", 2e9)
        assert store._open == 0
        assert store.nonce_seen("before", 2e9) is True
        assert store.nonce_seen("after", 2e9) is False
    finally:
        store.close()


def test_a_batch_larger_than_one_statement(store):
    """Batches are cut into multi-row INSERTs (SQLite 256 rows, PostgreSQL 7): all arrive."""
    records = [step_rec(f"s{i:03}", completed=NOW + i) for i in range(300)]
    store.flow_started(flow_rec())
    store.steps_done(records, (CID, "s299"))
    got = store.steps_of(CID)
    assert sorted(got) == [f"s{i:03}" for i in range(300)]
    assert got["s123"] == records[123]
    assert store.flow(CID).updated == NOW + 299


def test_hop_claim_reads_the_flow_state_with_the_claim(store):
    assert store.hop_claim(hop_rec("k1")) == (None, None)  # inserted; flow unknown here
    store.flow_started(flow_rec())
    store.set_state(CID, "cancelled", NOW + 1)
    found, state = store.hop_claim(hop_rec("k1", owner="other"))
    assert found == store.hop_get("k1") and found.owner == "host:1:0"
    assert state == "cancelled"
    assert store.hop_claim(hop_rec("k2")) == (None, "cancelled")


def test_claims_in_one_commit_each_get_their_own_answer(store):
    # a server's concurrent hops claimed in one transaction (the group commit): a new key, the
    # same key twice (the second finds the first's claim), a key claimed before (its record),
    # keys of a known and of an unknown flow
    store.flow_started(flow_rec())
    assert store.hop_claim(hop_rec("old", owner="other")) == (None, "pending")
    got = store.commit(
        claims=[hop_rec("new"), hop_rec("twice"), hop_rec("twice", owner="late"),
                hop_rec("old"), hop_rec("stranger", cid="e" * 32)]
    )  # fmt: skip
    assert got[0] == (None, "pending") and got[1] == (None, "pending")
    assert got[2][1] == "pending" and got[2][0].owner == "host:1:0"  # the first's claim
    assert got[3][1] == "pending" and got[3][0].owner == "other"
    assert got[4] == (None, None)
    assert [store.hop_get(k).owner for k in ("new", "twice", "old", "stranger")] == [
        "host:1:0", "host:1:0", "other", "host:1:0"]  # fmt: skip


def test_commit_of_a_hop_servers_answers(store):
    # steps and several answers in one commit (a server's concurrent hops)
    store.flow_started(flow_rec())
    store.hop_begin(hop_rec("k1"))
    store.hop_begin(hop_rec("k2"))
    store.commit(steps=[step_rec("a"), (CID, "b", "server", '{"n":1}', True, None, NOW + 2)],
                 answers=[("k1", 200, {"h": "1"}, b"one", NOW), ("k2", 201, {}, b"two", NOW)])  # fmt: skip
    assert store.hop_get("k1").body == b"one" and store.hop_get("k2").status == 201
    assert set(store.steps_of(CID)) == {"a", "b"} and store.flow(CID).position == "b"
    # an unknown key among them undoes the whole commit
    store.hop_begin(hop_rec("k3"))
    with pytest.raises(StoreError, match="no such hop"):
        store.commit(steps=[step_rec("c")],
                     answers=[("k3", 200, {}, b"three", NOW), ("nope", 200, {}, b"", NOW)])  # fmt: skip
    assert "c" not in store.steps_of(CID) and store.hop_get("k3").state == "running"


def test_sqlite_batches_of_every_size_use_few_statements(tmp_path):
    """A group commit of n rows of a kind is one statement of a power-of-two size (the last row
    repeated): 9 sizes per kind stay prepared instead of one per batch size, which grew a soak's
    processes by ~13 MiB. Every row lands once; an unknown hop key in a padded batch still fails
    the commit."""
    store = open_store(f"sqlite:///{tmp_path}/flows.sqlite3")
    try:
        statements = set()
        with store._write():
            pass  # opens the process's write connection
        store._wconn_.set_trace_callback(statements.add)
        for n in range(1, 41):
            cids = [f"{n:04d}{i:028x}" for i in range(n)]
            for cid in cids:
                store.hop_begin(hop_rec(f"{cid}.k", cid=cid))
            store.commit(
                flows=[flow_rec(cid) for cid in cids],
                steps=[step_rec("a", cid=cid) for cid in cids],
                answers=[(f"{cid}.k", 200, {}, cid.encode(), NOW) for cid in cids],
                ended=[(cid, "completed", None, NOW + 5) for cid in cids],
            )
            for cid in cids:
                assert set(store.steps_of(cid)) == {"a"}
                rec = store.flow(cid)
                assert (rec.state, rec.position) == ("completed", "a"), (n, cid)
                assert store.hop_get(f"{cid}.k").body == cid.encode()
        # (the trace shows statements with their values bound: count the rows of VALUES)
        multi = {(s[:30], s.count("), (") + 1) for s in statements if "), (" in s}
        sizes = {size for _, size in multi}
        assert sizes == {2, 4, 8, 16, 32, 64}, sizes  # batches of 2..40 rows
        assert len(multi) <= 5 * 6  # flows, steps, positions, answers, ends
        with pytest.raises(StoreError, match="no such hop"):
            store.hop_begin(hop_rec("z1"))
            store.hop_begin(hop_rec("z2"))
            store.commit(answers=[("z1", 200, {}, b"", NOW), ("z2", 200, {}, b"", NOW),
                                  ("nope", 200, {}, b"", NOW)])  # fmt: skip
        assert store.hop_get("z1").state == "running"
    finally:
        store.close()


def test_sqlite_a_forked_child_writes_with_its_own_connection(tmp_path):
    """Forked while a thread of the parent held the process's write lock: the child neither waits
    for that thread (it does not exist there) nor uses the parent's connection. (Forking inside
    an open SQLite transaction is unsafe whatever the store does: SQLite's file locks are per
    process.)"""
    import os

    store = open_store(f"sqlite:///{tmp_path}/flows.sqlite3")
    try:
        store.flow_started(flow_rec("a" * 32))  # the parent's write connection is open
        parent_conn = store._wconn_
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._wlock:  # as a writer between taking the lock and its BEGIN
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
        pid = os.fork()
        if (
            pid == 0
        ):  # the child: write, then leave without running the parent's cleanup
            code = 1
            try:
                store.busy_timeout = 3.0
                store.flow_started(flow_rec("b" * 32))
                ok = store._wconn_ is not parent_conn and store._wpid == os.getpid()
                code = 0 if ok else 2
            except BaseException as error:  # noqa: BLE001 - said on stderr, exit 1
                os.write(2, f"child: {type(error).__name__}: {error}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        release.set()
        holder.join(10)
        assert os.WEXITSTATUS(status) == 0
        assert store.flow("b" * 32) is not None
        store.flow_started(flow_rec("c" * 32))  # the parent still writes
        assert store._wconn_ is parent_conn
    finally:
        store.close()


def test_correlation_ids_are_32_hex_digits_in_the_order_they_were_made(monkeypatch):
    # the store's b-trees are keyed by correlation id: made in time order, a group commit's
    # flows land on the same right-edge pages instead of one random page each
    from sl2s.runtime.core import events

    clock = iter(range(1_700_000_000_000_000_000, 1_800_000_000_000_000_000, 1_000_003))
    monkeypatch.setattr(events, "_time_ns", lambda: next(clock))
    made = [events.new_correlation_id() for _ in range(500)]
    assert all(
        len(cid) == 32 and int(cid, 16) >= 0 and cid == cid.lower() for cid in made
    )
    assert made == sorted(made) and len(set(made)) == len(made)
    # the same millisecond: told apart by the 80 random bits that follow the time
    monkeypatch.setattr(events, "_time_ns", lambda: 1_700_000_000_000_000_000)
    same = {events.new_correlation_id() for _ in range(1000)}
    assert len(same) == 1000 and len({cid[:12] for cid in same}) == 1
