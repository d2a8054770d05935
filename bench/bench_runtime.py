"""Per-step overhead of the in-process runtime, next to its floor, measured in the same run.

    python bench/bench_runtime.py [--steps N] [--repeat R]

runtime: `run.step(...)` on a small generated-style system (written to a temporary directory):
    call the user's step function with its fields, merge its result, render the message, build the
    event (secrets masked), `orjson.dumps` it and append it to the machine's buffered JSON-lines file.
floor:   what any structured-logging step must do at least: a bare call of the same function plus
    `orjson.dumps` of an event dict of the same shape (taken from the runtime's own event) and a
    write to a buffered file.

Prints a table (best of R runs, microseconds per step) and the ratio; the target is <= 2x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time

import orjson


def write_system(root: str) -> None:
    package = os.path.join(root, "benchsys")
    os.makedirs(os.path.join(package, "shop"))
    open(os.path.join(package, "__init__.py"), "w").close()
    with open(os.path.join(package, "shop", "__init__.py"), "w") as f:
        f.write("from . import orders  # noqa\nfrom . import _wiring  # noqa\n")
    with open(os.path.join(package, "shop", "orders.py"), "w") as f:
        f.write(textwrap.dedent("""
                from sl2s.runtime import step


                @step("orders", "User :username placed an order with #card", id="placed")
                def placed(username, card):
                    return None


                @step("orders", "Checking :item for :username", id="check")
                def check(item, username):
                    return None


                @step("orders", "Charging :amount to :username", id="charge")
                def charge(amount, username):
                    return {"amount": amount}
                """))
    with open(os.path.join(package, "shop", "_wiring.py"), "w") as f:
        f.write(textwrap.dedent("""
                from sl2s.runtime import Machine

                machine = Machine(__name__, "shop")
                """))


def bench_runtime(steps: int) -> float:
    from benchsys.shop._wiring import machine

    run = machine.start(
        "orders", username="ann", card="4111-1111", item="book", amount=12
    )
    run.step("placed")
    step = run.step
    start = time.process_time()
    for i in range(steps // 2):
        step("check")
        step("charge")
    elapsed = time.process_time() - start
    run.finish()
    return elapsed / (steps // 2 * 2)


def sample_event() -> dict:
    """One real event of the runtime (the floor serialises the same shape)."""
    from benchsys.shop._wiring import machine

    from sl2s.runtime import hooks

    seen: list[dict] = []
    hooks.subscribe(seen.append)
    try:
        run = machine.start(
            "orders", username="ann", card="4111-1111", item="book", amount=12
        )
        run.step("charge")
        run.finish()
    finally:
        hooks.unsubscribe(seen.append)
    return seen[-1]


def bench_floor(steps: int, event: dict, path: str) -> float:
    def charge(amount, username):
        return {"amount": amount}

    dumps = orjson.dumps
    option = orjson.OPT_APPEND_NEWLINE
    with open(path, "ab", buffering=1 << 16) as out:
        write = out.write
        start = time.process_time()
        for _ in range(steps):
            charge(12, "ann")
            write(dumps(event, option=option))
        elapsed = time.process_time() - start
    return elapsed / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        write_system(root)
        sys.path.insert(0, root)
        os.environ["SL2S_LOG_DIR"] = os.path.join(root, "logs")
        os.environ.pop("SL2S_TRANSPORT", None)
        event = sample_event()
        runtime, floor = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            floor.append(
                bench_floor(args.steps, event, os.path.join(root, "floor.jsonl"))
            )
            runtime.append(bench_runtime(args.steps))
        lines = open(os.path.join(root, "logs", "shop.jsonl"), "rb").read().count(b"\n")
        assert lines >= args.steps * args.repeat, lines  # every step was written
    best_runtime, best_floor = min(runtime) * 1e6, min(floor) * 1e6
    ratio = best_runtime / best_floor
    print(f"{'case':<44} {'us/step':>8}")
    print(f"{'floor: call + orjson.dumps + buffered write':<44} {best_floor:>8.2f}")
    print(f"{'runtime: run.step (event built and written)':<44} {best_runtime:>8.2f}")
    print(f"{'ratio (target <= 2.00)':<44} {ratio:>8.2f}")
    print(
        f"event size: {len(orjson.dumps(event))} bytes; {args.steps} steps x {args.repeat} runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
