"""What replicas cost the hop client, next to its floor in the same run. Prints a table.

    python bench/bench_replicas.py [--hops 4000] [--rounds 8] [--baseline OTHER_http_client.py]

Two echo servers (uvicorn + Starlette, each its own process on 127.0.0.1) answer every POST at
once, so what is measured is the client. In alternating rounds (noise falls on every row alike):

a. floor: the same body POSTed over one keep-alive `http.client` connection (each round starts
   one row further on, so no row always follows the same one);
b. `HopClient.post` to one URL (the path every machine with one address takes);
c. `HopClient.post` to two replicas' URLs (turn-taking, one connection per replica);
c0. its floor: two keep-alive `http.client` connections, one per server, taken in turn;
d. with `--baseline FILE`: `HopClient.post` to one URL with the `HopClient` of FILE (another
   version of sl2s/runtime/transport/http/client.py, e.g. the one before a change), to compare b against.

Median microseconds per hop over the rounds, and each row's ratio to the floor.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import socket
import statistics
import subprocess
import sys
import time

from sl2s.runtime.transport.http.client import HopClient

SERVER = r"""
import socket, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def echo(request):
    return Response(await request.body(), media_type="application/json")

sock = socket.socket(fileno=int(sys.argv[1]))
app = Starlette(routes=[Route("/hop", echo, methods=["POST"])])
uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
"""

BODY = b'{"v":1,"flow":"login","fields":{"username":"ada"},"stack":[]}' + b" " * 200


def listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def wait_up(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("POST", "/hop", body=b"{}")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"echo server on port {port} did not start")


def load_client(path: str):
    spec = importlib.util.spec_from_file_location("baseline_http_client", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.HopClient


def hops(client, base_url, n: int) -> float:
    headers = {"content-type": "application/json"}
    begun = time.perf_counter()
    for i in range(n):
        response = client.post(
            target="server",
            base_url=base_url,
            path="/hop",
            body=BODY,
            idempotency_key=f"k{i}",
            headers_for=lambda now: headers,
        )
        assert response.status == 200
    return (time.perf_counter() - begun) / n * 1e6


def floor(port: int, n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    begun = time.perf_counter()
    for _ in range(n):
        conn.request(
            "POST", "/hop", body=BODY, headers={"content-type": "application/json"}
        )
        conn.getresponse().read()
    conn.close()
    return (time.perf_counter() - begun) / n * 1e6


def floor_two(ports: list[int], n: int) -> float:
    """The floor for row c: two keep-alive connections, one per server, taken in turn."""
    conns = []
    for port in ports:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    begun = time.perf_counter()
    for i in range(n):
        conn = conns[i % 2]
        conn.request(
            "POST", "/hop", body=BODY, headers={"content-type": "application/json"}
        )
        conn.getresponse().read()
    for conn in conns:
        conn.close()
    return (time.perf_counter() - begun) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--baseline", help="another http_client.py to compare against")
    args = parser.parse_args()
    socks = [listening(), listening()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SERVER, str(s.fileno())], pass_fds=(s.fileno(),)
        )
        for s in socks
    ]
    try:
        ports = [s.getsockname()[1] for s in socks]
        for port in ports:
            wait_up(port)
        urls = tuple(f"http://127.0.0.1:{port}" for port in ports)
        rows = {
            "a. floor: http.client keep-alive": lambda n: floor(ports[0], n),
            "b. HopClient.post, one URL": lambda n: hops(one, urls[0], n),
            "c. HopClient.post, two replicas": lambda n: hops(two, urls, n),
            "c0. floor, two servers in turn": lambda n: floor_two(ports, n),
        }
        one, two = HopClient(timeout=10), HopClient(timeout=10)
        if args.baseline:
            old = load_client(args.baseline)(timeout=10)
            rows["d. baseline HopClient.post, one URL"] = lambda n: hops(
                old, urls[0], n
            )
        per = max(1, args.hops // args.rounds)
        for run in rows.values():  # warm-up: connections, imports
            run(200)
        times: dict[str, list[float]] = {name: [] for name in rows}
        names = list(rows)
        for number in range(args.rounds):
            # every row in every position: each round starts one row further on
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(rows[name](per))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in socks:
            sock.close()
    base = statistics.median(times["a. floor: http.client keep-alive"])
    print(f"{'row':<40} {'µs/hop':>8} {'× floor':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<40} {median:>8.1f} {median / base:>8.2f}")


if __name__ == "__main__":
    main()
