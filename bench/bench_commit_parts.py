"""The login flow's four store transactions alone: CPU per flow, 1 caller and 32, user and system.

Runs, in one process and without HTTP, the four write transactions a durable login flow makes
(the client's commit before its hop with the flow's record, the server's hop claim, the server's
answer with its step, the client's end) through the runtime's group commit, on a SQLite store
in a temporary directory. Prints CPU per flow (getrusage: every thread of the process, the
store's checkpointer included) split into user and system time, and the same for an empty
`BEGIN IMMEDIATE`/`COMMIT` as the floor: the part of a durable flow's CPU that is the store,
against what bench_durable.py measures for the whole flow.

    python bench/bench_commit_parts.py [--flows 1500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import threading
import time
import uuid

from sl2s.runtime.core.durable import Buffer, group_for
from sl2s.runtime.store import HopRecord, open_store


def _flow(store, cid: str, now: float) -> None:
    b = Buffer(store)
    b.flows.append((cid, "bench", "login", "client", {"user": "x"}, [], now, 0))
    b.steps.append((cid, "s1", "client", '{"a": 1}', True, "e1", now))
    b.commit()
    group_for(store).claim(
        HopRecord(
            key="k" + cid, digest="d", correlation_id=cid, flow="login", target="server",
            at="s2", state="running", status=0, headers={}, body=None, created=now, owner="o",
        )  # fmt: skip
    )
    b = Buffer(store)
    b.steps.append((cid, "s2", "server", '{"b": 2}', True, "e2", now))
    b.commit(("k" + cid, 200, {}, b'{"ok": true}', now))
    b = Buffer(store)
    b.steps.append((cid, "s3", "client", '{"c": 3}', True, "e3", now))
    b.ended.append((cid, "completed", None, now))
    b.commit()


def _empty(store, cid: str, now: float) -> None:
    with store._write():
        pass


def _cpu(store, work, threads: int, flows: int) -> tuple[float, float, float]:
    per = max(1, flows // threads)
    now = time.time()

    def run() -> None:
        for _ in range(per):
            work(store, uuid.uuid4().hex, now)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - w0
    n = per * threads
    user = (r1.ru_utime - r0.ru_utime) / n * 1e6
    system = (r1.ru_stime - r0.ru_stime) / n * 1e6
    return user, system, wall / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sl2s-bench-commit-")
    try:
        store = open_store("sqlite:///" + work + "/flows.db")
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):  # interleaved
            for label, fn, threads in (
                ("empty transaction (floor), 1 caller", _empty, 1),
                ("4 transactions of a flow, 1 caller", _flow, 1),
                ("4 transactions of a flow, 32 callers", _flow, 32),
            ):
                rows.setdefault(label, []).append(_cpu(store, fn, threads, args.flows))
        print(f"{'case':40s} {'CPU us/flow':>14s} {'user':>12s} {'system':>12s}")
        for label, got in rows.items():
            cpu = [u + s for u, s, _ in got]
            print(
                f"{label:40s} {min(cpu):6.0f}-{max(cpu):<6.0f}"
                f" {min(u for u, _, _ in got):5.0f}-{max(u for u, _, _ in got):<5.0f}"
                f" {min(s for _, s, _ in got):5.0f}-{max(s for _, s, _ in got):<5.0f}"
            )
        floor = [u + s for u, s, _ in rows["empty transaction (floor), 1 caller"]]
        one = [u + s for u, s, _ in rows["4 transactions of a flow, 1 caller"]]
        print(
            f"4 transactions / 4 empty ones: {min(one) / (4 * max(floor)):.1f}x"
            f"-{max(one) / (4 * min(floor)):.1f}x"
        )
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
