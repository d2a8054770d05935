"""Write N synthetic events (docs/architecture.md "Events") of the sample login plan into a log dir.

    python bench/make_events.py OUT_DIR [--events 1000000] [--seed 1]

One file per machine (`client.jsonl`, `server.jsonl`), runs interleaved as concurrent requests
would be. Mostly conforming runs, plus what `sl2s patterns` and `sl2s story` must find: user log
lines with varying values (~4%), failures (~1%), a renamed template, a step on the wrong machine.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import orjson
from synthetic import demo_plan, flow_run


def write_events(out: Path, total: int, seed: int = 1) -> int:
    out.mkdir(parents=True, exist_ok=True)
    plan = demo_plan()
    login, feed = plan.flow("login").steps, plan.flow("feed").steps
    rng = random.Random(seed)
    handles = {m: (out / f"{m}.jsonl").open("wb") for m in plan.machines}
    buffers: dict[str, list[bytes]] = {m: [] for m in plan.machines}
    dumps = orjson.dumps
    written = 0
    run = 0
    try:
        while written < total:
            run += 1
            cid = f"{rng.getrandbits(128):032x}"
            roll = rng.random()
            if roll < 0.3:
                events = flow_run(feed, cid=cid, start_ms=run * 0.4, rng=rng)
            elif roll < 0.34:
                events = flow_run(
                    login,
                    cid=cid,
                    start_ms=run * 0.4,
                    rng=rng,
                    log_lines={
                        login[2].id: [
                            f"ElasticSearch query failed to IP 10.0.{rng.randrange(256)}.{rng.randrange(256)}"
                            f" on run {run}"
                        ],
                    },
                )
            elif roll < 0.35:
                events = flow_run(
                    login,
                    cid=cid,
                    start_ms=run * 0.4,
                    rng=rng,
                    fail_at=login[rng.randrange(1, 5)].id,
                )
            else:
                events = flow_run(login, cid=cid, start_ms=run * 0.4, rng=rng)
                if run % 50_000 == 7:
                    events[2]["attributes"][
                        "sl2s.template"
                    ] = "Testing pasword for :username"
                elif run % 50_000 == 11:
                    events[3]["attributes"]["sl2s.machine"] = "client"
                    events[3]["resource"] = {"service.name": "client"}
            for e in events[: total - written]:
                machine = e["resource"]["service.name"]
                buffers[machine].append(dumps(e))
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
        for handle in handles.values():
            handle.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = write_events(args.out, args.events, args.seed)
    print(f"{n} events in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
