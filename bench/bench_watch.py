"""`sl2s watch` under load: 10,000 events/s written to a log dir; time from write to announcement.

    python bench/bench_watch.py [--rate 10000] [--seconds 10] [--errors 5]

A writer appends sl2s events (steps of many short runs, ~4% user log lines of a few templates) to
`<tmp>/server.jsonl` at `--rate` per second in 10 ms batches, and every `seconds / errors` seconds
a failure of a new exception type. A real `sl2s watch <tmp>` process (one core: it is one thread
doing the work) announces each on its standard output; the bench notes when each announcement
arrives. Reported: the latency from write to announcement (max and median; target ≤ 1 s at
10,000 events/s), whether the watcher kept up (events it read at exit = events written), its CPU
time per event, and the floor in the same run: reading and parsing the same lines alone
(`orjson.loads` per line), per event.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

SL2S = [sys.executable, "-c", "from sl2s.cli import main; main()"]
TEMPLATES = (
    "cache miss for key {n} after {m}ms",
    "retrying request {n} to 10.0.0.{m}",
    "user {n} logged in",
)


def event(i: int, failure: str | None = None) -> bytes:
    run = i // 5
    attributes = {
        "sl2s.event_id": f"{i:032d}",
        "sl2s.correlation_id": f"run{run:08d}",
        "sl2s.causation_id": f"{i - 1:032d}" if i % 5 else None,
        "sl2s.flow": "job",
        "sl2s.step": f"step_{i % 5}",
        "sl2s.machine": "server",
    }
    name, severity, number, body = "sl2s.step", "INFO", 9, f"step {i % 5} of run {run}"
    if failure:
        name, severity, number = "sl2s.step", "ERROR", 17
        attributes.update(
            {
                "exception.type": failure,
                "exception.message": "boom",
                "exception.stacktrace": f'  File "app/server/{failure}.py", line 3, in step\n',
                "sl2s.raised_at": f"app/server/{failure}.py:3",
            }
        )
    elif i % 25 == 0:
        name = "sl2s.log"
        body = TEMPLATES[i % 3].format(n=i, m=i % 97)
    return (
        orjson.dumps(
            {
                "timestamp": "2026-11-23T10:00:00.000000Z",
                "severity_text": severity,
                "severity_number": number,
                "body": body,
                "event_name": name,
                "resource": {"service.name": "server"},
                "attributes": attributes,
            }
        )
        + b"\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--errors", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "logs"
        directory.mkdir()
        log = directory / "server.jsonl"
        log.write_bytes(
            b"".join(event(i) for i in range(1, 1001))
        )  # something to learn
        env = {k: v for k, v in os.environ.items() if not k.startswith("SL2S_")}
        proc = subprocess.Popen(
            [*SL2S, "watch", str(directory), "--rate", "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        seen: dict[str, float] = {}
        started = threading.Event()

        def read_out():
            for line in proc.stdout:
                if line.startswith("[new error] "):
                    seen[line.split()[2].rstrip(":")] = time.perf_counter()

        def read_err(into):
            for line in proc.stderr:
                into.append(line)
                if line.startswith("watching "):
                    started.set()

        err: list[str] = []
        threads = [
            threading.Thread(target=read_out, daemon=True),
            threading.Thread(target=read_err, args=(err,), daemon=True),
        ]
        for t in threads:
            t.start()
        if not started.wait(60):
            proc.kill()
            print("".join(err), file=sys.stderr)
            return 1
        total = int(args.rate * args.seconds)
        batch = max(args.rate // 100, 1)
        error_every = total // max(args.errors, 1)
        written: dict[str, float] = {}
        lines: list[bytes] = []
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        begin = time.perf_counter()
        i = 1001
        sent = 0
        while sent < total:
            chunk = []
            for _ in range(batch):
                failure = None
                if sent and sent % error_every == 0:
                    failure = f"Error{sent // error_every}"
                line = event(i, failure)
                chunk.append(line)
                i += 1
                sent += 1
                if failure:
                    os.write(fd, b"".join(chunk))
                    written[failure] = time.perf_counter()
                    lines.extend(chunk)
                    chunk = []
            if chunk:
                os.write(fd, b"".join(chunk))
                lines.extend(chunk)
            target = begin + sent / args.rate
            pause = target - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - begin
        os.close(fd)
        deadline = time.monotonic() + 10
        while len(seen) < len(written) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        for t in threads:
            t.join(5)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime
        read = next(
            (line for line in err if line.startswith("watch stopped after")), ""
        )
        counted = int(read.split()[3]) if read else -1
        latencies = [seen[k] - written[k] for k in written if k in seen]
        # the floor, same lines, this process: parse each line once
        t0 = time.process_time()
        for line in lines:
            orjson.loads(line)
        floor = (time.process_time() - t0) / len(lines)
    rate = sent / elapsed
    print(
        f"written: {sent} events in {elapsed:.2f} s ({rate:,.0f}/s), {len(written)} new errors"
    )
    if latencies:
        print(
            f"write -> announcement: max {max(latencies) * 1000:.0f} ms, median "
            f"{statistics.median(latencies) * 1000:.0f} ms ({len(latencies)}/{len(written)} "
            "announced; target <= 1000 ms)"
        )
    else:
        print("no announcement arrived")
    print(
        f"watcher read {counted} events (written incl. the 1000 before: {sent + 1000})"
    )
    per_event = cpu / max(counted, 1)
    print(
        f"watcher CPU: {cpu:.2f} s = {per_event * 1e6:.1f} us/event; floor (parse once): "
        f"{floor * 1e6:.1f} us/event; ratio {per_event / floor:.1f}x; one core keeps up to "
        f"~{1 / per_event:,.0f} events/s"
    )
    ok = latencies and len(latencies) == len(written) and max(latencies) <= 1.0
    print("met" if ok and counted == sent + 1000 else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
