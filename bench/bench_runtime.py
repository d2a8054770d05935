"""Per-step overhead of the in-process runtime, next to its floor, measured in the same run.

    python bench/bench_runtime.py [--steps N] [--repeat R]

runtime: `run.step(...)` on a small generated-style system (written to a temporary directory):
    call the user's step function with its fields, merge its result, render the message, build the
    event (secrets masked), serialise it and append it to the machine's buffered JSON-lines file.
    Measured twice: with no event listener (the runtime's own cost; the target), and with the
    listeners a generated system's process has by default (the flight recorder of sl2s.observe,
    subscribed when the generated login package below is imported; the bench checks one is), which
    receive every event as a hooks.LazyEvent (the written line, decoded only on demand; the
    recorder reads its severity and keeps it). Target: <= 1.3x the runtime without listeners.
flow:    the login flow of sample_plans/login.csv in one process (local transport, no flow store,
    no listener): 2 steps on the client, a hop (its request and response round-trip through JSON
    bytes), 4 steps on the server, the hop back; next to the same number (6) of bare `run.step`s
    of the runtime row, same run. Target: <= 3x.
floor:   what any structured-logging step must do at least: a bare call of the same function plus
    `orjson.dumps` of an event dict of the same shape (a real event of the runtime, decoded) and a
    write to a buffered file (`open(..., "ab")`, 64 KiB buffer), the same number of steps.

CPU time (`time.process_time`), the three cases interleaved in each of R rounds so that all see the
same machine load; prints the best round of each (microseconds per step) and the ratios to the
floor, and the cost of the listeners (with / without). The target is runtime / floor <= 2.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import orjson


def write_system(root: str, package_name: str = "benchsys", entry: str = "") -> None:
    """A one-machine system `package_name` of flow 'orders' (three steps) under `root`; `entry`
    is extra wiring source (an entry function) appended after the machine."""
    package = os.path.join(root, package_name)
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
                """) + textwrap.dedent(entry))


def bench_runtime(steps: int, listeners: bool = False) -> float:
    from benchsys.shop._wiring import machine

    from sl2s.runtime import hooks

    subscribed = hooks.listeners()
    if not listeners:
        for listener in subscribed:
            hooks.unsubscribe(listener)
    try:
        return _steps(machine, steps)
    finally:
        for listener in subscribed:
            hooks.subscribe(listener)


def _steps(machine, steps: int) -> float:
    run = machine.start(
        "orders", username="ann", card="4111-1111", item="book", amount=12
    )
    run.step("placed")
    step = run.step
    start = time.process_time()
    for _ in range(steps // 2):
        step("check")
        step("charge")
    elapsed = time.process_time() - start
    run.finish()
    return elapsed / (steps // 2 * 2)


def sample_event() -> dict:
    """One real event of the runtime (the floor serialises the same shape)."""
    from benchsys.shop._wiring import machine

    from sl2s.runtime import hooks

    seen: list = []  # hooks.LazyEvent: the written line, decoded on demand
    hooks.subscribe(seen.append)
    try:
        run = machine.start(
            "orders", username="ann", card="4111-1111", item="book", amount=12
        )
        run.step("charge")
        run.finish()
    finally:
        hooks.unsubscribe(seen.append)
    return orjson.loads(seen[-1].line)


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


LOGIN_STEPS = 6  # steps of one login flow: 2 on the client, 4 on the server


def generate_login(root: str) -> None:
    """The generated tree of sample_plans/login.csv as package `loginsys` under `root`."""
    plan = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "sample_plans",
        "login.csv",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sl2s.cli import main; main()",
            "generate",
            plan,
            "--out",
            os.path.join(root, "loginsys"),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(done.stderr)


def bench_flow(flows: int) -> float:
    """CPU seconds per in-process login flow, no listener."""
    from loginsys.client import _wiring

    from sl2s.runtime import hooks

    subscribed = hooks.listeners()
    for listener in subscribed:
        hooks.unsubscribe(listener)
    login = _wiring.login
    try:
        start = time.process_time()
        for _ in range(flows):
            login(username="ann", password="secret-pw")
        return (time.process_time() - start) / flows
    finally:
        for listener in subscribed:
            hooks.subscribe(listener)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--flows", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        write_system(root)
        sys.path.insert(0, root)
        os.environ["SL2S_LOG_DIR"] = os.path.join(root, "logs")
        os.environ.pop("SL2S_TRANSPORT", None)
        os.environ["SL2S_STORE"] = "none"  # the durable cost is bench_durable.py's
        generate_login(root)
        event = sample_event()
        from sl2s.runtime import hooks

        # warm up: import (the generated package subscribes the default listeners), prepare steps
        bench_flow(200)
        if not hooks.listeners():
            # what a generated system's package does when imported (this one is hand-written):
            # subscribe the flight recorder, so the listener row measures a listener
            import sl2s.observe

            sl2s.observe.install(os.path.join(root, "logs"), otel=False)
        names = [type(x).__name__ for x in hooks.listeners()]
        assert names, "no listener subscribed: the listener row would measure nothing"
        runtime, listened, floor, flow = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so all see the same machine state
            floor.append(
                bench_floor(args.steps, event, os.path.join(root, "floor.jsonl"))
            )
            runtime.append(bench_runtime(args.steps))
            listened.append(bench_runtime(args.steps, listeners=True))
            flow.append(bench_flow(args.flows))
        lines = open(os.path.join(root, "logs", "shop.jsonl"), "rb").read().count(b"\n")
        assert lines >= 2 * args.steps * args.repeat, lines  # every step was written
    best_floor = min(floor) * 1e6
    rows = [
        ("floor: call + orjson.dumps + buffered write", best_floor),
        ("runtime: run.step, no listener (target)", min(runtime) * 1e6),
        (f"runtime + default listeners ({', '.join(names)})", min(listened) * 1e6),
    ]
    print(f"{'case':<52} {'us/step':>8} {'ratio':>6}")
    for name, value in rows:
        print(f"{name:<52} {value:>8.2f} {value / best_floor:>6.2f}")
    print(
        f"listeners: with / without = {min(listened) / min(runtime):.2f} (target <= 1.30)"
    )
    bare = LOGIN_STEPS * min(runtime) * 1e6
    print(
        f"in-process login flow ({LOGIN_STEPS} steps, 1 hop there and back): "
        f"{min(flow) * 1e6:.1f} us; {LOGIN_STEPS} bare steps: {bare:.1f} us; "
        f"ratio {min(flow) * 1e6 / bare:.2f} (target <= 3.00)"
    )
    print(
        f"target: runtime / floor <= 2.00; event size: {len(orjson.dumps(event))} bytes; "
        f"{args.steps} steps x {args.repeat} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
