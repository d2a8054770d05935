"""The login flow under load through the public tools: `sl2s generate`, `sl2s up`, and the generated
client machine's entry function called from many threads with SL2S_TRANSPORT=http. Loopback only.

    python bench/bench_load.py [--flows 2000] [--callers 32] [--rounds 3]
    python bench/bench_load.py --soak [SECONDS] [--callers 64]      (default 300 s)

1. Throughput with durability vs without, in the same run. Two `sl2s up` sessions of the same
   generated tree run side by side: one on the default flow store (SQLite under its log dir), one
   with SL2S_STORE=none (no store: the non-durable hop). Rounds alternate A B A B ...; each round is
   a fresh caller process (the client machine, on the same store setting as its `up`) that warms up
   and then runs `--flows` login flows on `--callers` threads. Prints flows/s and p50/p99 per
   round, the best round of each side, and the median of the per-round ratios durable / none
   (issue target: >= 0.70). Every flow must complete.

2. `--soak SECONDS`: one `sl2s up` on the default store (or `--store URL|none`), `--callers` threads (default 64) running
   login flows without pause for SECONDS. Every 10 s: each machine's RSS (VmRSS from
   /proc/<pid>/status; the server under `up`, and the caller process, which is machine 'client')
   and the throughput of the last 10 s. After a 30 s warm-up, prints whether RSS stayed within
   10 % (largest sample / smallest - 1) and throughput within 20 % of its median (issue target:
   both). Every flow must complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYSTEM = "bench_load_login"
KEY = "bench-load-key-" + "0123456789abcdef" * 3
SL2S = [sys.executable, "-c", "from sl2s.cli import main; main()"]
SAMPLE_EVERY = 10.0
WARM_UP = 30.0


# -- the caller process (machine 'client'): `--child-callers` -------------------------------------


def child_callers(
    parent: str, callers: int, flows: int, warm: int, seconds: float
) -> None:
    """Run login flows on `callers` threads: `warm` flows first (not measured), then `flows`
    flows, or flows for `seconds` when seconds > 0 (printing a JSON sample every SAMPLE_EVERY s).
    Ends with one JSON line: the latencies (s) and the errors."""
    import importlib

    sys.path.insert(0, parent)
    client = importlib.import_module(f"{SYSTEM}.client")
    lock = threading.Lock()
    latencies: list[float] = []
    window: list[float] = []
    errors: list[str] = []
    counter = iter(range(10**12))
    stop_at = [0.0]
    # a soak reports windows only: keeping every latency in this process (the machine 'client'
    # whose RSS it measures) grew it ~0.3 MiB per 10 s by itself
    keep_all = seconds <= 0

    def one(index: int) -> None:
        start = time.perf_counter()
        try:
            client.login(username=f"user{index}", password=f"pw-{index}")
        except Exception as error:  # noqa: BLE001 - counted as a lost flow
            with lock:
                errors.append(f"{type(error).__name__}: {error}"[:400])
            return
        elapsed = time.perf_counter() - start
        with lock:
            if keep_all:
                latencies.append(elapsed)
            window.append(elapsed)

    def caller(limit: int) -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None or (limit and index >= limit):
                return
            if stop_at[0] and time.monotonic() >= stop_at[0]:
                return
            one(index)

    def run(limit: int) -> float:
        threads = [
            threading.Thread(target=caller, args=(limit,)) for _ in range(callers)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    run(warm)
    latencies.clear()
    window.clear()
    counter = iter(range(10**12))
    if seconds > 0:
        begun = time.monotonic()
        stop_at[0] = begun + seconds
        runner = threading.Thread(target=run, args=(0,))
        runner.start()
        next_sample, last = begun + SAMPLE_EVERY, begun
        while runner.is_alive():
            runner.join(max(0.0, next_sample - time.monotonic()))
            now = time.monotonic()
            if now >= next_sample or not runner.is_alive():
                with lock:
                    done, window[:] = list(window), []
                    lost = len(errors)
                print(json.dumps({
                    "t": round(now - begun, 1), "window": now - last, "flows": len(done),
                    "lost": lost,
                    "p50": percentile(done, 0.5), "p99": percentile(done, 0.99),
                }), flush=True)  # fmt: skip
                next_sample, last = next_sample + SAMPLE_EVERY, now
        elapsed = time.monotonic() - begun
    else:
        counter = iter(range(flows))
        elapsed = run(0)
    print(json.dumps({"elapsed": elapsed, "latencies": latencies, "errors": errors[:5],
                      "lost": len(errors)}), flush=True)  # fmt: skip


# -- processes -----------------------------------------------------------------------------------


def env_for(logs: Path, store: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
    env.update(SL2S_HOP_KEY=KEY, SL2S_LOG_DIR=str(logs))
    if store is not None:
        env["SL2S_STORE"] = store
    return env


def generate(work: Path, name: str) -> Path:
    tree = work / name / SYSTEM
    done = subprocess.run(
        [*SL2S, "generate", str(ROOT / "sample_plans" / "login.csv"), "--out", str(tree)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(done.stderr)
    return tree


class Up:
    """`sl2s up TREE` in a subprocess, until `stop()`; its machines' pids from /proc."""

    def __init__(self, tree: Path, env: dict) -> None:
        self.tree = tree
        self.proc = subprocess.Popen(
            [*SL2S, "up", str(tree)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.said: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"sl2s up ended early: {self.proc.stderr.read()}")
            if line.startswith("run a flow:"):
                break
        else:
            self.stop()
            raise SystemExit("sl2s up did not start its machines")
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(
                target=self.said.extend, args=(stream,), daemon=True
            ).start()

    def machines(self) -> dict[str, int]:
        """machine -> pid of the process serving it (children started with `... NAME --fd N`)."""
        found = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"--fd" in argv:
                    found[argv[argv.index(b"--fd") - 1].decode()] = int(pid)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def callers_process(tree: Path, env: dict, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--child-callers", str(tree.parent), *args],
        env={**env, "SL2S_TRANSPORT": "http"}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# -- 1. durable vs none --------------------------------------------------------------------------


def compare(args: argparse.Namespace, work: Path) -> int:
    sides = {"durable (SQLite store)": None, "none (SL2S_STORE=none)": "none"}
    ups: dict[str, tuple[Up, Path, dict]] = {}
    rows: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
    lost = 0
    try:
        for index, (side, store) in enumerate(sides.items()):
            tree = generate(work, f"side{index}")
            env = env_for(work / f"side{index}" / "logs", store)
            ups[side] = (Up(tree, env), tree, env)
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                up, tree, env = ups[side]
                proc = callers_process(
                    tree, env, [str(args.callers), str(args.flows), str(args.warm), "0"]
                )
                out, _ = proc.communicate(timeout=600)
                result = json.loads(out.strip().splitlines()[-1])
                lost += result["lost"]
                if result["errors"]:
                    print(f"  {side}: first error: {result['errors'][0]}")
                done = len(result["latencies"])
                rows[side].append((
                    done / result["elapsed"], percentile(result["latencies"], 0.5),
                    percentile(result["latencies"], 0.99),
                ))  # fmt: skip
                print(
                    f"round {round_ + 1} {side}: {rows[side][-1][0]:.0f} flows/s",
                    flush=True,
                )
    finally:
        for up, _, _ in ups.values():
            up.stop()
    durable, plain = (rows[side] for side in sides)
    print(
        f"\nlogin flow under `sl2s up`, {args.callers} callers, {args.flows} flows per round, "
        f"{args.rounds} rounds A B / B A ({os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]})\n"
    )
    print("| side | round | flows/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for side in sides:
        for number, (rate, p50, p99) in enumerate(rows[side], 1):
            print(f"| {side} | {number} | {rate:.0f} | {p50:.2f} | {p99:.2f} |")
    ratios = [d[0] / n[0] for d, n in zip(durable, plain)]
    ratio = statistics.median(ratios)
    best = max(r[0] for r in durable) / max(r[0] for r in plain)
    print(
        f"\ndurable / none: median of rounds {ratio:.2f} (rounds: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; best round / best round {best:.2f}); "
        f"target >= 0.70: {'met' if ratio >= 0.70 else 'NOT met'}; flows lost: {lost}"
    )
    return 0 if lost == 0 else 1


# -- 2. soak -------------------------------------------------------------------------------------


def soak(args: argparse.Namespace, work: Path) -> int:
    tree = generate(work, "soak")
    env = env_for(work / "soak" / "logs", args.store)
    up = Up(tree, env)
    proc = None
    samples: list[dict] = []
    try:
        served = up.machines()
        proc = callers_process(
            tree, env, [str(args.callers), "0", str(args.warm), str(args.soak)]
        )
        pids = {**served, "client": proc.pid}
        for line in proc.stdout:
            data = json.loads(line)
            if "elapsed" in data:
                final = data
                break
            data["rss"] = {name: rss_mib(pid) for name, pid in pids.items()}
            now = up.machines()
            data["restarted"] = sorted(n for n in served if now.get(n) != served[n])
            samples.append(data)
            rss = "  ".join(f"{n} {v:.0f} MiB" for n, v in data["rss"].items() if v)
            print(
                f"t={data['t']:>6.1f}s  {data['flows'] / data['window']:7.0f} flows/s  "
                f"p50 {data['p50']:6.2f} ms  p99 {data['p99']:7.2f} ms  {rss}"
                f"  lost {data['lost']}",
                flush=True,
            )
        proc.wait(60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        up.stop()
    # after the warm-up, whole windows only (the last one may be cut short by the end)
    steady = [s for s in samples if s["t"] > WARM_UP and s["window"] > SAMPLE_EVERY / 2]
    if len(steady) < 2:
        print("soak too short: fewer than two samples after the warm-up")
        return 1
    print(
        f"\nsoak: login flow under `sl2s up`, store {args.store or 'default (SQLite)'}, "
        f"{args.callers} callers, "
        f"{args.soak:.0f} s; {len(steady)} samples after a {WARM_UP:.0f} s warm-up"
    )
    ok = True
    for name in steady[0]["rss"]:
        values = [s["rss"][name] for s in steady if s["rss"].get(name)]
        growth = max(values) / min(values) - 1
        flat = growth <= 0.10
        ok &= flat
        print(
            f"RSS {name}: {values[0]:.1f} -> {values[-1]:.1f} MiB (min {min(values):.1f}, "
            f"max {max(values):.1f}): spread {growth * 100:.1f} % — within 10 %: "
            f"{'yes' if flat else 'NO'}"
        )
    rates = [s["flows"] / s["window"] for s in steady]
    middle = statistics.median(rates)
    spread = max(abs(r / middle - 1) for r in rates)
    flat = spread <= 0.20
    ok &= flat
    print(
        f"throughput: median {middle:.0f} flows/s, min {min(rates):.0f}, max {max(rates):.0f}: "
        f"largest deviation {spread * 100:.1f} % — within 20 %: {'yes' if flat else 'NO'}"
    )
    restarted = sorted({n for s in samples for n in s["restarted"]})
    print(f"flows lost: {final['lost']}; machines restarted: {restarted or 'none'}")
    if final["errors"]:
        print(f"first error: {final['errors'][0]}")
    return 0 if ok and final["lost"] == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--callers", type=int, default=None, help="32; 64 with --soak")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=200, help="flows before measuring")
    parser.add_argument(
        "--soak", type=float, nargs="?", const=300.0, default=None, metavar="SECONDS"
    )
    parser.add_argument(
        "--store",
        default=None,
        help="with --soak: SL2S_STORE (default: the default store)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (trees, logs, stores)"
    )
    parser.add_argument("--child-callers", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_callers:
        parent, callers, flows, warm, seconds = args.child_callers
        child_callers(parent, int(callers), int(flows), int(warm), float(seconds))
        return
    if args.soak is not None and args.soak < 2 * SAMPLE_EVERY:
        parser.error("--soak needs at least 20 seconds")
    if args.callers is None:
        args.callers = 64 if args.soak is not None else 32
    work = Path(tempfile.mkdtemp(prefix="sl2s-bench-load-"))
    try:
        code = soak(args, work) if args.soak is not None else compare(args, work)
    finally:
        if args.keep:
            print(f"work dir (kept): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
