"""The console's index and pages over many events from five machines, next to `sl2s story` over
the same events in the same run. Prints a table.

    python bench/bench_console.py [--events 1000000] [--searches 200] [--pages 50] [--keep DIR]

Events: login (6 steps), feed (2) and checkout (20 steps) runs over five machines, with the
fields `username` (10,000 users), `tenant_id` and a masked `password`; ~1% fail. Each measurement
runs in a fresh child process, which reports its own peak RSS (ru_maxrss):

1. floor: parse every line once (orjson), the least any reader does;
2. index build from nothing (Index.refresh) — target <= 60 s, <= 500 MB;
3. incremental refresh after 10,000 new events were appended — target <= 1 s;
4. field search (`username=<user>`, first page of runs), p50/p95 over random users — target p95
   <= 100 ms; also a text search;
5. a 20-step run page served over HTTP by the console (uvicorn on 127.0.0.1) — target <= 200 ms;
6. the peer: `sl2s story --correlation-id` of the same 20-step run, and `--last`, over the logs.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MACHINES = ("web", "auth", "sessions", "orders", "billing")


def plan_steps():
    from sl2s.model import Placeholder, Step
    from sl2s.names import step_slug

    user = Placeholder("username", False, ":username")
    flows = {
        "login": [
            (
                [
                    "User attempted login as ",
                    user,
                    " and ",
                    Placeholder("password", True, "#password"),
                ],
                "web",
            ),
            (["Received request to login as ", user], "auth"),
            (["Testing password for ", user], "auth"),
            (["Setting session for ", user], "sessions"),
            (["Finish handling user login"], "auth"),
            (["Login successful"], "web"),
        ],
        "feed": [
            (["Fetching feed information"], "web"),
            (["Retrieving feed for ", user], "orders"),
        ],
        "checkout": [
            (
                [f"Checkout stage {i} for ", user],
                MACHINES[(i * 2) % 5] if i % 4 else "web",
            )
            for i in range(1, 21)
        ],
    }
    out, line = {}, 2
    for flow, rows in flows.items():
        steps = []
        for parts, machine in rows:
            template = "".join(p if isinstance(p, str) else p.spelling for p in parts)
            steps.append(
                Step(flow, step_slug(template), template, tuple(parts), machine, line)
            )
            line += 1
        out[flow] = steps
    return out


def write_events(
    out: Path, total: int, seed: int, start_run: int = 0, mode: str = "wb"
) -> list[str]:
    """`total` events into `out/<machine>.jsonl`; the correlation ids of the checkout runs."""
    from synthetic import flow_run

    flows = plan_steps()
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    handles = {m: (out / f"{m}.jsonl").open(mode) for m in MACHINES}
    buffers: dict[str, list[bytes]] = {m: [] for m in MACHINES}
    written, run, checkouts = 0, start_run, []
    prefixes = {m: f"{rng.randrange(10**17, 10**18)}" for m in MACHINES}
    counters = {m: 0 for m in MACHINES}
    try:
        while written < total:
            run += 1
            cid = f"{rng.getrandbits(128):032x}"
            roll = rng.random()
            flow = "feed" if roll < 0.3 else ("checkout" if roll < 0.38 else "login")
            steps = flows[flow]
            fail = (
                steps[rng.randrange(1, len(steps))].id if rng.random() < 0.01 else None
            )
            events = flow_run(
                steps,
                cid=cid,
                start_ms=run * 0.4,
                rng=rng,
                fail_at=fail,
                plan_path="shop.csv",
            )
            if flow == "checkout" and fail is None:
                checkouts.append(cid)
            fields = {
                "username": f"u{rng.randrange(10_000)}",
                "tenant_id": rng.randrange(500),
            }
            if flow == "login":
                fields["password"] = "***"
            renamed: dict[str, str] = {}
            for e in events[: total - written]:
                a = e["attributes"]
                a["sl2s.fields"] = fields
                # event ids as the runtime makes them: a prefix per process, then a counter
                machine = e["resource"]["service.name"]
                counters[machine] += 1
                renamed[a["sl2s.event_id"]] = a["sl2s.event_id"] = (
                    f"{prefixes[machine]}{counters[machine]:014d}"
                )
                a["sl2s.causation_id"] = renamed.get(
                    a["sl2s.causation_id"], a["sl2s.causation_id"]
                )
                buffers[e["resource"]["service.name"]].append(orjson.dumps(e))
                written += 1
            if run % 2000 == 0:
                for m, lines in buffers.items():
                    if lines:
                        handles[m].write(b"\n".join(lines) + b"\n")
                        lines.clear()
        for m, lines in buffers.items():
            if lines:
                handles[m].write(b"\n".join(lines) + b"\n")
    finally:
        for h in handles.values():
            h.close()
    return checkouts


def child(code: str) -> dict:
    """Run `code` in a fresh interpreter; it sets `result` (a dict); add its peak RSS (MB)."""
    script = (
        "import json, resource, sys, time\n" + textwrap.dedent(code)
        # the child's own peak (VmHWM starts at zero after exec; ru_maxrss at the parent's size)
        + "\ntry:\n"
        "    result['rss_mb'] = next(int(l.split()[1]) for l in open('/proc/self/status')"
        " if l.startswith('VmHWM:')) / 1024\n"
        "except (OSError, StopIteration):\n"
        "    result['rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(result))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--keep", help="work in this directory and keep it")
    args = parser.parse_args()

    work = (
        Path(args.keep)
        if args.keep
        else Path(tempfile.mkdtemp(prefix="bench-console-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    logs, index = work / "logs", work / "console.sqlite3"
    for path in work.glob("console.sqlite3*"):
        path.unlink()
    try:
        # written by a child: a forked child's ru_maxrss starts at its parent's RSS, so the
        # parent stays small
        checkouts = child(f"""
            sys.path.insert(0, {str(HERE)!r})
            from pathlib import Path
            from bench_console import write_events
            result = {{'checkouts': write_events(Path({str(logs)!r}), {args.events}, seed=1)[:1000]}}
        """)["checkouts"]
        size_mb = sum(p.stat().st_size for p in logs.iterdir()) / 1e6
        target = checkouts[len(checkouts) // 2]
        rows = []

        floor = child(f"""
            import orjson
            from pathlib import Path
            t = time.perf_counter(); n = 0
            for p in sorted(Path({str(logs)!r}).glob('*.jsonl')):
                with p.open('rb') as f:
                    for line in f:
                        orjson.loads(line); n += 1
            result = {{'seconds': time.perf_counter() - t, 'lines': n}}
        """)
        build = child(f"""
            from sl2s.console.index import Index
            t = time.perf_counter()
            idx = Index({str(index)!r}); stats = idx.refresh([{str(logs)!r}]); idx.close()
            result = {{'seconds': time.perf_counter() - t, 'events': stats.events, 'runs': stats.runs}}
        """)
        index_mb = sum(p.stat().st_size for p in work.glob("console.sqlite3*")) / 1e6
        child(f"""
            sys.path.insert(0, {str(HERE)!r})
            from pathlib import Path
            from bench_console import write_events
            write_events(Path({str(logs)!r}), 10_000, seed=2, start_run=10**7, mode='ab')
            result = {{}}
        """)
        update = child(f"""
            sys.path.insert(0, {str(HERE)!r})
            from pathlib import Path
            from bench_console import write_events
            from sl2s.console.index import Index
            t = time.perf_counter()
            idx = Index({str(index)!r}); cold = idx.refresh([{str(logs)!r}])
            cold_s = time.perf_counter() - t
            # then as the running console's refresher does: the same connection, 10,000 more
            write_events(Path({str(logs)!r}), 10_000, seed=3, start_run=2 * 10**7, mode='ab')
            t = time.perf_counter(); warm = idx.refresh([{str(logs)!r}]); warm_s = time.perf_counter() - t
            idx.close()
            result = {{'seconds': cold_s, 'events': cold.events, 'warm_seconds': warm_s, 'warm_events': warm.events}}
        """)
        search = child(f"""
            import random
            from sl2s.console.index import Index
            from sl2s.console import queries
            idx = Index({str(index)!r}); rng = random.Random(7)
            t = time.perf_counter()
            terminal = queries.terminal_steps(idx.conn, {{}})  # the console: once per refresh
            terminal_ms = (time.perf_counter() - t) * 1000
            def timed(f):
                out = []
                for i in range({args.searches}):
                    t = time.perf_counter()
                    n = len(queries.list_runs(idx.conn, f(rng), terminal=terminal).runs)
                    out.append(((time.perf_counter() - t) * 1000, n))
                out.sort()
                return out
            fields = timed(lambda r: queries.RunFilter(fields=(('username', f'u{{r.randrange(10000)}}'),)))
            words = ['ValueError', 'boom', f'stage {{rng.randrange(1, 21)}}', 'Retrieving feed', 'Testing password']
            text = timed(lambda r: queries.RunFilter(text=r.choice(words)))
            p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))][0]
            result = {{'terminal_ms': terminal_ms, 'field_p50': p(fields, .5), 'field_p95': p(fields, .95), 'field_hits': sum(n for _, n in fields) / len(fields),
                       'text_p50': p(text, .5), 'text_p95': p(text, .95)}}
        """)
        page = child(f"""
            import http.client, sys
            sys.path.insert(0, {str(ROOT / 'tests')!r})
            from console_server import Served
            from sl2s.console.app import Console, build_app
            from sl2s.console.index import Index
            from pathlib import Path
            console = Console(Index({str(index)!r}), [Path({str(logs)!r})])
            with Served(build_app(console, refresh_every=0)) as s:
                conn = http.client.HTTPConnection('127.0.0.1', s.port)
                times = []
                for i in range({args.pages} + 3):
                    t = time.perf_counter()
                    conn.request('GET', '/run/{target}'); r = conn.getresponse(); body = r.read()
                    assert r.status == 200 and body.count(b'<li id="e-') == 20, r.status
                    times.append((time.perf_counter() - t) * 1000)
                times = sorted(times[3:])
            result = {{'p50': times[len(times) // 2], 'p95': times[int(.95 * len(times))], 'bytes': len(body)}}
        """)
        story_one = child(f"""
            from sl2s.observe.story import Selection, tell
            t = time.perf_counter()
            text, _ = tell([{str(logs)!r}], Selection(correlation_id={target!r}))
            assert text.count('fields:') == 20
            result = {{'seconds': time.perf_counter() - t}}
        """)
        story_last = child(f"""
            from sl2s.observe.story import Selection, tell
            t = time.perf_counter()
            tell([{str(logs)!r}], Selection(last=True))
            result = {{'seconds': time.perf_counter() - t}}
        """)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    n = f"{args.events:,}"
    rows = [
        (
            "floor: parse every line once",
            f"{floor['seconds']:.1f} s, {floor['rss_mb']:.0f} MB",
            "",
            "",
        ),
        (
            f"index build, {n} events ({size_mb:.0f} MB of logs) -> {index_mb:.0f} MB index",
            f"{build['seconds']:.1f} s, {build['rss_mb']:.0f} MB peak",
            f"{build['seconds'] / floor['seconds']:.1f}x the floor",
            "<= 60 s, <= 500 MB",
        ),
        (
            "incremental refresh, 10,000 new events, fresh process (opens the index)",
            f"{update['seconds'] * 1000:.0f} ms ({update['events']} indexed)",
            f"{update['seconds'] / build['seconds'] * 100:.2f} % of the build",
            "<= 1 s",
        ),
        (
            "incremental refresh, 10,000 new events, the console's refresher (open connection)",
            f"{update['warm_seconds'] * 1000:.0f} ms ({update['warm_events']} indexed)",
            f"{update['warm_seconds'] / build['seconds'] * 100:.2f} % of the build",
            "<= 1 s",
        ),
        (
            f"field search username=<user> (~{search['field_hits']:.0f} runs each), {args.searches} random",
            f"p50 {search['field_p50']:.1f} ms, p95 {search['field_p95']:.1f} ms",
            "",
            "p95 <= 100 ms",
        ),
        (
            "word search (FTS5): rare and common words (ValueError, Testing password, …)",
            f"p50 {search['text_p50']:.1f} ms, p95 {search['text_p95']:.1f} ms",
            "",
            "",
        ),
        (
            "each flow's last step (outcomes), once per refresh",
            f"{search['terminal_ms']:.1f} ms",
            "",
            "",
        ),
        (
            "20-step run page served (HTTP, 127.0.0.1)",
            f"p50 {page['p50']:.1f} ms, p95 {page['p95']:.1f} ms ({page['bytes'] // 1024} KiB)",
            f"sl2s story of it: {story_one['seconds'] / (page['p50'] / 1000):.0f}x slower",
            "<= 200 ms",
        ),
        (
            "peer: sl2s story --correlation-id (same run, same logs)",
            f"{story_one['seconds']:.1f} s, {story_one['rss_mb']:.0f} MB",
            "",
            "",
        ),
        (
            "peer: sl2s story --last",
            f"{story_last['seconds']:.1f} s, {story_last['rss_mb']:.0f} MB",
            "",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  measured | ratio | target")
    for what, measured, ratio, goal in rows:
        print(f"{what:<{width}}  {measured} | {ratio} | {goal}")


if __name__ == "__main__":
    main()
