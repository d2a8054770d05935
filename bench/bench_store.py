"""Cost of the flow store's checkpoints, next to the floor of a bare commit, measured in the same run.

    python bench/bench_store.py [--ops 400] [--repeat 5] [--backend sqlite|postgres|both]

For each backend (SQLite in a temporary file; PostgreSQL in a throw-away cluster that this bench
starts in a temporary directory on a unix socket, fsync on, and removes at the end):

floor:   a bare `INSERT` of one small row + commit, on the same connection the store uses
         (SQLite: one autocommitted statement; PostgreSQL: execute + `commit()`).
steps N: `store.steps_done(batch, position)` with N = 1, 4 and 16 step records of one flow (each
         with a small outcome) and the flow's position update: one transaction — the group commit
         the runtime makes before it acknowledges.
commit:  `store.commit(steps=rows)` with 4 step rows as tuples (outcome already JSON): the
         runtime's group commit.
hop:     `store.hop_begin(rec)` + `store.hop_finish(key, ...)` of a new key: the two transactions
         an inbound hop costs (insert-or-get, then the stored answer); and the same with the
         segment's 4 step checkpoints committed with the answer (`hop_finish(..., steps=...)`).

Wall time per operation, the cases interleaved in each of R rounds so that all see the same machine
load; prints the best round of each (microseconds per operation) and its ratio to the floor.
PostgreSQL also shows what taking a connection from the store's pool costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(
    0, str(ROOT / "tests")
)  # the throw-away cluster of the tests: tests/pg.py

from sl2s.runtime.store import (  # noqa: E402  (after the path above)
    FlowRecord,
    HopRecord,
    StepRecord,
    open_store,
)

BATCHES = (1, 4, 16)
BODY = (
    b'{"context":{"username":"ann","session":"s-0123456789"},"at":"login_successful"}'
)


def floor_sqlite(store, n: int) -> float:
    conn = store._conn()
    conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id TEXT PRIMARY KEY, v TEXT)")
    ids = [uuid.uuid4().hex for _ in range(n)]
    t = time.perf_counter()
    for i in ids:
        conn.execute("INSERT INTO bench_floor (id, v) VALUES (?, ?)", (i, "x"))
    return (time.perf_counter() - t) / n


def floor_postgres(store, n: int) -> float:
    conn = store._take()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS bench_floor (id TEXT PRIMARY KEY, v TEXT)"
            )
            conn.commit()
            ids = [uuid.uuid4().hex for _ in range(n)]
            t = time.perf_counter()
            for i in ids:
                cur.execute("INSERT INTO bench_floor (id, v) VALUES (%s, %s)", (i, "x"))
                conn.commit()
            return (time.perf_counter() - t) / n
    finally:
        store._give(conn, False)


def pool_take_give(store, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        store._give(store._take(), False)
    return (time.perf_counter() - t) / n


def bench_steps(store, n: int, size: int) -> float:
    now = time.time()
    flows = []
    for _ in range(n):
        cid = uuid.uuid4().hex
        store.flow_started(
            FlowRecord(cid, "bench", "login", "client", "pending", {"username": "ann"},
                       ("password",), None, None, now + 60, now, now)  # fmt: skip
        )
        batch = [
            StepRecord(cid, f"step_{i}", "server", {"session": f"s-{i}", "ok": True}, True,
                       uuid.uuid4().hex[:16], now)  # fmt: skip
            for i in range(size)
        ]
        flows.append((batch, (cid, batch[-1].step)))
    t = time.perf_counter()
    for batch, position in flows:
        store.steps_done(batch, position)
    return (time.perf_counter() - t) / n


def bench_commit_rows(store, n: int, size: int = 4) -> float:
    """The runtime's group commit: step rows as tuples with their outcome already JSON text."""
    now = time.time()
    work = []
    for _ in range(n):
        cid = uuid.uuid4().hex
        store.flow_started(
            FlowRecord(cid, "bench", "login", "client", "pending", {}, (), None, None, None,
                       now, now)  # fmt: skip
        )
        work.append(
            [
                (cid, f"step_{i}", "server", '{"ok":true}', True, None, now)
                for i in range(size)
            ]
        )
    t = time.perf_counter()
    for rows in work:
        store.commit(steps=rows)
    return (time.perf_counter() - t) / n


def bench_hop(store, n: int) -> float:
    now = time.time()
    recs = [
        HopRecord(uuid.uuid4().hex, "d" * 64, uuid.uuid4().hex, "login", "server", "received",
                  "running", 0, {}, None, now, "bench:1:0")  # fmt: skip
        for _ in range(n)
    ]
    headers = {"content-type": "application/json"}
    t = time.perf_counter()
    for rec in recs:
        assert store.hop_begin(rec) is None
        store.hop_finish(rec.key, 200, headers, BODY, now)
    return (time.perf_counter() - t) / n


def bench_hop_with_steps(store, n: int, size: int = 4) -> float:
    """A served segment's whole durable footprint: begin, then answer + its steps in one commit."""
    now = time.time()
    work = []
    for _ in range(n):
        cid = uuid.uuid4().hex
        steps = [
            StepRecord(cid, f"step_{i}", "server", {"ok": True}, True, None, now)
            for i in range(size)
        ]
        rec = HopRecord(uuid.uuid4().hex, "d" * 64, cid, "login", "server", "step_0",
                        "running", 0, {}, None, now, "bench:1:0")  # fmt: skip
        work.append((rec, steps))
    t = time.perf_counter()
    for rec, steps in work:
        assert store.hop_begin(rec) is None
        store.hop_finish(
            rec.key,
            200,
            {},
            BODY,
            now,
            steps=steps,
            position=(rec.correlation_id, "step_3"),
        )
    return (time.perf_counter() - t) / n


def run_backend(name: str, url: str, ops: int, repeat: int) -> None:
    store = open_store(url)
    floor_fn = floor_sqlite if name == "sqlite" else floor_postgres
    try:
        # warm up: connections, prepared statements, the file's first pages
        floor_fn(store, 50), bench_hop(store, 50), bench_steps(store, 50, 4)
        results: dict[str, list[float]] = {}
        for _ in range(repeat):
            results.setdefault("floor: INSERT + commit", []).append(
                floor_fn(store, ops)
            )
            for size in BATCHES:
                results.setdefault(f"steps_done, {size} step(s) + position", []).append(
                    bench_steps(store, ops, size)
                )
            results.setdefault("commit, 4 step rows (tuples) + position", []).append(
                bench_commit_rows(store, ops)
            )
            results.setdefault("hop_begin + hop_finish", []).append(
                bench_hop(store, ops)
            )
            results.setdefault("hop_begin + hop_finish with 4 steps", []).append(
                bench_hop_with_steps(store, ops)
            )
            if name == "postgres":
                results.setdefault("(pool: take + give a connection)", []).append(
                    pool_take_give(store, ops)
                )
    finally:
        store.close()
    floor = min(results["floor: INSERT + commit"]) * 1e6
    print(f"\n{name}: {ops} operations x {repeat} rounds, best round")
    print(f"{'case':<40} {'us/op':>9} {'x floor':>8}")
    for case, times in results.items():
        value = min(times) * 1e6
        print(f"{case:<40} {value:>9.1f} {value / floor:>8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "both"], default="both"
    )
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as root:
            run_backend("sqlite", f"sqlite:///{os.path.join(root, 'flows.sqlite3')}",
                        args.ops, args.repeat)  # fmt: skip
    if args.backend in ("postgres", "both"):
        from pg import start_cluster

        cluster = start_cluster(fsync=True)
        try:
            run_backend(
                "postgres", cluster.create_database("bench"), args.ops, args.repeat
            )
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
