"""Durable flow runs: what the runtime records in the flow store, and when (docs/durability.md).

The plan cuts every flow into steps and hops; each boundary is a checkpoint, as in DBOS and
Temporal, and a flow resumes by running the same straight-line wiring again and skipping what is
recorded:

- A completed step appends a record (the fields it set, masked) to a buffer of this thread; the
  buffer is committed in ONE store transaction (a group commit) before anything is acknowledged:
  before a hop is sent, when an inbound hop's answer is produced, and when the entry returns or
  fails. A crash before the commit runs those steps again (at-least-once).
- A flow's record (its entry context with the secret fields left out) goes in with its first commit;
  a flow that crashes before any commit was never acknowledged and is not resumable.
- Replay: a run that may have history (a resumed entry, a hop of a resumed flow, a hop taken over
  from a dead process) loads the flow's step records once; `Run.step` then merges a replayable
  record's outcome instead of calling the function again.
- Hop idempotency keys are deterministic, `<correlation id>.<attempt>.<at>`: a segment run again
  after a crash re-sends its hops with the same keys (their answers come from the callee's store);
  `sl2s flows resume` increments the attempt, so a resumed flow sends new ones.

The store is opened lazily, once per process and setting (`open_store`, `SL2S_STORE`); with
`SL2S_STORE=none` nothing here does anything (the runs hold no buffer).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import orjson

from sl2s.runtime.core import logcapture

_local = threading.local()
_stores: dict[tuple, Any] = {}  # a FlowStore, or _NONE
_lock = threading.Lock()
_NONE = object()  # the cached answer "no store" (SL2S_STORE=none)

# -- the store of a system ---------------------------------------------------------------------


def store_for(services_dir: str):
    """The flow store of the system at `services_dir` (None when durability is off), opened once per
    process and setting. Cheap after the first call: a dict lookup keyed by the settings.
    """
    key = (
        services_dir,
        os.environ.get("SL2S_STORE"),
        os.environ.get("SL2S_LOG_DIR"),
    )
    found = _stores.get(key)
    if found is not None:
        return None if found is _NONE else found
    with _lock:
        found = _stores.get(key)
        if found is None:
            from sl2s.runtime.store import StoreError, open_store, store_setting

            url, source = store_setting(services_dir)
            try:
                opened = open_store(url, services_dir=services_dir)
            except StoreError as error:
                if source != "default":
                    raise  # a store the user chose must work
                # the default store lives in the log dir; like an unwritable log, it never
                # breaks a flow: said once, the flows of this process are not durable
                text = str(error).removeprefix("sl2s: ")
                complain(
                    f"{text}; flows are not durable (set SL2S_STORE or SL2S_LOG_DIR)"
                )
                opened = None
            found = _stores[key] = _NONE if opened is None else opened
    return None if found is _NONE else found


def forget() -> None:
    """Close and forget every opened store (tests that change the setting)."""
    with _lock:
        stores = [s for s in _stores.values() if s is not _NONE]
        _stores.clear()
        _groups.clear()
    for store in stores:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


# -- the buffer of completed steps (one per thread and store) -------------------------------------


class Buffer:
    """What this thread has done in one store and not yet committed."""

    __slots__ = ("store", "flows", "steps", "ended")

    def __init__(self, store) -> None:
        self.store = store
        # [correlation id, system, flow, machine, context, secret names, created, attempt,
        # deadline]
        self.flows: list[list] = []
        # (correlation id, step, machine, outcome JSON text, replayable, event id, completed):
        # StepRecord's fields in order, what the store's `commit` takes as they are
        self.steps: list[tuple] = []
        # (correlation id, state, error, now)
        self.ended: list[tuple] = []

    def __bool__(self) -> bool:
        return bool(self.steps or self.flows or self.ended)

    def commit(self, answered: tuple | None = None) -> None:
        """Write everything buffered, in one transaction shared with the commits other threads of
        this process are making at the same moment (`GroupCommit`); returns once it is on disk.
        `answered`: a hop's answer `(key, status, headers, body, now)`, stored with it.
        """
        if not (self.steps or self.flows or self.ended or answered):
            return
        from sl2s.runtime.store import FlowRecord

        flows, steps, ended = self.flows, self.steps, self.ended
        self.flows, self.steps, self.ended = [], [], []
        records = [
            FlowRecord(
                correlation_id=cid,
                system=system_name,
                flow=flow,
                machine=machine,
                state="pending",
                context=context,
                secrets=secrets,
                position=None,
                error=None,
                deadline=deadline,
                created=created,
                updated=created,
                attempt=attempt,
            )
            for (
                cid, system_name, flow, machine, context, secrets, created, attempt, deadline
            ) in flows  # fmt: skip
        ]
        # steps: rows in StepRecord's order, the outcome already JSON text
        group_for(self.store).commit(_Batch(records, steps, ended, answered))


class _Batch:
    """One thread's commit, waiting in a GroupCommit."""

    __slots__ = (
        "flows", "steps", "ended", "answered", "claim", "claimed", "done", "error", "event"
    )  # fmt: skip

    def __init__(
        self, flows: list, steps: list, ended: list, answered, claim=None
    ) -> None:
        self.flows, self.steps, self.ended = flows, steps, ended
        self.answered = answered
        self.claim = claim  # a hop claim (HopRecord): `store.hop_claim` in the group's transaction
        self.claimed: tuple | None = (
            None  # its result, (record found or None, flow state)
        )
        self.done = False
        self.error: BaseException | None = None
        # a lock held from the moment the batch queues, released once: when it is done, or
        # when it is to write (cheaper than a threading.Event: no condition, no waiter lock)
        self.event: Any = None  # (a lock: threading.Lock() is a factory, not a type)


_NO_LOCK = nullcontext()
_allocate_lock = threading.Lock


class GroupCommit:
    """Commits of many threads of one process in one store transaction (leader and followers).

    A thread that commits while no other is writing writes at once (alone: no added latency).
    Threads that commit while a write is under way queue their batches; when it ends, one of them
    writes every queued batch in one transaction and wakes the others. Each returns only once its
    own batch is on disk, so nothing is acknowledged before it is committed; a batch whose
    transaction failed is retried alone, so one bad batch fails only its own run. Under load
    this turns N transactions into a few, which is what a store with one writer at a time (SQLite)
    needs most."""

    def __init__(self, store) -> None:
        self.store = store
        # SQLite has one writer at a time: this process's writers wait on this lock (woken at
        # once) rather than in SQLite's busy handler (which sleeps 1 ms, 2 ms, 5 ms, ...).
        # PostgreSQL runs concurrent transactions itself: no lock.
        self.writer = (
            threading.Lock()
            if getattr(store, "dialect", "sqlite") == "sqlite"
            else _NO_LOCK
        )
        self._mutex = threading.Lock()
        self._queue: list[_Batch] = []  # batches waiting for the write under way to end
        self._writing = False

    def claim(self, rec) -> tuple:
        """`store.hop_claim(rec)`, committed before it returns. On SQLite the claim joins the
        group: the claims and answers of a server's concurrent hops share one transaction
        (a claim waited for the write under way anyway: SQLite has one writer). PostgreSQL
        claims in one statement of its own (`PostgresStore.hop_claim`)."""
        if self.writer is _NO_LOCK:
            return self.store.hop_claim(rec)
        batch = _Batch([], [], [], None, rec)
        self.commit(batch)
        assert batch.claimed is not None  # (set by the write that took the claim)
        return batch.claimed

    def commit(self, batch: _Batch) -> None:
        # Each waiting thread sleeps on its own event and is woken once: when its batch is on
        # disk, or when it is to write the next group. (A shared condition woke every waiting
        # thread after each write: with 32 threads committing, the wake-ups cost more CPU than
        # the writes — bench_durable.py, the login flow.)
        with self._mutex:
            lead = not self._writing
            if lead:
                self._writing = True
            else:
                batch.event = _allocate_lock()
                batch.event.acquire()
                self._queue.append(batch)
        if not lead:
            batch.event.acquire()  # released by the thread that wrote it, or hands over
            if batch.done:
                if batch.error is not None:
                    raise batch.error
                return
        # this thread writes: its batch and every one queued meanwhile
        with self._mutex:
            taken, self._queue = self._queue, []
        if not any(each is batch for each in taken):
            taken.insert(0, batch)
        following = None
        try:
            with self.writer:
                self._write(taken)
        finally:
            with self._mutex:
                for each in taken:
                    each.done = True
                if self._queue:
                    following = self._queue[0]  # writes the next group (it is not done)
                else:
                    self._writing = False
            for each in taken:
                if each is not batch:
                    each.event.release()
            if following is not None:
                following.event.release()
        if batch.error is not None:
            raise batch.error

    def _write(self, batches: list[_Batch]) -> None:
        try:
            if len(batches) == 1:
                self._write_one(batches[0])
                return
            # the claims and answers of the server's concurrent hops too: one transaction for all
            claims = [b for b in batches if b.claim is not None]
            claimed = self.store.commit(
                flows=[f for b in batches for f in b.flows],
                steps=[s for b in batches for s in b.steps],
                ended=[e for b in batches for e in b.ended],
                answers=[b.answered for b in batches if b.answered is not None],
                claims=[b.claim for b in claims],
            )
            for each, result in zip(claims, claimed):
                each.claimed = result
        except BaseException as error:
            if len(batches) == 1:
                batches[0].error = error
                return
            for each in batches:  # alone, so that only a bad batch fails
                try:
                    self._write_one(each)
                except BaseException as alone:  # noqa: BLE001 - handed to its thread
                    each.error = alone

    def _write_one(self, batch: _Batch) -> None:
        if batch.claim is not None:
            batch.claimed = self.store.hop_claim(batch.claim)
            return
        self.store.commit(
            flows=batch.flows,
            steps=batch.steps,
            ended=batch.ended,
            answered=batch.answered,
        )


_groups: dict[int, GroupCommit] = {}


def group_for(store) -> GroupCommit:
    """The process's GroupCommit of `store`."""
    found = _groups.get(id(store))
    if found is None or found.store is not store:
        with _lock:
            found = _groups.get(id(store))
            if found is None or found.store is not store:
                found = _groups[id(store)] = GroupCommit(store)
    return found


def buffer_for(store) -> Buffer:
    """This thread's buffer for `store`."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    found = buffers.get(id(store))
    if found is None or found.store is not store:
        found = buffers[id(store)] = Buffer(store)
    return found


def record_flow(buffer: Buffer, run, attempt: int) -> None:
    """The entry of a new flow run: its record goes in with the first commit."""
    secrets = run.secret_names
    context = {k: v for k, v in run._masked.items() if k not in secrets}
    hidden = tuple(sorted(k for k in run.fields if k in secrets))
    buffer.flows.append(
        [
            run.correlation_id,
            run.machine.system,
            run.flow,
            run.machine.name,
            orjson.loads(orjson.dumps(context, default=repr)),
            hidden,
            time.time(),
            attempt,
            None,  # the deadline: set before the run's first hop (`set_deadline`)
        ]
    )


def set_deadline(buffer: Buffer, correlation_id: str, deadline: float) -> None:
    """The deadline of flow run `correlation_id` (epoch seconds: how long it may wait on other
    machines, fixed by its first hop), recorded with the run's record when that is still to be
    written (the commit before the first hop writes it). A run whose record is written already
    (a resumed one) keeps what it has."""
    for row in buffer.flows:
        if row[0] == correlation_id and row[8] is None:
            row[8] = deadline


# -- replay -------------------------------------------------------------------------------------


def history(store, correlation_id: str) -> dict:
    """The recorded steps of a flow run, by step id (what a replaying run skips)."""
    return store.steps_of(correlation_id)


class _Resume:
    __slots__ = ("correlation_id", "attempt")

    def __init__(self, correlation_id: str, attempt: int) -> None:
        self.correlation_id, self.attempt = correlation_id, attempt


@contextmanager
def resuming(correlation_id: str, attempt: int) -> Iterator[None]:
    """While active, the next `Machine.start` in this thread continues the flow run
    `correlation_id` (its recorded steps replay) instead of beginning a new one."""
    previous = getattr(_local, "resume", None), getattr(_local, "resumed", None)
    _local.resume = _Resume(correlation_id, attempt)
    _local.resumed = correlation_id  # in-process hops of this flow replay too
    try:
        yield
    finally:
        _local.resume, _local.resumed = previous


def take_resume():
    """The pending resume of this thread (consumed: only the outermost entry resumes), or None."""
    found = getattr(_local, "resume", None)
    if found is not None:
        _local.resume = None
    return found


@contextmanager
def taken_over() -> Iterator[None]:
    """While active, an inbound hop handled in this thread replays its flow's recorded steps (the
    HTTP server took the hop over from a process that died running it)."""
    _local.takeover = True
    try:
        yield
    finally:
        _local.takeover = False


class answering:
    """While active (a context manager), an inbound hop handled in this thread leaves its
    checkpoints in the buffer for `store` — the HTTP server commits them in one transaction with
    the hop's answer, before the answer leaves (`Buffer.commit(answered=...)`) — and
    `refuse_cancelled` takes the state of flow run `correlation_id` as `state` (None: unknown to
    the store) instead of reading it: the server read it with the hop's claim. (A class, not a
    generator: it runs once per hop on the server's hot path.)"""

    __slots__ = ("store", "known", "previous")

    def __init__(self, store, correlation_id: str, state: str | None) -> None:
        self.store, self.known = store, (correlation_id, state)

    def __enter__(self) -> None:
        self.previous = getattr(_local, "known_state", None)
        _local.answering, _local.known_state = self.store, self.known

    def __exit__(self, *exc) -> None:
        _local.answering, _local.known_state = None, self.previous


def defers_commit(store) -> bool:
    """Whether the end of an inbound hop on `store` leaves its commit to the server (answering)."""
    return getattr(_local, "answering", None) is store


def replay_segment(correlation_id: str, attempt: int) -> bool:
    """Whether an inbound hop of flow run `correlation_id` may have recorded steps to replay: the
    flow was resumed (a later attempt, or resumed in this thread: in-process hops), or the HTTP
    server took the hop over. False for a fresh flow's hops, which load nothing."""
    return (
        attempt > 0
        or getattr(_local, "takeover", False)
        or getattr(_local, "resumed", None) == correlation_id
    )


# -- hop keys -----------------------------------------------------------------------------------

_AT_OK = re.compile(r"^[A-Za-z0-9_\-]{1,80}$")


def hop_key(correlation_id: str, attempt: int, at: str) -> str:
    """The idempotency key of the hop of flow run `correlation_id` (resume attempt `attempt`) that
    starts at step `at`: the same every time that hop is sent in that attempt (a step runs once per
    flow run, so `at` names the hop). Fits `[A-Za-z0-9._-]{16,128}`."""
    if not _AT_OK.match(at):
        at = hashlib.sha256(at.encode()).hexdigest()[:32]
    return f"{correlation_id}.{attempt}.{at}"


def attempt_of(key: str, correlation_id: str) -> int:
    """The resume attempt a hop key was made in (0 for keys not made by `hop_key`)."""
    if key.startswith(correlation_id + "."):
        number = key[len(correlation_id) + 1 :].partition(".")[0]
        if number.isdigit():
            return int(number)
    return 0


# -- what step code sees -------------------------------------------------------------------------


def step_key() -> str:
    """`"<correlation id>:<step id>"` of the step running in this thread: the same every time that
    step runs in that flow run (also when it runs again after a crash or on `sl2s flows resume`),
    so step code can make its own effects idempotent with it (a payment's idempotency key, a
    unique constraint). Raises RuntimeError outside a step."""
    current = logcapture.current_step(sys._getframe(1))
    if current is None:
        raise RuntimeError("sl2s.runtime.step_key() called outside a running step")
    run, step = current
    return f"{run.correlation_id}:{step.id}"


# -- process identity (who runs a hop, for takeover) ---------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces: count fields after the last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) <= 19 or fields[0] in (b"Z", b"X"):
        return None  # gone, or a zombie: dead, only not yet reaped
    return fields[19].decode()


_HOST = socket.gethostname()
_owner: list[str] = []


def owner() -> str:
    """This process as a hop record's owner: `host:pid:start-time` (start time from /proc, so a
    reused pid is not mistaken for the process that died)."""
    pid = os.getpid()
    if not _owner or _owner[0].split(":")[1] != str(pid):
        _owner[:] = [f"{_HOST}:{pid}:{_start_time(pid) or '0'}"]
    return _owner[0]


LEASE_SECONDS = float(os.environ.get("SL2S_HOP_LEASE", "300"))


def owner_gone(recorded: str, created: float, now: float) -> bool:
    """Whether the process that recorded a running hop is gone: on this host, its pid is not
    running or was reused (another start time); on another host, its lease (SL2S_HOP_LEASE
    seconds, default 300, from when the hop began) has passed."""
    parts = recorded.rsplit(":", 2)
    if len(parts) != 3:
        return now - created > LEASE_SECONDS
    host, pid, started = parts
    if host != _HOST:
        return now - created > LEASE_SECONDS
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return started != owner().rsplit(":", 1)[1]
    found = _start_time(int(pid))
    return found is None or found != started


# -- a flow run's state ----------------------------------------------------------------------------


def refuse_cancelled(store, correlation_id: str) -> None:
    """Raise WiringError when the flow run was cancelled (`sl2s flows cancel`): its further hops
    are refused. Unknown flows (recorded in another store) pass."""
    from sl2s.runtime.errors import WiringError

    known = getattr(_local, "known_state", None)
    if known is not None and known[0] == correlation_id:
        state = known[1]
    else:
        found = store.flow(correlation_id)
        state = None if found is None else found.state
    if state == "cancelled":
        raise WiringError(
            f"flow run {correlation_id} was cancelled (sl2s flows cancel); its hops are refused"
        )


def ending(store, correlation_id: str, error: BaseException | None) -> tuple:
    """The `ended` entry of a flow run's commit: completed, or failed with its (masked) failure —
    or still cancelled, when it failed because it was cancelled meanwhile (`sl2s flows cancel`:
    a machine refused its next hop). Only a failing entry reads its flow's state."""
    if error is None:
        return (correlation_id, "completed", None, time.time())
    to_dict = getattr(error, "to_dict", None)
    data = to_dict() if to_dict is not None else {"type": type(error).__name__}
    try:
        found = store.flow(correlation_id)
    except Exception:  # noqa: BLE001 - the commit that follows reports a broken store
        found = None
    state = (
        "cancelled" if found is not None and found.state == "cancelled" else "failed"
    )
    return (correlation_id, state, data, time.time())


def complain(message: str) -> None:
    """A store problem met while a run is failing anyway: said on stderr, never raised over it."""
    try:
        sys.stderr.write(f"sl2s: {message}\n")
    except Exception:  # noqa: BLE001
        pass
