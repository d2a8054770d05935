"""Benchmarks of the HTTP transport, each next to its floor in the same run. Prints a table.

    python bench/bench_http.py [--hops 3000] [--flows 2000] [--callers 32]

1. Hop latency on loopback. One server process (uvicorn, the machine 'server' of the generated
   login sample) that also answers a plain echo route. Measured from this process, in alternating
   rounds so that noise from other work on the machine falls on both sides alike:
   a. floor: the same request body POSTed to the echo route of the same server over one
      keep-alive `http.client` connection;
   b. protocol hop: `HttpTransport.call` to a hop endpoint whose handler answers at once — sign,
      send, verify, idempotency store, worker thread, answer, decode. Target: <= 1.5x the floor;
   c. full hop: `HttpTransport.call` into the login flow's server segment (`Machine.handle`: four
      steps, four events).
2. The login flow, 32 concurrent callers, a fixed number of flows: flows/s and p50/p99 latency,
   in-process (local transport) vs over HTTP (server machine in its own process). Every flow must
   come back, and the events must show each of its steps exactly once.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "bench-hop-key-" + "0123456789abcdef" * 3
SYSTEM = "bench_http_login"


def echo_request(n: int, tag: str):
    """The `n`-th hop to the bench server's instant `bench` flow (its handler answers at once),
    with ids and an idempotency key of its own; `tag` keeps keys apart between benches.
    """
    from sl2s.runtime.transport import HopRequest

    return HopRequest(
        system=SYSTEM,
        flow="bench",
        source="client",
        target="server",
        at="echo",
        resume_at="done",
        fields={"username": "ann", "attempt": 1},
        secrets=["password"],
        correlation_id=f"{n:032x}",
        causation_id=f"{n:032x}",
        traceparent=f"00-{n:032x}-{n:016x}-01",
        idempotency_key=f"{tag}-{n:016d}",
        stack=["client"],
    )


# -- the server process --------------------------------------------------------------------------


def child_server(tree: str, fd: int) -> None:
    """Serve machine 'server' of `tree` plus an echo route (the floor) and an instant hop flow."""
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from sl2s.runtime.transport import HopResponse
    from sl2s.runtime.transport.http.config import load_config
    from sl2s.runtime.transport.http.guard import uvicorn_config
    from sl2s.runtime.transport.http.server import (
        create_app,
        load_machine,
        serving_defaults,
    )

    serving_defaults(tree)
    machine = load_machine(tree, "server")
    config = load_config(tree)

    def handler(request):
        if request.flow == "bench":
            return HopResponse(
                request.resume_at, request.fields, [], request.causation_id
            )
        return machine.handle(request)

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/json")

    app = create_app(
        handler,
        machine="server",
        keys=config.keys,
        extra_routes=[Route("/floor", echo, methods=["POST"])],
    )
    # the settings `sl2s serve` runs with (header timeout, connection cap, keep-alive)
    server = uvicorn.Server(uvicorn_config(app))
    server.run(sockets=[socket.socket(fileno=fd)])


def wait_healthy(proc: subprocess.Popen, url: str, what: str) -> None:
    """Wait until the server at `url` answers its health check (30 s at most)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(
                "127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=2
            )
            conn.request("GET", "/sl2s/v1/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{what} did not start")


def start_server(tree: Path, env: dict) -> tuple[subprocess.Popen, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child-server", str(tree), str(sock.fileno())],
        env=env,
        pass_fds=(sock.fileno(),),
    )
    sock.close()
    wait_healthy(proc, url, "bench server")
    return proc, url


# -- 1. hop latency ------------------------------------------------------------------------------


def hop_latency(url: str, hops: int, rounds: int = 20) -> dict[str, float]:
    from sl2s.runtime.transport import HopRequest
    from sl2s.runtime.transport.http import protocol as p
    from sl2s.runtime.transport.http.config import HttpConfig
    from sl2s.runtime.transport.http.sender import HttpTransport

    config = HttpConfig(
        urls={"server": url}, sources={"server": "bench"}, keys=(KEY.encode(),)
    )
    transport = HttpTransport(config)

    def request(flow: str, at: str) -> HopRequest:
        return HopRequest(
            system=SYSTEM,
            flow=flow,
            source="client",
            target="server",
            at=at,
            resume_at="login_successful" if flow == "login" else "done",
            fields={"username": "ann", "attempt": 1},
            secrets=["password"],
            correlation_id=uuid.uuid4().hex,
            causation_id=uuid.uuid4().hex,
            traceparent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            idempotency_key=uuid.uuid4().hex,
            stack=["client"],
        )

    body = p.request_body(request("bench", "echo").to_dict())
    port = int(url.rsplit(":", 1)[1])
    per: dict[str, list[float]] = {"floor": [], "hop": [], "full": []}

    def floor_round(n: int) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        headers = {"content-type": "application/json"}
        start = time.perf_counter()
        for _ in range(n):
            conn.request("POST", "/floor", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed / n

    def hop_round(n: int, flow: str, at: str) -> float:
        requests = [request(flow, at) for _ in range(n)]
        start = time.perf_counter()
        for hop in requests:
            answer = transport.call(hop)
            assert answer.error is None, answer.error
        return (time.perf_counter() - start) / n

    floor_round(200)
    hop_round(200, "bench", "echo")
    hop_round(50, "login", "received_request_to_login_as_username")
    n = max(1, hops // rounds)
    for _ in range(
        rounds
    ):  # paired rounds: noise from other work hits both sides alike
        per["floor"].append(floor_round(n))
        per["hop"].append(hop_round(n, "bench", "echo"))
        per["full"].append(
            hop_round(n, "login", "received_request_to_login_as_username")
        )
    result = {k: statistics.median(v) * 1000 for k, v in per.items()}
    result["min_floor"] = min(per["floor"]) * 1000
    result["min_hop"] = min(per["hop"]) * 1000
    result["min_full"] = min(per["full"]) * 1000
    ratios = [h / f for h, f in zip(per["hop"], per["floor"])]
    result["ratio"] = statistics.median(ratios)
    result["ratio_full"] = statistics.median(
        f2 / f for f2, f in zip(per["full"], per["floor"])
    )
    return result


# -- 2. concurrent flows -------------------------------------------------------------------------


def drive(
    entry, flows: int, callers: int
) -> tuple[float, list[float], list[dict], list[BaseException]]:
    latencies: list[float] = []
    results: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    counter = iter(range(flows))

    def caller() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            try:
                result = entry(username=f"user{index}", password=f"pw{index}")
            except BaseException as error:  # noqa: BLE001 - counted as a lost flow
                with lock:
                    errors.append(error)
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                results.append(result)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies, results, errors


def check_events(client_logs: Path, other_logs: Path) -> tuple[int, int]:
    """(flow runs started in `client_logs`, steps of those runs that ran more than once).

    The runs are those whose first step the client machine wrote there; their other steps are
    looked up in `other_logs` too (the server process logs every phase into one directory).
    """
    import orjson

    def events(directory: Path):
        for path in directory.glob("*.jsonl"):
            if path.name.startswith("incident-"):
                continue
            for line in path.read_bytes().splitlines():
                event = orjson.loads(line)
                if event["event_name"] == "sl2s.step":
                    yield event["attributes"]

    runs = {
        a["sl2s.correlation_id"]
        for a in events(client_logs)
        if a["sl2s.machine"] == "client"
    }
    steps: Counter = Counter()
    for directory in {client_logs, other_logs}:
        for a in events(directory):
            if a["sl2s.correlation_id"] in runs:
                steps[(a["sl2s.correlation_id"], a["sl2s.step"])] += 1
    twice = sum(1 for count in steps.values() if count > 1)
    per_run = Counter(run for run, _ in steps)
    assert all(per_run[run] == 6 for run in runs), "a login run without its 6 steps"
    return len(runs), twice


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hops", type=int, default=3000)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--child-server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_server:
        child_server(args.child_server[0], int(args.child_server[1]))
        return

    work = Path(tempfile.mkdtemp(prefix="sl2s-bench-http-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(
            work, ignore_errors=True
        )  # the bench leaves nothing in the temp folder


def generate_login(tree: Path) -> None:
    """`sl2s generate` the login sample plan into `tree` (a fresh process, as a user runs it)."""
    generated = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sl2s.cli import main; main()",
            "generate",
            str(ROOT / "sample_plans" / "login.csv"),
            "--out",
            str(tree),
        ],
        capture_output=True,
        text=True,
    )
    if generated.returncode:
        raise SystemExit(generated.stderr)


def run(args: argparse.Namespace, work: Path) -> None:
    tree = work / SYSTEM
    generate_login(tree)
    http_logs, local_logs = work / "logs-http", work / "logs-local"
    http_client_logs = work / "logs-http-client"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(SL2S_HOP_KEY=KEY, SL2S_LOG_DIR=str(http_logs))
    server, url = start_server(tree, env)
    try:
        latency = hop_latency(url, args.hops)
        # the flows over HTTP: the client machine here, the server machine in its process
        sys.path.insert(0, str(work))
        os.environ.update(
            SL2S_HOP_KEY=KEY, SL2S_LOG_DIR=str(http_logs), SL2S_URL_SERVER=url
        )
        os.environ["SL2S_TRANSPORT"] = "http"
        import importlib

        client = importlib.import_module(f"{SYSTEM}.client")
        os.environ["SL2S_LOG_DIR"] = str(work / "logs-warmup")
        drive(client.login, 64, args.callers)  # warm up: connections, threads
        os.environ["SL2S_LOG_DIR"] = str(http_client_logs)
        http_run = drive(client.login, args.flows, args.callers)
    finally:
        server.terminate()
        server.wait(30)
    from sl2s.runtime.core import events as rt_events

    rt_events.flush_all()
    os.environ["SL2S_TRANSPORT"] = "local"
    os.environ["SL2S_LOG_DIR"] = str(work / "logs-warmup-local")
    drive(client.login, 64, args.callers)
    os.environ["SL2S_LOG_DIR"] = str(local_logs)
    local_run = drive(client.login, args.flows, args.callers)
    rt_events.flush_all()

    ratio = latency["ratio"]
    print(
        f"\nHTTP transport on loopback ({os.cpu_count()} cores, Python {sys.version.split()[0]})\n"
    )
    print(
        f"| hop latency, {args.hops} hops in 20 paired rounds | median ms | best round ms | × floor (median of rounds) |"
    )
    print("|---|---:|---:|---:|")
    print(
        f"| floor: same body, echo route, keep-alive http.client | {latency['floor']:.3f} | {latency['min_floor']:.3f} | 1.00 |"
    )
    print(
        f"| protocol hop: HttpTransport.call, instant handler | {latency['hop']:.3f} | {latency['min_hop']:.3f} | {ratio:.2f} |"
    )
    print(
        f"| full hop: login server segment (4 steps, 4 events) | {latency['full']:.3f} | {latency['min_full']:.3f} | {latency['ratio_full']:.2f} |"
    )
    print(
        f"\ntarget: protocol hop <= 1.5x floor: {'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}x)\n"
    )
    print(
        f"| login flow, {args.callers} callers, {args.flows} flows | flows/s | p50 ms | p99 ms | lost | steps run twice |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, (elapsed, latencies, results, errors), logs in (
        ("in-process (local transport)", local_run, (local_logs, local_logs)),
        ("HTTP (server in its own process)", http_run, (http_client_logs, http_logs)),
    ):
        seen, twice = check_events(*logs)
        lost = args.flows - len(results)
        print(
            f"| {name} | {len(results) / elapsed:.0f} | {percentile(latencies, 0.5):.2f} | "
            f"{percentile(latencies, 0.99):.2f} | {lost} | {twice} |"
        )
        if errors:
            print(f"  first error: {errors[0]}")
        assert (
            seen == args.flows
        ), f"{name}: {seen} flow runs in the events, expected {args.flows}"
        assert twice == 0 and lost == 0


if __name__ == "__main__":
    main()
