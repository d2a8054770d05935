"""Where a signed HTTP hop's time goes, next to a FastAPI endpoint answering the same bytes.

    python bench/profile_hop.py [--hops 3000] [--top 12]

1. CPU per call on each side, measured in the same run: this process's CPU time (the caller) and
   the server process's (utime + stime from /proc/PID/stat) over the same calls, for
   a. a signed sl2s hop (`HttpTransport.call`) to bench_http.py's server, whose handler answers
      at once (sign, send, verify, idempotency, worker thread, answer, decode), and
   b. the same request body POSTed to a FastAPI endpoint (uvicorn) over keep-alive
      `http.client` (the peer in bench/peers.py).
   Wall time per call too; rounds interleaved, medians.
2. cProfile of both sl2s sides over the same hops: the functions with the most own time, in µs
   per hop, so the difference in (1) can be read function by function.

Loopback only, bounded counts; everything written goes to one temporary directory, removed at the
end. Linux (/proc).
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_http as bh  # noqa: E402  (bench/ on sys.path first)
from peers import FASTAPI_SERVER, _free_socket, _wait_http  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def child(kind: str, profile: str, tree: str, fd: int) -> None:
    """A server: bench_http's (`sl2s`) or the FastAPI echo (`fastapi`). With a profile path, its
    event loop's thread (HTTP parsing, routing, for sl2s also the signature, idempotency and the
    hand-off to a worker thread) is profiled from SIGUSR1 on, and the profile written when SIGTERM
    stops it. sl2s's worker threads, which run the (instant) handler, are not profiled.
    """
    signal.signal(
        signal.SIGTERM, lambda *_: None
    )  # uvicorn re-raises the signal it caught
    profiler = cProfile.Profile()
    if profile != "-":
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
    try:
        if kind == "sl2s":
            bh.child_server(tree, fd)
        else:
            sys.argv = [sys.argv[0], str(fd)]
            exec(
                compile(FASTAPI_SERVER, "fastapi_server", "exec"),
                {"__name__": "fastapi_server"},
            )
    finally:
        if profile != "-":
            profiler.disable()
            profiler.dump_stats(profile)


GROUPS = [  # (group, what a profiled function's file or name contains), first match wins
    ("waiting (epoll, recv)", ("'poll' of", "recv_into", "selectors.py")),
    ("sockets: send, recv", ("'send' of", "sendall", "'recv' of")),
    ("sl2s", ("sl2s/", "transport/http/", "runtime/")),
    ("h11 and uvicorn (HTTP/1.1)", ("h11/", "uvicorn/", "h11_impl")),
    ("starlette and fastapi", ("starlette/", "fastapi/", "pydantic", "anyio/")),
    ("asyncio", ("asyncio/", "_contextvars")),
    ("threads and queues", ("threading.py", "queue", "concurrent/", "_thread")),
    ("http.client and email (headers)", ("http/client.py", "email/", "socket.py")),
    ("hmac, hashlib, json, orjson", ("hmac", "hashlib", "json", "orjson")),
]


def group_of(filename: str, name: str) -> str:
    text = f"{filename}:{name}"
    for group, needles in GROUPS:
        if any(n in text for n in needles):
            return group
    return "other"


def grouped(stats: pstats.Stats, calls: int) -> dict[str, float]:
    """Own time per call in µs, by group."""
    found: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        group = group_of(filename, name)
        found[group] = found.get(group, 0.0) + own / calls * 1e6
    return found


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def start(argv: list[str], env: dict, sock: socket.socket) -> subprocess.Popen:
    proc = subprocess.Popen(argv, env=env, pass_fds=(sock.fileno(),))
    sock.close()
    return proc


def measure(call, count: int, pid: int) -> tuple[float, float, float]:
    """(wall, caller CPU, server CPU) per call, in µs."""
    server_before = server_cpu(pid)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for _ in range(count):
        call()
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    server = server_cpu(pid) - server_before
    return wall / count * 1e6, cpu / count * 1e6, server / count * 1e6


def top(stats: pstats.Stats, hops: int, limit: int) -> list[str]:
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    lines = [f"    {'µs/hop':>7}  {'share':>5}  function"]
    for (filename, line, name), (_cc, _nc, own, _cum, _callers) in rows[:limit]:
        short = "/".join(Path(filename).parts[-3:]) if filename != "~" else "(built-in)"
        lines.append(
            f"    {own / hops * 1e6:7.1f}  {own / total:5.1%}  {name} ({short}:{line})"
        )
    lines.append(f"    {total / hops * 1e6:7.1f}  100%   all profiled ({hops} hops)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hops", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--top", type=int, default=0, help="also list the sl2s server's top N"
    )
    parser.add_argument(
        "--save", metavar="DIR", help="also write both profiles (pstats) here"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    work = Path(tempfile.mkdtemp(prefix="sl2s-profile-hop-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    from sl2s.runtime.core.hop import HopRequest
    from sl2s.runtime.transport.http import protocol
    from sl2s.runtime.transport.http.config import HttpConfig
    from sl2s.runtime.transport.http.sender import HttpTransport

    tree = work / bh.SYSTEM
    bh.generate_login(tree)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(SL2S_HOP_KEY=bh.KEY, SL2S_LOG_DIR=str(work / "logs"), SL2S_STORE="none")
    procs: list[subprocess.Popen] = []
    n = 0

    def request() -> HopRequest:
        nonlocal n
        n += 1
        return bh.echo_request(n, "profile")

    body = protocol.request_body(request().to_dict())
    headers = {"content-type": "application/json"}

    def serve(kind: str, profile: str) -> tuple[subprocess.Popen, int]:
        sock = _free_socket()
        port = sock.getsockname()[1]
        argv = [
            sys.executable,
            __file__,
            "--child",
            kind,
            profile,
            str(tree),
            str(sock.fileno()),
        ]
        procs.append(start(argv, env, sock))
        _wait_http(port, "/sl2s/v1/health" if kind == "sl2s" else "/health", procs[-1])
        return procs[-1], port

    def sl2s_caller(port: int):
        transport = HttpTransport(
            HttpConfig(
                urls={"server": f"http://127.0.0.1:{port}"},
                sources={"server": "bench"},
                keys=(bh.KEY.encode(),),
            )
        )
        return lambda: transport.call(request())

    def fastapi_caller(port: int):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def call() -> None:
            conn.request("POST", "/echo", body=body, headers=headers)
            assert conn.getresponse().read() == body

        return call

    callers = {"sl2s hop": sl2s_caller, "FastAPI + http.client": fastapi_caller}
    kinds = {"sl2s hop": "sl2s", "FastAPI + http.client": "fastapi"}
    try:
        # 1. CPU and wall per call, unprofiled servers
        cases = {}
        for name, make in callers.items():
            proc, port = serve(kinds[name], "-")
            cases[name] = (make(port), proc.pid)
        for call, _pid in cases.values():
            for _ in range(200):
                call()  # warm up: connections, threads
        per: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cases}
        count = max(1, args.hops // args.rounds)
        for _ in range(
            args.rounds
        ):  # interleaved: the machine's other load hits both alike
            for name, (call, pid) in cases.items():
                per[name].append(measure(call, count, pid))
        print(f"1. per call, medians of {args.rounds} rounds of {count} calls (µs)")
        print(f"  {'':24} {'wall':>8} {'caller CPU':>11} {'server CPU':>11}")
        medians = {}
        for name, values in per.items():
            medians[name] = [statistics.median(v[i] for v in values) for i in range(3)]
            wall, caller, server = medians[name]
            print(f"  {name:24} {wall:8.0f} {caller:11.0f} {server:11.0f}")
        ours, peer = medians["sl2s hop"], medians["FastAPI + http.client"]
        ratios = "".join(f" {a / b:{w}.2f}" for a, b, w in zip(ours, peer, (8, 11, 11)))
        print(f"  {'sl2s ÷ peer':24}{ratios}")

        # 2. the same calls under cProfile, by group
        profiles: dict[str, dict[str, dict[str, float]]] = {}
        for name, make in callers.items():
            path = work / f"{kinds[name]}.prof"
            proc, port = serve(kinds[name], str(path))
            call = make(port)
            for _ in range(200):
                call()
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
            caller_profile = cProfile.Profile()
            caller_profile.enable()
            for _ in range(args.hops):
                call()
            caller_profile.disable()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            server_profile = pstats.Stats(str(path))
            profiles[name] = {
                "caller": grouped(pstats.Stats(caller_profile), args.hops),
                "server": grouped(server_profile, args.hops),
            }
            if args.save:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                caller_profile.dump_stats(
                    str(Path(args.save) / f"{kinds[name]}-caller.prof")
                )
                shutil.copy(path, Path(args.save) / f"{kinds[name]}-server.prof")
            if name == "sl2s hop" and args.top:
                print(
                    f"\n  sl2s server's event loop, the top {args.top} functions by own time:"
                )
                print("\n".join(top(server_profile, args.hops, args.top)))
        print(
            "\n2. cProfile, own time per call by group, µs (profiling slows every call)"
        )
        print(f"  {'':34} {'caller':>19} {'server (loop)':>19}")
        print(f"  {'group':34} {'sl2s':>9} {'peer':>9} {'sl2s':>9} {'peer':>9}")
        groups = [g for g, _ in GROUPS] + ["other"]
        mine, theirs = profiles["sl2s hop"], profiles["FastAPI + http.client"]
        for group in groups:
            cells = [
                mine["caller"].get(group, 0.0),
                theirs["caller"].get(group, 0.0),
                mine["server"].get(group, 0.0),
                theirs["server"].get(group, 0.0),
            ]
            print(f"  {group:34}" + "".join(f" {c:9.1f}" for c in cells))
        busy = [
            sum(v for g, v in side.items() if not g.startswith("waiting"))
            for side in (
                mine["caller"],
                theirs["caller"],
                mine["server"],
                theirs["server"],
            )
        ]
        print(f"  {'all but waiting':34}" + "".join(f" {c:9.1f}" for c in busy))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
