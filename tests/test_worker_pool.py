"""The hop server's WorkerPool starts a thread whenever every thread it has is busy (issue 9).

Blocking tasks wait on a barrier that passes only when all of them run at the same time; a pool
that counted idle threads ran such a burst on 2-4 threads, and the barrier broke at its timeout.
"""

from __future__ import annotations

import asyncio
import threading

from sl2s.runtime.transport.http.server import WorkerPool

PARTIES = 20
TIMEOUT = 20.0  # seconds: generous, only a pool that serialises the tasks reaches it


def _noop() -> int:
    return 1


async def _burst(pool: WorkerPool, parties: int, yield_between: bool):
    barrier = threading.Barrier(parties)
    threads: set[int] = set()

    def task() -> bool:
        threads.add(threading.get_ident())
        try:
            barrier.wait(timeout=TIMEOUT)
            return True
        except threading.BrokenBarrierError:
            return False

    futures = []
    for _ in range(parties):
        futures.append(pool.submit(task))
        if yield_between:
            await asyncio.sleep(0)
    return await asyncio.gather(*futures), threads


async def _warm(pool: WorkerPool, tasks: int) -> None:
    """Leave `tasks` idle threads behind, as earlier hops do on a running server."""
    assert (
        await asyncio.gather(*(pool.submit(_noop) for _ in range(tasks))) == [1] * tasks
    )
    await asyncio.sleep(0.05)


def test_a_burst_on_a_warm_pool_runs_all_at_once():
    async def scenario():
        pool = WorkerPool(64)
        await _warm(pool, 4)
        return await _burst(pool, PARTIES, yield_between=False), pool._threads

    (passed, threads), started = asyncio.run(scenario())
    assert all(passed) and len(threads) == PARTIES
    assert started == PARTIES  # the 4 warm threads are among the 20


def test_staggered_submissions_from_the_loop_run_all_at_once():
    async def scenario():
        pool = WorkerPool(64)
        await _warm(pool, 2)
        first = await _burst(pool, PARTIES, yield_between=True)
        again = await _burst(pool, PARTIES, yield_between=True)  # reuses, starts none
        return first, again, pool._threads

    (passed, threads), (passed_again, _), started = asyncio.run(scenario())
    assert all(passed) and all(passed_again) and len(threads) == PARTIES
    assert started == PARTIES


def test_the_pool_never_runs_more_than_its_limit_and_queues_the_rest():
    async def scenario():
        pool = WorkerPool(4)
        gate = threading.Event()
        running: set[int] = set()

        def task(index: int) -> int:
            running.add(threading.get_ident())
            gate.wait(TIMEOUT)
            return index

        futures = [pool.submit(task, i) for i in range(10)]
        await asyncio.sleep(0.2)
        queued = sum(not f.done() for f in futures)
        gate.set()
        return await asyncio.gather(*futures), running, pool._threads, queued

    results, running, started, queued = asyncio.run(scenario())
    assert results == list(range(10))
    assert started == 4 and len(running) == 4 and queued == 10


def test_an_exception_reaches_the_awaiting_coroutine_and_the_thread_lives_on():
    async def scenario():
        pool = WorkerPool(1)

        def boom():
            raise ValueError("step failed")

        try:
            await pool.submit(boom)
        except ValueError as error:
            caught = str(error)
        return caught, await pool.submit(_noop), pool._threads, pool._pending

    assert asyncio.run(scenario()) == ("step failed", 1, 1, 0)
