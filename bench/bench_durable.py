"""What durability costs: the runtime with the SQLite flow store next to the same runtime without a
store (SL2S_STORE=none), measured in the same run, in alternating rounds. Prints a table.

    python bench/bench_durable.py [--steps N] [--flows N] [--hops N] [--login N] [--rounds R]
        [--postgres] [--no-http] [--keep]

1. In-process step (target <= 2x): `run.step(...)` as bench_runtime.py measures it — many steps in
   one run, then `finish()` — with the store every step also appends its checkpoint to the thread's
   buffer and `finish()` commits them in one transaction (included in the time).
2. In-process flow: a three-step flow, start to finish, one group commit per flow (the flow's
   record, its steps and its end in one transaction): the cost of the commit itself.
3. HTTP hop (target <= 1.3x): the login sample's server segment (four steps) called with
   `HttpTransport.call` (signed, keep-alive), each hop with a new idempotency key, into two server
   processes of the same tree on loopback: one with the SQLite store (the hop claimed together
   with a read of its flow's state, steps committed with the answer) and one with SL2S_STORE=none (answers in memory);
   with `--postgres`, a third on the PostgreSQL store of a throw-away cluster (target <= 1.6x),
   and PostgreSQL's own floor on that cluster: a bare round trip, a one-row insert committed
   without waiting for the WAL flush (the least a claim costs) and one that waits (the least an
   answer costs), with the ratio a hop making both could at best reach.

4. Login flow, 32 concurrent callers here (the client machine, over HTTP) against each of the two
   servers, the client on the same store as its server (shared file, as under `sl2s up`):
   flows/s with / without (target >= 0.70). Every flow must complete.

CPU time for 1 (process_time), wall time for 2-4; the best round of each side and the median of
the per-round ratios (for 4: the share of the throughput kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import bench_runtime  # the same one-machine system (bench/ is on sys.path)
from bench_http import wait_healthy

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "bench-hop-key-" + "0123456789abcdef" * 3
SYSTEM = "bench_durable_login"


ENTRY = """

def orders(**fields):
    run = machine.start("orders", **fields)
    run.step("placed")
    run.step("check")
    run.step("charge")
    return run.finish()
"""


def write_system(root: str) -> None:
    """bench_runtime's system (same steps), as `benchdur`, with an entry function."""
    bench_runtime.write_system(root, "benchdur", ENTRY)


def with_store(on: bool, url: str) -> None:
    os.environ["SL2S_STORE"] = url if on else "none"


def steps_round(steps: int) -> float:
    from benchdur.shop._wiring import machine

    run = machine.start(
        "orders", username="ann", card="4111-1111", item="book", amount=12
    )
    run.step("placed")
    step = run.step
    start = time.process_time()
    for _ in range(steps // 2):
        step("check")
        step("charge")
    run.finish()  # the group commit of every checkpoint is part of the cost
    return (time.process_time() - start) / (steps // 2 * 2)


def flows_round(flows: int) -> float:
    from benchdur.shop._wiring import orders

    start = time.perf_counter()
    for _ in range(flows):
        orders(username="ann", card="4111-1111", item="book", amount=12)
    return (time.perf_counter() - start) / flows


# -- HTTP ----------------------------------------------------------------------------------------


def start_server(tree: Path, env: dict) -> tuple[subprocess.Popen, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code = (
        "import sys; from sl2s.runtime.transport.http.server import serve_main; "
        "serve_main([sys.argv[1], 'server', '--fd', sys.argv[2]])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tree), str(sock.fileno())],
        env=env,
        pass_fds=(sock.fileno(),),
        stderr=subprocess.DEVNULL,
    )
    sock.close()
    wait_healthy(proc, url, "bench server")
    return proc, url


def hop_rounds(urls: dict[str, str], hops: int, rounds: int) -> dict[str, list[float]]:
    from sl2s.runtime.core.events import new_correlation_id
    from sl2s.runtime.transport import HopRequest
    from sl2s.runtime.transport.http.config import HttpConfig
    from sl2s.runtime.transport.http.sender import HttpTransport

    transports = {
        name: HttpTransport(
            HttpConfig(
                urls={"server": url}, sources={"server": "bench"}, keys=(KEY.encode(),)
            )
        )
        for name, url in urls.items()
    }

    def request() -> HopRequest:
        cid = new_correlation_id()  # as a machine of sl2s makes them
        return HopRequest(
            system=SYSTEM,
            flow="login",
            source="client",
            target="server",
            at="received_request_to_login_as_username",
            resume_at="login_successful",
            fields={"username": "ann"},
            secrets=["password"],
            correlation_id=cid,
            causation_id=None,
            traceparent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            idempotency_key=f"{cid}.0.received_request_to_login_as_username",
            stack=["client"],
        )

    def one_round(name: str, n: int) -> float:
        transport = transports[name]
        requests = [request() for _ in range(n)]
        start = time.perf_counter()
        for hop in requests:
            answer = transport.call(hop)
            assert answer.error is None, answer.error
        return (time.perf_counter() - start) / n

    for name in urls:
        one_round(name, 100)  # warm up: connections, threads, the store's file
    per: dict[str, list[float]] = {name: [] for name in urls}
    n = max(1, hops // rounds)
    for _ in range(rounds):
        for name in urls:
            per[name].append(one_round(name, n))
    return per


def login_rounds(
    urls: dict[str, str], stores: dict[str, str], flows: int, callers: int, rounds: int
) -> dict[str, list[float]]:
    """Flows per second of the login flow, `callers` threads here (the client machine) against
    each server process: the client's store as the server's (`stores`), alternating rounds.
    """
    import importlib
    import threading

    from sl2s.runtime.transport import register_transport
    from sl2s.runtime.transport.http.config import HttpConfig
    from sl2s.runtime.transport.http.sender import HttpTransport

    for name, url in urls.items():
        config = HttpConfig(
            urls={"server": url}, sources={"server": "bench"}, keys=(KEY.encode(),)
        )
        register_transport(f"bench-{name}", lambda config=config: HttpTransport(config))
    client = importlib.import_module(f"{SYSTEM}.client")

    def one_round(name: str, n: int) -> float:
        os.environ["SL2S_TRANSPORT"] = f"bench-{name}"
        os.environ["SL2S_STORE"] = stores[name]
        counter, lock, errors = iter(range(n)), threading.Lock(), []

        def caller() -> None:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                try:
                    client.login(username=f"user{index}", password=f"pw{index}")
                except (
                    Exception
                ) as error:  # noqa: BLE001 - counted: a lost flow fails the bench
                    errors.append(error)

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        assert not errors, errors[:3]
        return n / elapsed

    for name in urls:
        one_round(name, 64)  # warm up: connections, threads
    per: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name in urls:
            per[name].append(one_round(name, flows))
    os.environ.pop("SL2S_TRANSPORT", None)
    return per


def postgres_floor(url: str, count: int = 2000) -> tuple[float, float, float]:
    """What PostgreSQL itself costs here, whatever sl2s does: seconds per bare round trip
    (`SELECT 1`), per one-row insert committed without waiting for the WAL flush (the least a
    hop's claim can be: it must be visible before the segment runs) and per one-row insert
    that waits for the flush (the least its answer can be: durable before it is sent); each
    the best of three runs of `count`, on a table of its own."""
    import psycopg

    statements = {
        "trip": "SELECT 1",
        "claim": "WITH c AS (SELECT set_config('synchronous_commit', 'off', true))"
        " INSERT INTO floor_rows SELECT %s, 'x' FROM c",
        "answer": "INSERT INTO floor_rows VALUES (%s, 'x')",
    }
    best = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor_rows (k text PRIMARY KEY, v text)")
        for name, sql in statements.items():
            times = []
            for _ in range(3):
                keys = [(uuid.uuid4().hex,) for _ in range(count)]
                start = time.perf_counter()
                for key in keys:
                    conn.execute(sql, key if "%s" in sql else None, prepare=True)
                times.append((time.perf_counter() - start) / count)
            best[name] = min(times)
        conn.execute("DROP TABLE floor_rows")
    return best["trip"], best["claim"], best["answer"]


def ratio_line(
    name: str,
    with_: list[float],
    without: list[float],
    unit: float,
    target: float | None,
):
    ratio = statistics.median(w / o for w, o in zip(with_, without))
    print(
        f"{name:<34} {min(without) * unit:>10.2f} {min(with_) * unit:>10.2f} {ratio:>6.2f}"
        + (
            f"   (target <= {target:.1f})"
            if target
            else "   (no target: one commit per flow)"
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--hops", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--login", type=int, default=600, help="login flows per round")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also a hop server on the PostgreSQL store of a throw-away cluster (tests/pg.py)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (trees, logs, stores)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sl2s-bench-durable-"))
    try:
        return run(args, work)
    finally:
        if args.keep:
            print(f"work dir (kept): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    write_system(str(work))
    sys.path.insert(0, str(work))
    for name in list(os.environ):
        if name.startswith("SL2S_"):
            del os.environ[name]
    os.environ["SL2S_LOG_DIR"] = str(work / "logs")
    url = f"sqlite:///{work}/flows.sqlite3"
    steps = {True: [], False: []}
    flows = {True: [], False: []}
    for on in (True, False):  # warm up both sides
        with_store(on, url)
        steps_round(2000)
        flows_round(200)
    for _ in range(args.rounds):
        for on in (False, True):
            with_store(on, url)
            steps[on].append(steps_round(args.steps))
            flows[on].append(flows_round(args.flows))
    print(f"{'case':<34} {'without':>10} {'with':>10} {'ratio':>6}")
    ratio_line("in-process step (us, CPU)", steps[True], steps[False], 1e6, 2.0)
    ratio_line("in-process 3-step flow (us)", flows[True], flows[False], 1e6, None)
    if args.no_http:
        return 0
    tree = work / SYSTEM
    done = subprocess.run(
        [sys.executable, "-c", "from sl2s.cli import main; main()", "generate",
         str(ROOT / "sample_plans" / "login.csv"), "--out", str(tree)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(done.stderr)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    base.update(SL2S_HOP_KEY=KEY)
    servers, cluster = {}, None
    try:
        servers["with"] = start_server(
            tree, {**base, "SL2S_LOG_DIR": str(work / "logs-with")}
        )
        servers["without"] = start_server(
            tree,
            {**base, "SL2S_LOG_DIR": str(work / "logs-without"), "SL2S_STORE": "none"},
        )
        if args.postgres:
            sys.path.insert(0, str(ROOT / "tests"))
            from pg import start_cluster

            cluster = start_cluster(fsync=True)
            pg_url = cluster.create_database("bench")
            servers["postgres"] = start_server(
                tree,
                {**base, "SL2S_LOG_DIR": str(work / "logs-pg"), "SL2S_STORE": pg_url},
            )
        per = hop_rounds({k: v[1] for k, v in servers.items()}, args.hops, args.rounds)
        floor = postgres_floor(pg_url) if args.postgres else None
        os.environ["SL2S_LOG_DIR"] = str(work / "logs-client")
        stores = {
            "with": f"sqlite:///{work}/logs-with/flows.sqlite3",  # shared, as under sl2s up
            "without": "none",
        }
        throughput = login_rounds(
            {k: servers[k][1] for k in stores}, stores, args.login, 32, args.rounds
        )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        if cluster is not None:
            cluster.stop()
    ratio_line("HTTP hop, 4-step segment (ms)", per["with"], per["without"], 1e3, 1.3)
    if "postgres" in per:
        ratio_line(
            "  the same, PostgreSQL store", per["postgres"], per["without"], 1e3, 1.6
        )
        trip, claim, answer = floor
        least = (min(per["without"]) + claim + answer) / min(per["without"])
        print(
            f"  PostgreSQL's floor, same cluster: a round trip {trip * 1e6:.0f} us, a one-row"
            f" insert committed without waiting for the WAL flush (a claim) {claim * 1e6:.0f} us,"
            f" one waiting for it (an answer) {answer * 1e6:.0f} us: a hop that makes both is"
            f" at least {least:.2f}x the hop without a store"
        )
    share = statistics.median(
        w / o for w, o in zip(throughput["with"], throughput["without"])
    )
    print(
        f"{'login flow, 32 callers (flows/s)':<34} {max(throughput['without']):>10.0f} "
        f"{max(throughput['with']):>10.0f} {share:>6.2f}   (target >= 0.70)"
    )
    print(
        f"{args.steps} steps, {args.flows} flows, {args.hops} hops x {args.rounds} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
