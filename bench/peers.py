"""sl2s next to the tools users would pick instead, measured side by side in one run; prints ratios.

    python bench/peers.py [--only logging,http,patterns,generate,rebalance] [--quick]

Peers come from the `bench` extra (`pip install -e '.[bench]'`); a peer that is not installed is
said in the output, not skipped silently. Loopback only, bounded counts; everything written goes to
one temporary directory, removed at the end.

logging   a step + its JSON event (`run.step`, no listener, event appended to a buffered file)
          vs one JSON log line to a file through structlog (orjson + BytesLogger), loguru
          (`serialize=True`) and stdlib logging with python-json-logger's JsonFormatter. CPU time
          per event, the cases interleaved in R rounds, best round of each.
http      a signed sl2s HTTP hop (`HttpTransport.call` to an instant handler, bench_http.py's
          server) vs the same request body POSTed to a FastAPI endpoint (uvicorn, its own process)
          over keep-alive `http.client` and over `httpx.Client`, and a grpcio unary call carrying
          the same bytes (generic handler, no protobuf, its own process). Wall time per call, rounds
          interleaved, median of rounds.
patterns  `sl2s patterns` over N events (bench/make_events.py) vs decoding the same lines and
          feeding their bodies to drain3's TemplateMiner; each in a fresh child that reports its
          own peak RSS (VmHWM).
generate  `sl2s generate` of a 2,000-row plan (bench/make_plan.py), as a whole process, vs
          cookiecutter and copier rendering the same files (each generated file made a template
          with one variable), each as a whole process.
rebalance one move at 10 / 100 / 1,000 modules: the sl2s rebalance core (bench_rebalance.py) vs
          rope's MoveGlobal on a copy of the same tree (its own process); then the whole
          `sl2s rebalance` command vs rope as a whole process (start-up and imports included),
          each on a fresh copy of the same generated project, best of the interleaved rounds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

ROWS: list[tuple[str, str, str, str]] = []  # (what, sl2s, peer, sl2s / peer)


def row(what: str, ours: str, peer: str, ratio: str) -> None:
    ROWS.append((what, ours, peer, ratio))
    print(f"  {what}: sl2s {ours}, peer {peer}, ratio {ratio}", flush=True)


def missing(what: str, error: BaseException) -> None:
    row(what, "-", f"not installed here ({error})", "-")


def peak_kb_code() -> str:
    """Source that prints this process's own peak RSS in KiB (VmHWM: per address space)."""
    return textwrap.dedent("""
        try:
            with open('/proc/self/status') as _s:
                _kb = next(int(l.split()[1]) for l in _s if l.startswith('VmHWM:'))
        except (OSError, StopIteration):
            import resource
            _kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    """)


# -- logging ---------------------------------------------------------------------------------------


def bench_logging(work: Path, events: int, rounds: int) -> None:
    import logging

    from bench_runtime import bench_runtime, write_system

    write_system(str(work))
    sys.path.insert(0, str(work))
    os.environ["SL2S_LOG_DIR"] = str(work / "logs")
    os.environ["SL2S_STORE"] = "none"
    os.environ.pop("SL2S_TRANSPORT", None)
    fields = {"username": "ann", "item": "book", "amount": 12}
    cases: dict[str, object] = {"sl2s": lambda: bench_runtime(events)}

    try:
        import orjson
        import structlog

        out = open(work / "structlog.jsonl", "wb", buffering=1 << 16)  # noqa: SIM115
        log = structlog.wrap_logger(
            structlog.BytesLogger(out),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            cache_logger_on_first_use=True,
        )

        def run_structlog() -> float:
            info = log.info
            start = time.process_time()
            for _ in range(events):
                info("Charging 12 to ann", **fields)
            return (time.process_time() - start) / events

        cases["structlog + orjson + BytesLogger"] = run_structlog
    except ImportError as error:
        missing("step + JSON event vs structlog", error)

    try:
        from loguru import logger

        logger.remove()
        logger.add(
            str(work / "loguru.jsonl"), serialize=True, enqueue=False, buffering=1 << 16
        )
        bound = logger.bind(**fields)

        def run_loguru() -> float:
            info = bound.info
            start = time.process_time()
            for _ in range(events):
                info("Charging 12 to ann")
            return (time.process_time() - start) / events

        cases["loguru serialize=True"] = run_loguru
    except ImportError as error:
        missing("step + JSON event vs loguru", error)

    try:
        try:
            from pythonjsonlogger.json import JsonFormatter
        except ImportError:
            from pythonjsonlogger.jsonlogger import JsonFormatter  # older releases

        handler = logging.FileHandler(work / "stdlib.jsonl")
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
        std = logging.getLogger("peers.stdlib")
        std.propagate = False
        std.setLevel(logging.INFO)
        std.addHandler(handler)

        def run_stdlib() -> float:
            info = std.info
            extra = fields
            start = time.process_time()
            for _ in range(events):
                info("Charging 12 to ann", extra=extra)
            return (time.process_time() - start) / events

        cases["stdlib logging + python-json-logger"] = run_stdlib
    except ImportError as error:
        missing("step + JSON event vs stdlib logging JSON", error)

    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):  # interleaved: every case sees the same load
        for name, fn in cases.items():
            results[name].append(fn())  # type: ignore[operator]
    ours = min(results.pop("sl2s")) * 1e6
    for name, values in results.items():
        peer = min(values) * 1e6
        row(
            f"step + JSON event vs {name}",
            f"{ours:.2f} us",
            f"{peer:.2f} us",
            f"{ours / peer:.2f}",
        )


# -- http ------------------------------------------------------------------------------------------

FASTAPI_SERVER = """
import socket, sys
import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()

@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")

@app.get("/health")
async def health() -> Response:
    return Response(b"ok")

sock = socket.socket(fileno=int(sys.argv[1]))
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
"""

GRPC_SERVER = """
import sys
from concurrent import futures
import grpc

def echo(request, context):
    return request

handler = grpc.method_handlers_generic_handler(
    "bench.Echo",
    {"Call": grpc.unary_unary_rpc_method_handler(echo)},  # bytes in, bytes out (no protobuf)
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _wait_http(
    port: int, path: str, proc: subprocess.Popen, seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer")


def bench_http(work: Path, hops: int, rounds: int) -> None:
    import bench_http as bh

    tree = work / bh.SYSTEM
    bh.generate_login(tree)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(
        SL2S_HOP_KEY=bh.KEY, SL2S_LOG_DIR=str(work / "http-logs"), SL2S_STORE="none"
    )
    procs: list[subprocess.Popen] = []
    try:
        server, url = bh.start_server(tree, env)
        procs.append(server)
        from sl2s.runtime.core.hop import HopRequest
        from sl2s.runtime.transport.http import protocol
        from sl2s.runtime.transport.http.config import HttpConfig
        from sl2s.runtime.transport.http.sender import HttpTransport

        transport = HttpTransport(
            HttpConfig(
                urls={"server": url},
                sources={"server": "bench"},
                keys=(bh.KEY.encode(),),
            )
        )
        n = 0

        def request() -> HopRequest:
            nonlocal n
            n += 1
            return bh.echo_request(n, "peers")

        body = protocol.request_body(request().to_dict())

        def sl2s_round(count: int) -> float:
            hops_ = [request() for _ in range(count)]
            start = time.perf_counter()
            for hop in hops_:
                assert transport.call(hop).error is None
            return (time.perf_counter() - start) / count

        cases = {"sl2s": sl2s_round}
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401

            sock = _free_socket()
            port = sock.getsockname()[1]
            fastapi_proc = subprocess.Popen(
                [sys.executable, "-c", FASTAPI_SERVER, str(sock.fileno())],
                pass_fds=(sock.fileno(),),
            )
            procs.append(fastapi_proc)
            sock.close()
            _wait_http(port, "/health", fastapi_proc)
            headers = {"content-type": "application/json"}
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def fastapi_http_client(count: int) -> float:
                start = time.perf_counter()
                for _ in range(count):
                    conn.request("POST", "/echo", body=body, headers=headers)
                    answer = conn.getresponse()
                    assert answer.read() == body
                return (time.perf_counter() - start) / count

            cases["FastAPI endpoint, keep-alive http.client"] = fastapi_http_client
            try:
                import httpx

                client = httpx.Client(base_url=f"http://127.0.0.1:{port}")

                def fastapi_httpx(count: int) -> float:
                    start = time.perf_counter()
                    for _ in range(count):
                        assert (
                            client.post("/echo", content=body, headers=headers).content
                            == body
                        )
                    return (time.perf_counter() - start) / count

                cases["FastAPI endpoint, httpx.Client"] = fastapi_httpx
            except ImportError as error:
                missing("signed HTTP hop vs FastAPI + httpx", error)
        except ImportError as error:
            missing("signed HTTP hop vs FastAPI", error)
        try:
            import grpc

            grpc_proc = subprocess.Popen(
                [sys.executable, "-c", GRPC_SERVER], stdout=subprocess.PIPE, text=True
            )
            procs.append(grpc_proc)
            grpc_port = int(grpc_proc.stdout.readline())  # type: ignore[union-attr]
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            call = channel.unary_unary("/bench.Echo/Call")  # bytes: no serializer

            def grpc_unary(count: int) -> float:
                start = time.perf_counter()
                for _ in range(count):
                    assert call(body, timeout=10) == body
                return (time.perf_counter() - start) / count

            cases["grpcio unary call, same bytes"] = grpc_unary
        except ImportError as error:
            missing("signed HTTP hop vs grpcio", error)

        for fn in cases.values():
            fn(100)  # warm up: connections, threads
        per: dict[str, list[float]] = {name: [] for name in cases}
        count = max(1, hops // rounds)
        for _ in range(rounds):  # interleaved rounds
            for name, fn in cases.items():
                per[name].append(fn(count))
        ours = per.pop("sl2s")
        for name, values in per.items():
            ratios = [a / b for a, b in zip(ours, values)]
            row(
                f"signed HTTP hop vs {name}",
                f"{statistics.median(ours) * 1e3:.3f} ms",
                f"{statistics.median(values) * 1e3:.3f} ms",
                f"{min(ratios):.2f}-{max(ratios):.2f} (median {statistics.median(ratios):.2f})",
            )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- patterns --------------------------------------------------------------------------------------

PATTERNS_CHILD = """
import sys, time
what, logs = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if what == "sl2s":
    from sl2s.observe.patterns import analyse
    sys.path.insert(0, sys.argv[3])  # bench/: its synthetic plan
    from synthetic import demo_plan
    analyse(demo_plan(), [logs])
else:
    import orjson
    from pathlib import Path
    from drain3 import TemplateMiner
    miner = TemplateMiner()
    for path in sorted(Path(logs).glob("*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                miner.add_log_message(orjson.loads(line).get("body") or "")
seconds = time.perf_counter() - t
"""


def bench_patterns(work: Path, events: int) -> None:
    from make_events import write_events

    work.mkdir(parents=True, exist_ok=True)
    logs = work / "events"
    write_events(logs, events)
    results = {}
    for what in ("sl2s", "drain3"):
        if what == "drain3":
            try:
                import drain3  # noqa: F401
            except ImportError as error:
                missing("sl2s patterns vs drain3", error)
                return
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                PATTERNS_CHILD + peak_kb_code() + "print(seconds, _kb)\n",
                what,
                str(logs),
                str(HERE),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"{what}: {done.stderr}")
        seconds, kb = done.stdout.split()[-2:]
        results[what] = (float(seconds), int(kb) / 1024)
    (ours, ours_mb), (peer, peer_mb) = results["sl2s"], results["drain3"]
    row(
        f"sl2s patterns vs decode + drain3, {events:,} events",
        f"{ours:.2f} s, {ours_mb:.0f} MiB",
        f"{peer:.2f} s, {peer_mb:.0f} MiB",
        f"{ours / peer:.2f} (memory {ours_mb / peer_mb:.2f})",
    )


# -- generate --------------------------------------------------------------------------------------


def _whole(argv: list[str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{argv[:3]}: {done.stderr.strip()[-300:]}")
    return elapsed


def bench_generate(work: Path, rows: int, rounds: int) -> None:
    from make_plan import make_plan

    work.mkdir(parents=True, exist_ok=True)
    plan = work / "plan.csv"
    plan.write_text(
        make_plan(rows=rows, flows=rows // 20, machines=max(2, rows // 500))
    )
    sl2s = [
        sys.executable,
        "-c",
        "from sl2s.cli import main; main()",
        "generate",
        str(plan),
    ]
    # the files generate writes, made templates: one variable per file, the rest literal text
    reference = work / "reference"
    _whole([*sl2s, "--out", str(reference / "services")])
    files = [p for p in reference.rglob("*") if p.is_file()]
    cc_template = work / "cc-template"
    inner = cc_template / "{{cookiecutter.project}}"
    copier_template = work / "copier-template"
    for path in files:
        rel = path.relative_to(reference)
        text = (
            "{# {{ cookiecutter.project }} #}\n{% raw %}"
            + path.read_text()
            + "{% endraw %}"
        )
        (inner / rel).parent.mkdir(parents=True, exist_ok=True)
        (inner / rel).write_text(text)
        target = copier_template / (str(rel) + ".jinja")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.replace("cookiecutter.project", "project"))
    (cc_template / "cookiecutter.json").write_text(json.dumps({"project": "out"}))
    (copier_template / "copier.yml").write_text(
        "project:\n  type: str\n  default: out\n"
    )
    cases: dict[str, list[str] | None] = {"sl2s": None}
    bindir = Path(sys.executable).parent
    if (bindir / "cookiecutter").exists():
        cases["cookiecutter"] = [
            str(bindir / "cookiecutter"),
            "--no-input",
            "-f",
            str(cc_template),
            "-o",
        ]
    else:
        missing("sl2s generate vs cookiecutter", FileNotFoundError("cookiecutter"))
    if (bindir / "copier").exists():
        cases["copier"] = [
            str(bindir / "copier"),
            "copy",
            "--defaults",
            "--quiet",
            "--trust",
            str(copier_template),
        ]
    else:
        missing("sl2s generate vs copier", FileNotFoundError("copier"))
    per: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(rounds):
        for name, argv in cases.items():
            out = work / f"out-{name}-{i}"
            if argv is None:
                per[name].append(_whole([*sl2s, "--out", str(out / "services")]))
            else:
                per[name].append(_whole([*argv, str(out)]))
            shutil.rmtree(out, ignore_errors=True)
    ours = min(per.pop("sl2s"))
    for name, values in per.items():
        peer = min(values)
        row(
            f"sl2s generate ({rows:,} rows, {len(files)} files) vs {name}, whole process",
            f"{ours:.2f} s",
            f"{peer:.2f} s",
            f"{ours / peer:.2f}",
        )


# -- rebalance -------------------------------------------------------------------------------------


def bench_rebalance(sizes: list[int], repeat: int) -> None:
    try:
        import rope  # noqa: F401
    except ImportError as error:
        missing("rebalance vs rope MoveGlobal", error)
        return
    import bench_rebalance as br

    for size in sizes:
        result = br.bench(size, repeat, rope_timeout=120)
        ours = result["core"]
        peer = result["rope"]
        row(
            f"one move, {size} modules: sl2s rebalance core vs rope MoveGlobal",
            f"{ours * 1e3:.0f} ms",
            f"{peer:.2f} s" if peer is not None else result["rope_note"],
            f"{ours / peer:.3f}" if peer else "-",
        )


def bench_rebalance_command(work: Path, sizes: list[int], rounds: int) -> None:
    """The whole `sl2s rebalance` command (a process: start-up, imports, plan, scans, the move,
    the regenerated wiring) vs rope's MoveGlobal as a whole process (start-up, `import rope`, the
    project, the move) — the same step moved in copies of the same generated project."""
    try:
        import rope  # noqa: F401
    except ImportError as error:
        missing("whole rebalance command vs rope", error)
        return
    import bench_rebalance as br

    sl2s = [sys.executable, "-c", "from sl2s.cli import main; main()"]
    for size in sizes:
        machines, flows = br.SHAPES[size]
        base = work / f"rebalance-{size}"
        plan_text, _ = br.build(base, machines, flows)
        (base / "plan.csv").write_text(plan_text)
        _whole([*sl2s, "generate", "plan.csv", "--out", "services"], cwd=base)
        moved = plan_text.replace("Step 1 handles :acc\tm0", "Step 1 handles :acc\tm1")
        ours: list[float] = []
        peer: list[float] = []
        for round_ in range(rounds):  # interleaved, each on a fresh copy
            mine = work / f"ours-{size}-{round_}"
            shutil.copytree(base, mine)
            (mine / "plan.csv").write_text(moved)
            ours.append(
                _whole(
                    [
                        *sl2s,
                        "rebalance",
                        "plan.csv",
                        "--out",
                        "services",
                        "--allow-dirty",
                    ],
                    cwd=mine,
                )
            )
            assert "def step_1(" in (mine / "services" / "m1" / "f0.py").read_text()
            shutil.rmtree(mine)
            theirs = work / f"rope-{size}-{round_}"
            shutil.copytree(base, theirs)
            argv = [sys.executable, "-c", br.ROPE, str(theirs), "services/m0/f0.py"]
            peer.append(_whole([*argv, "services/m1/f0.py", "step_1"]))
            shutil.rmtree(theirs)
        row(
            f"the whole `sl2s rebalance` command, one move, {size} modules, vs rope MoveGlobal "
            "as a whole process",
            f"{min(ours):.2f} s",
            f"{min(peer):.2f} s",
            f"{min(ours) / min(peer):.2f}",
        )
        shutil.rmtree(base)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="logging,http,patterns,generate,rebalance")
    parser.add_argument(
        "--quick", action="store_true", help="smaller counts (a smoke run)"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    quick = args.quick
    print(
        f"peers side by side ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d', time.gmtime())})",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="sl2s-bench-peers-"))
    try:
        if "logging" in only:
            bench_logging(work / "logging", 2000 if quick else 20000, 3 if quick else 7)
        if "http" in only:
            bench_http(work / "http", 400 if quick else 3000, 4 if quick else 10)
        if "patterns" in only:
            bench_patterns(work / "patterns", 20_000 if quick else 1_000_000)
        if "generate" in only:
            bench_generate(work / "generate", 200 if quick else 2000, 1 if quick else 3)
        if "rebalance" in only:
            bench_rebalance([10] if quick else [10, 100, 1000], 1 if quick else 3)
            bench_rebalance_command(
                work / "rebalance",
                [10] if quick else [10, 100, 1000],
                1 if quick else 3,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| what | sl2s | peer | sl2s / peer |\n|---|---|---|---|")
    for what, ours, peer, ratio in ROWS:
        print(f"| {what} | {ours} | {peer} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
