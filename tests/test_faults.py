"""Fault property tests of the durable hops (issue 9): the five-machine shop plan over HTTP, many
flows in flight, one machine killed with SIGKILL at a random moment.

What must hold after each trial:

- every flow completes (its entry returns), though a machine died under it;
- the store records each step of every completed flow exactly once, and records the flow completed;
- the event logs agree with the store: each recorded step has its `sl2s.step` event (the one whose
  id the store kept), each step event of a completed flow is a recorded step;
- effects ran at least once; more than once (at most twice) only on the killed machine, for the
  steps it had run but not yet checkpointed when it died (at-least-once, docs/durability.md).
  Their events may be written twice too (events are written before the checkpoint commit); every
  other step's event is written exactly once.

Two settings:

- `sl2s up` on the default store (SQLite under the log dir): `up` must restart the killed machine
  (and only it), say so, and leave no process behind when stopped;
- the PostgreSQL store with two `sl2s serve` replicas of one machine behind a round-robin TCP
  balancer (one address, as a Kubernetes Service gives them; the client knows one URL per
  machine): one replica is killed and not restarted, the other takes over its hops.

Each step stub of the generated tree is replaced by code that appends `step_key()` to a file per
machine (O_APPEND, one write) and sleeps a few ms, so flows are in flight when the kill comes.
Trials are few and seeded (`FAULT_SEED=<n>` repeats one); the seed is printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import (  # noqa: E402
    alive,
    base_env,
    children,
    loopback_socket,
    sl2s,
    start_up,
    stop,
    wait_healthy,
)

from sl2s.runtime.store import open_store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "sample_plans" / "shop.csv"
KEY = "test-fault-key-" + "0123456789abcdef" * 2
THREADS, FLOWS_PER_THREAD = 16, 12
TRIALS = 3
# 'browser' is only ever a caller: its entries (checkout, add_to_cart) run in the driver process
SERVED = ("web", "inventory", "payments", "mailer")

STUB_BODY = "    # Not implemented yet: this step does nothing.\n    return None\n"
PRELUDE = '''import os as _os
import time as _time

from sl2s.runtime import step, step_key


def _effect():
    """Record that this step's effect ran (one O_APPEND write), then take a few ms."""
    path = _os.path.join(_os.environ["FAULT_EFFECTS"], "{machine}.effects")
    fd = _os.open(path, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o644)
    try:
        _os.write(fd, (step_key() + "\\n").encode())
    finally:
        _os.close(fd)
    _time.sleep(0.004)
'''

DRIVER = r"""
import importlib, json, sys, threading, time
sys.path.insert(0, sys.argv[1])
browser = importlib.import_module(sys.argv[2] + ".browser")
threads, per = int(sys.argv[3]), int(sys.argv[4])
results, lock = [], threading.Lock()

def fields(flow, cart):
    if flow == "checkout":
        return dict(customer_id="c1", cart_id=cart, item_count="2", reservation_id="r1",
                    amount_cents="1999", card_number="4111-1111-1111-1111", payment_id="p1",
                    order_id="o-" + cart, email="a@example.com")
    return dict(sku="sku-1", cart_id=cart, stock_level="7", item_count="2")

def worker(t):
    for i in range(per):
        flow = ("checkout", "add_to_cart")[(t + i) % 2]
        cart = f"cart-{t}-{i}"
        begun = time.monotonic()
        try:
            getattr(browser, flow)(**fields(flow, cart))
            error = None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append({"flow": flow, "cart": cart, "error": error,
                            "seconds": time.monotonic() - begun})

workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
print("started", flush=True)
for w in workers:
    w.join()
print(json.dumps(results), flush=True)
"""


# -- the tree under test -------------------------------------------------------------------------


def effect_stubs(tree: Path) -> None:
    """Every step stub of every user module records its effect (see PRELUDE)."""
    for module in sorted(tree.glob("*/*.py")):
        if module.name.startswith("_"):
            continue
        text = module.read_text(encoding="utf-8")
        assert STUB_BODY in text and "from sl2s.api import step\n" in text, module
        text = text.replace(
            "from sl2s.api import step\n",
            PRELUDE.format(machine=module.parent.name),
        )
        module.write_text(
            text.replace(STUB_BODY, "    return _effect()\n"), encoding="utf-8"
        )


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("faults") / "svc_shop"
    done = sl2s("generate", str(SHOP), "--out", str(tree))
    assert done.returncode == 0, done.stderr
    effect_stubs(tree)
    return tree


def plan_steps(tree: Path) -> dict[str, dict[str, str]]:
    """flow -> step id -> machine, from the lock file."""
    lock = orjson.loads((tree / "sl2s.lock.json").read_bytes())
    return {
        flow: {sid: entry["machine"] for sid, entry in steps.items()}
        for flow, steps in lock["steps"].items()
    }


# -- processes -----------------------------------------------------------------------------------


def machine_of(pid: int) -> str | None:
    """The machine a `sl2s serve`/`up` child serves, from its command line (`... NAME --fd N`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if b"--fd" not in argv:
        return None
    return argv[argv.index(b"--fd") - 1].decode()


def served_pids(up: subprocess.Popen) -> dict[str, int]:
    found = {}
    for pid in children(up.pid):
        name = machine_of(pid)
        if name is not None and alive(pid):
            found[name] = pid
    return found


def start_driver(tree: Path, env: dict) -> subprocess.Popen:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tree.parent), tree.name,
         str(THREADS), str(FLOWS_PER_THREAD)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = driver.stdout.readline()
    assert line.strip() == "started", driver.stderr.read()
    return driver


def finish_driver(driver: subprocess.Popen) -> list[dict]:
    try:
        out, err = driver.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        driver.kill()
        out, err = driver.communicate()
        pytest.fail(f"flows did not end within 90 s: {err[-3000:]}")
    assert driver.returncode == 0, err[-3000:]
    return orjson.loads(out.strip().splitlines()[-1])


def wait_for_progress(effects: Path, machine: str, seconds: float = 20) -> None:
    """Until `machine` has run at least one step (so it is killed with work in flight)."""
    path = effects / f"{machine}.effects"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return
        time.sleep(0.01)
    pytest.fail(f"machine '{machine}' ran no step within {seconds} s")


# -- what was written ----------------------------------------------------------------------------


def step_events(log_dir: Path) -> list[dict]:
    """Every `sl2s.step` event in the machines' logs; a torn line fails with its file and text."""
    found, torn = [], []
    for path in sorted(log_dir.glob("*.jsonl")):
        if path.name.startswith("incident-"):
            continue
        for line in path.read_bytes().split(b"\n"):
            if not line:
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn.append(f"{path.name}: {line[:120]!r}")
                continue
            if event["event_name"] == "sl2s.step":
                found.append(event)
    assert not torn, f"unreadable event lines (torn by the kill?): {torn[:5]}"
    return found


def effects_by_machine(effects: Path) -> dict[str, Counter]:
    return {
        path.stem: Counter(path.read_text(encoding="utf-8").split())
        for path in sorted(effects.glob("*.effects"))
    }


def step_rows(store_url: str) -> int:
    """How many rows the store's steps table holds (read with the database's own client)."""
    query = "SELECT COUNT(*) FROM sl2s_steps"
    if store_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:
            return conn.execute(query).fetchone()[0]
    import psycopg

    with psycopg.connect(store_url) as conn:
        return conn.execute(query).fetchone()[0]


def check_trial(
    *, tree: Path, store_url: str, logs: Path, effects: Path, results: list[dict],
    killed: str,
) -> dict:  # fmt: skip
    """The assertions shared by every trial; returns a few figures for the message."""
    failed = [r for r in results if r["error"]]
    assert len(results) == THREADS * FLOWS_PER_THREAD
    assert not failed, f"{len(failed)} flows failed, e.g. {failed[:3]}"
    plan = plan_steps(tree)

    store = open_store(store_url)
    try:
        flows = store.flows(limit=100_000)
        runs = {f.correlation_id: f for f in flows}
        steps = {cid: store.steps_of(cid) for cid in runs}
    finally:
        store.close()
    assert Counter(f.flow for f in flows) == Counter(r["flow"] for r in results)
    # the store's rows themselves, not its API's view of them: no (flow run, step) twice
    assert step_rows(store_url) == sum(len(done) for done in steps.values())
    not_done = {cid: f.state for cid, f in runs.items() if f.state != "completed"}
    assert not not_done, f"flows not recorded as completed: {not_done}"
    for cid, flow in runs.items():
        # one row per (flow run, step) by the store's key; every step of the flow is recorded
        assert sorted(steps[cid]) == sorted(plan[flow.flow]), (cid, flow.flow)
        for sid, rec in steps[cid].items():
            assert rec.machine == plan[flow.flow][sid], (cid, sid, rec.machine)

    events = step_events(logs)
    by_step: dict[tuple[str, str], list[dict]] = {}
    for event in events:
        attrs = event["attributes"]
        by_step.setdefault(
            (attrs["sl2s.correlation_id"], attrs["sl2s.step"]), []
        ).append(event)
    # every step event belongs to a recorded step of a completed flow, and vice versa
    recorded = {(cid, sid) for cid, done in steps.items() for sid in done}
    assert set(by_step) == recorded, (
        f"events without a recorded step: {sorted(set(by_step) - recorded)[:5]}; "
        f"recorded steps without an event: {sorted(recorded - set(by_step))[:5]}"
    )
    twice = Counter()
    for (cid, sid), written in by_step.items():
        rec = steps[cid][sid]
        ids = [e["attributes"]["sl2s.event_id"] for e in written]
        machines = {e["resource"]["service.name"] for e in written}
        assert machines == {rec.machine}, (cid, sid, machines)
        assert (
            rec.event_id in ids
        ), f"the store keeps event {rec.event_id} for {cid}:{sid}, the log has {ids}"
        # only the killed machine's uncommitted steps may run twice
        if len(written) > 1:
            assert rec.machine == killed and len(written) == 2, (cid, sid, ids)
            twice[rec.machine] += 1

    ran = effects_by_machine(effects)
    reran = 0
    for cid, done in steps.items():
        for sid, rec in done.items():
            count = ran.get(rec.machine, Counter())[f"{cid}:{sid}"]
            assert count >= 1, f"effect of {cid}:{sid} on {rec.machine} never ran"
            if rec.machine == killed:
                assert count <= 2, (cid, sid, count)
                reran += count - 1
            else:
                assert count == 1, (cid, sid, rec.machine, count)
    keys = {f"{cid}:{sid}" for cid, sid in recorded}
    strays = {m: [k for k in c if k not in keys] for m, c in ran.items()}
    assert not any(strays.values()), f"effects of no recorded step: {strays}"
    return {
        "flows": len(runs),
        "events_twice": sum(twice.values()),
        "effects_again": reran,
    }


# -- trials under `sl2s up` (SQLite store, the default) ------------------------------------------


def collect(stream) -> list[str]:
    """Lines of `stream`, read in a thread (so a chatty process never blocks on a full pipe)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(stream), daemon=True).start()
    return lines


def wait_restarted(
    up: subprocess.Popen, said: list[str], machine: str, old: int, seconds: float = 30
) -> int:
    """The pid of `machine`'s new process once `up` has started one; fails, naming what `up` did
    instead, if it exits or does not restart it in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if up.poll() is not None:
            pytest.fail(
                f"sl2s up exited ({up.returncode}) instead of restarting '{machine}':\n"
                + "".join(said)
            )
        pid = served_pids(up).get(machine)
        if pid not in (None, old):
            return pid
        time.sleep(0.05)
    pytest.fail(f"sl2s up did not restart machine '{machine}' within {seconds} s")


def run_up_trial(shop: Path, base: Path, rng: random.Random) -> dict:
    logs, effects = base / "logs", base / "effects"
    logs.mkdir(parents=True)
    effects.mkdir()
    env = base_env(
        SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY, SL2S_DEADLINE="60",
        FAULT_EFFECTS=str(effects),
    )  # fmt: skip
    victim = rng.choice(SERVED)
    up, urls = start_up(shop, env)
    said = collect(up.stderr)
    before: dict[str, int] = {}
    driver = None
    try:
        before = served_pids(up)
        assert sorted(before) == sorted(SERVED), before
        driver = start_driver(shop, {**env, "SL2S_TRANSPORT": "http"})
        wait_for_progress(effects, victim)
        time.sleep(rng.uniform(0.05, 0.6))
        assert driver.poll() is None, "the flows ended before the kill"
        os.kill(before[victim], signal.SIGKILL)
        wait_restarted(up, said, victim, before[victim])
        results = finish_driver(driver)
        after = served_pids(up)
        assert all(after[m] == before[m] for m in SERVED if m != victim), (
            "the other machines were restarted too", before, after,
        )  # fmt: skip
        wait_healthy(urls[victim])
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.communicate()
        kids = children(up.pid) if up.poll() is None else []
        code = stop(up)
        leftover = [pid for pid in {*kids, *before.values()} if alive(pid)]
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)  # the reader thread takes the last lines
    messages = "".join(said)
    assert code == 0, messages
    assert not leftover, f"sl2s up left processes behind: {leftover}"
    assert any(
        "restart" in line and f"'{victim}'" in line for line in messages.splitlines()
    ), f"sl2s up did not say it restarted '{victim}':\n{messages}"
    figures = check_trial(
        tree=shop, store_url=f"sqlite://{logs / 'flows.sqlite3'}", logs=logs,
        effects=effects, results=results, killed=victim,
    )  # fmt: skip
    return {"killed": victim, **figures}


def test_flows_survive_a_machine_killed_under_up(shop, tmp_path):
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(2**32))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    for trial in range(TRIALS):
        figures = run_up_trial(shop, tmp_path / f"trial{trial}", rng)
        print(f"trial {trial}: {figures}")


# -- PostgreSQL store, two replicas of one machine -----------------------------------------------


class RoundRobin:
    """A loopback TCP balancer in front of replicas, as a Kubernetes Service or any L4 load
    balancer puts one address in front of them: each new connection goes to the next replica that
    accepts it. The client itself has one URL per machine (runtime/http_config.py)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.turn = 0
        self.sock = loopback_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader, writer) -> None:
        for _ in range(len(self.backends)):
            port = self.backends[self.turn % len(self.backends)]
            self.turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # that replica is gone: try the next
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer), self._pipe(up_reader, writer)
                )
            except asyncio.CancelledError:  # the balancer is closing
                up_writer.close()
            return
        writer.close()

    def __enter__(self) -> RoundRobin:
        async def serve():
            self.server = await asyncio.start_server(self._client, sock=self.sock)

        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        async def close():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def port_of(url: str) -> int:
    return int(re.search(r":(\d+)$", url).group(1))


def run_replica_trial(
    shop: Path, base: Path, rng: random.Random, store_url: str
) -> dict:
    """Every served machine a `sl2s serve` process, one of them twice behind a balancer; SIGKILL
    one of the two replicas: the other takes over its hops (same store)."""
    replicated = rng.choice(SERVED)
    logs, effects = base / "logs", base / "effects"
    logs.mkdir(parents=True)
    effects.mkdir()
    env = base_env(
        SL2S_LOG_DIR=str(logs), SL2S_HOP_KEY=KEY, SL2S_DEADLINE="60",
        SL2S_STORE=store_url, SL2S_TRANSPORT="http", FAULT_EFFECTS=str(effects),
    )  # fmt: skip
    # every process gets a listening socket bound here (no port race); the replicated machine's
    # callers get the balancer's address
    sockets = [(name, loopback_socket()) for name in SERVED if name != replicated]
    sockets += [(replicated, loopback_socket()), (replicated, loopback_socket())]
    own = [f"http://127.0.0.1:{sock.getsockname()[1]}" for _, sock in sockets]
    procs: list[subprocess.Popen] = []
    driver = None
    with RoundRobin([port_of(url) for url in own[-2:]]) as balancer:
        urls = {name: url for (name, _), url in zip(sockets, own)}
        urls[replicated] = balancer.url
        env.update({f"SL2S_URL_{n.upper()}": u for n, u in urls.items()})
        try:
            for name, sock in sockets:
                sock.set_inheritable(True)
                with open(base / f"{name}.stderr", "ab") as errors:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-c", "from sl2s.cli import main; main()", "serve",
                         str(shop), name, "--fd", str(sock.fileno())],
                        env=env, pass_fds=(sock.fileno(),), stdout=subprocess.DEVNULL,
                        stderr=errors,
                    ))  # fmt: skip
                sock.close()
            for url, proc in zip(own, procs):
                wait_healthy(url, proc)
            victim = procs[-1 - rng.randrange(2)]  # one of the two replicas
            driver = start_driver(shop, env)
            wait_for_progress(effects, replicated)
            time.sleep(rng.uniform(0.05, 0.6))
            assert driver.poll() is None, "the flows ended before the kill"
            victim.kill()
            results = finish_driver(driver)
            exited = [
                p.args[-3] for p in procs if p is not victim and p.poll() is not None
            ]
            assert not exited, f"machines exited: {exited}"
        finally:
            if driver is not None and driver.poll() is None:
                driver.kill()
                driver.communicate()
            for proc in procs:
                if proc.poll() is None:
                    stop(proc)
    figures = check_trial(
        tree=shop, store_url=store_url, logs=logs, effects=effects, results=results,
        killed=replicated,
    )  # fmt: skip
    return {"replicated": replicated, **figures}


def test_flows_survive_a_replica_killed_with_the_postgresql_store(
    shop, tmp_path, pg_cluster
):
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(2**32))
    print(f"FAULT_SEED={seed}")
    rng = random.Random(seed)
    for trial in range(TRIALS):
        url = pg_cluster.create_database()
        figures = run_replica_trial(shop, tmp_path / f"trial{trial}", rng, url)
        print(f"trial {trial}: {figures}")
