"""What the flow digest check and the deadline cost a hop. Prints a table.

    python bench/bench_hop_version.py [--hops 2000] [--rounds 20]

Two copies of the login sample's generated tree, each served by `sl2s serve` (machine 'server',
SL2S_STORE=none so that the store's writes do not drown the difference): one whose lock has the
flows' digests (every hop carries `version`, the server compares it with its own), one whose lock
has none (nothing sent, nothing checked; the state of a tree generated before digests). The same
full hop — `HttpTransport.call` into the login flow's server segment, four steps — is timed against
both in alternating rounds, with the floor (an HTTP POST of the same body to the health route's
server, answered at once) measured in the same rounds. The ratio with/without is the check's cost.

Also timed in this process: what the deadline adds on the client side per hop (the thread's
deadline lookup and the two extra envelope members), against the encoding of the body alone.
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
import time
import timeit
import uuid
from pathlib import Path

import orjson
from bench_http import wait_healthy  # bench/ is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEY = "bench-hop-key-" + "0123456789abcdef" * 3
SL2S = [sys.executable, "-c", "from sl2s.cli import main; main()"]
AT = "received_request_to_login_as_username"


def serve(tree: Path, env: dict) -> tuple[subprocess.Popen, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [*SL2S, "serve", str(tree), "server", "--fd", str(sock.fileno())],
        env=env,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sock.close()
    wait_healthy(proc, url, f"{tree.name}: server")
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sl2s-bench-version-"))
    on, off = work / "bench_version_on", work / "bench_version_off"
    done = subprocess.run(
        [*SL2S, "generate", str(ROOT / "sample_plans" / "login.csv"), "--out", str(on)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    shutil.copytree(on, off)
    lock = orjson.loads((off / "sl2s.lock.json").read_bytes())
    del lock["flows"]
    (off / "sl2s.lock.json").write_bytes(orjson.dumps(lock))

    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(SL2S_HOP_KEY=KEY, SL2S_STORE="none", SL2S_LOG_DIR=str(work / "logs"))
    servers = {}
    try:
        for tree in (on, off):
            servers[tree.name] = serve(tree, env)
        result = measure(work, {n: url for n, (_, url) in servers.items()}, args)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    client = client_side()
    print(
        f"\nFlow digest check and deadline ({os.cpu_count()} cores, Python {sys.version.split()[0]})\n"
    )
    print(
        f"| full login hop, {args.hops} hops per tree in {args.rounds} paired rounds | median ms | best round ms |"
    )
    print("|---|---:|---:|")
    print(
        f"| floor: same body POSTed, answered at once | {result['floor']:.3f} | {result['min_floor']:.3f} |"
    )
    print(
        f"| lock without digests (no `version`, no check) | {result['off']:.3f} | {result['min_off']:.3f} |"
    )
    print(
        f"| lock with digests (`version` sent and checked) | {result['on']:.3f} | {result['min_on']:.3f} |"
    )
    print(f"\nwith / without digests, median of paired rounds: {result['ratio']:.3f}×")
    print(
        f"client side per hop: body without deadline/version {client['plain']:.2f} µs, with them "
        f"and the thread's deadline lookup {client['with']:.2f} µs"
    )


def measure(work: Path, urls: dict[str, str], args) -> dict[str, float]:
    sys.path.insert(0, str(work))
    os.environ.update(
        SL2S_HOP_KEY=KEY, SL2S_LOG_DIR=str(work / "logs-client"), SL2S_STORE="none"
    )
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

    def request(system: str) -> HopRequest:
        cid = uuid.uuid4().hex
        return HopRequest(
            system=system,
            flow="login",
            source="client",
            target="server",
            at=AT,
            resume_at="login_successful",
            fields={"username": "ann"},
            secrets=["password"],
            correlation_id=cid,
            causation_id=uuid.uuid4().hex,
            traceparent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
            idempotency_key=f"{cid}.0.{AT}",
            stack=["client"],
        )

    def hop_round(name: str, n: int) -> float:
        requests = [request(name) for _ in range(n)]
        transport = transports[name]
        start = time.perf_counter()
        for hop in requests:
            answer = transport.call(hop)
            assert answer.error is None, answer.error
        return (time.perf_counter() - start) / n

    port = int(urls["bench_version_on"].rsplit(":", 1)[1])
    body = orjson.dumps(request("bench_version_on").to_dict())

    def floor_round(n: int) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for _ in range(n):
            conn.request("GET", "/sl2s/v1/health", body=body)
            conn.getresponse().read()
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed / n

    for name in transports:  # warm up: imports, connections, worker threads
        hop_round(name, 100)
    floor_round(100)
    n = max(1, args.hops // args.rounds)
    per: dict[str, list[float]] = {"floor": [], "on": [], "off": []}
    for i in range(args.rounds):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for side in order:
            per[side].append(hop_round(f"bench_version_{side}", n))
        per["floor"].append(floor_round(n))
    result = {k: statistics.median(v) * 1000 for k, v in per.items()}
    for k, v in per.items():
        result[f"min_{k}"] = min(v) * 1000
    result["ratio"] = statistics.median(a / b for a, b in zip(per["on"], per["off"]))
    return result


def client_side() -> dict[str, float]:
    from sl2s.runtime.transport import HopRequest
    from sl2s.runtime.transport.http import deadlines
    from sl2s.runtime.transport.http.sender import _body

    request = HopRequest(
        system="s",
        flow="login",
        source="client",
        target="server",
        at=AT,
        resume_at="login_successful",
        fields={"username": "ann"},
        secrets=["password"],
        correlation_id="c" * 32,
        causation_id=None,
        traceparent="",
        idempotency_key="c" * 32 + ".0." + AT,
        stack=["client"],
    )

    def plain() -> bytes:
        return _body(request, None, None)  # the same members, the two new ones null

    def with_deadline() -> bytes:
        deadline = deadlines.for_hop(
            request.correlation_id, request.idempotency_key, 60.0, time.time()
        )
        return _body(request, deadlines.to_wire(deadline), "0123456789abcdef")

    n = 200_000
    return {
        "plain": min(timeit.repeat(plain, number=n, repeat=5)) / n * 1e6,
        "with": min(timeit.repeat(with_deadline, number=n, repeat=5)) / n * 1e6,
    }


if __name__ == "__main__":
    main()
