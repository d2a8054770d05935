"""What a hand-off through the hop server's `WorkerPool` costs, and how many threads it starts.

    python bench/bench_worker_pool.py [--tasks 20000] [--rounds 7]

Round trip: an asyncio coroutine submits a trivial function and awaits its answer, one at a time
(the hop server's path for each hop). Timed against the same round trip through
`loop.run_in_executor` on a `ThreadPoolExecutor` (what asyncio offers) in the same rounds; the
pool's per-task cost is the figure in the `WorkerPool` docstring.

Concurrency: on a pool with a few idle threads (warmed by earlier work), 20 blocking tasks
submitted from the loop one after another (yielding between them), each waiting on a barrier of 20
parties (10 s timeout): the row says how many threads ran them and whether all 20 ran at once, i.e.
whether the pool started a thread whenever all were busy (a pool that counted idle threads ran
them on 2-4 threads here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sl2s.runtime.transport.http.server import WorkerPool


def _noop() -> int:
    return 1


async def _through_pool(pool: WorkerPool, tasks: int) -> float:
    start = time.perf_counter()
    for _ in range(tasks):
        await pool.submit(_noop)
    return (time.perf_counter() - start) / tasks


async def _through_executor(executor: ThreadPoolExecutor, tasks: int) -> float:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    for _ in range(tasks):
        await loop.run_in_executor(executor, _noop)
    return (time.perf_counter() - start) / tasks


async def _staggered(parties: int = 20) -> tuple[int, bool]:
    pool = WorkerPool(64)
    await asyncio.gather(*(pool.submit(_noop) for _ in range(4)))  # 4 idle threads
    await asyncio.sleep(0.05)
    barrier = threading.Barrier(parties)
    names: set[str] = set()

    def task() -> bool:
        names.add(threading.current_thread().name + str(threading.get_ident()))
        try:
            barrier.wait(timeout=10)
            return True
        except threading.BrokenBarrierError:
            return False

    futures = []
    for _ in range(parties):
        futures.append(pool.submit(task))
        await asyncio.sleep(0)
    passed = await asyncio.gather(*futures)
    return len(names), all(passed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    pool_times, floor_times = [], []
    with ThreadPoolExecutor(max_workers=1) as executor:
        pool = WorkerPool(64)
        for _ in range(args.rounds):  # alternate, so drift hits both alike
            pool_times.append(asyncio.run(_through_pool(pool, args.tasks)))
            floor_times.append(asyncio.run(_through_executor(executor, args.tasks)))
    threads, all_at_once = asyncio.run(_staggered())

    def us(values: list[float]) -> str:
        low, high = sorted(values)[1], sorted(values)[-2]  # drop the extremes
        return f"{low * 1e6:.0f}–{high * 1e6:.0f} µs"

    ratio = statistics.median(pool_times) / statistics.median(floor_times)
    print("| what | measured | floor (same run) | ratio |")
    print("|---|---|---|---|")
    print(
        f"| round trip through WorkerPool | {us(pool_times)} |"
        f" run_in_executor: {us(floor_times)} | {ratio:.2f}× |"
    )
    print(
        f"| 20 staggered blocking tasks on a 20-party barrier | {threads} threads |"
        f" 20 needed | all at once: {'yes' if all_at_once else 'no'} |"
    )


if __name__ == "__main__":
    main()
