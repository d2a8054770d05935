"""The embedded flow store: one SQLite file (stdlib `sqlite3`), shared by every machine process.

Settings, and why:

- `journal_mode=WAL`: readers never block the writer nor it them, and several processes (the
  machines of one `sl2s up`) can open the same file; SQLite coordinates them with file locks and
  the `-shm` index beside the file (so the file must be on a local disk, not a network share).
- `synchronous=NORMAL`: a commit is written to the WAL file but not fsync'ed; the WAL is synced at
  each checkpoint. A committed transaction therefore **survives a crash of the process** (kill -9,
  an exception, an OOM kill: the operating system still has the bytes), but **a power loss or a
  kernel crash may lose the last transactions** before the latest checkpoint — never corrupt the
  file. That is the trade the embedded default makes: a commit costs microseconds instead of an
  fsync. Use the PostgreSQL store (or `SL2S_STORE` on a disk you trust) where losing the last
  moments of work at a power cut matters.
- Every write starts with `BEGIN IMMEDIATE`, taking the write lock up front: two processes never
  both read-then-write (which SQLite could only resolve by failing one of them), and an
  insert-or-get (`hop_begin`) is atomic across processes.
- A writer waits for another process's write transaction (they are short) instead of failing at
  once with "database is locked" — in a loop of its own around `BEGIN IMMEDIATE`, sleeping 50 µs
  doubling to 2 ms, up to `busy_timeout` (10 s). SQLite's own busy handler sleeps 1, 2, 5, 10,
  15 ms … between tries: with the machines of one `sl2s up` writing the same file, a writer
  waited ~7 ms for transactions that last ~0.1 ms (bench/bench_durable.py, the login flow).
  Reads keep SQLite's busy handler (a read waits only while a crashed process's WAL is recovered).
- `wal_autocheckpoint=0`: no commit copies the WAL into the database file (and fsyncs it) on the
  way; a thread of the store does it every `CHECKPOINT_EVERY` seconds when something was written:
  a PASSIVE checkpoint (it blocks nobody), then, once the WAL holds `RESTART_FRAMES` frames, a
  RESTART one, which copies what was written meanwhile and rewinds the WAL (see
  `_checkpoint_forever`). The WAL file therefore holds about
  that long's worth of writes (and is cut back to `WAL_SIZE_LIMIT` when it rewinds); the last
  connection to close checkpoints and removes it.
- One connection per process for writes, taken under a lock (SQLite has one writer at a time
  anyway, and the runtime's group commit already lets one thread of a process write at a time):
  its page cache stays valid from one write to the next (SQLite drops a connection's cache
  whenever another connection wrote meanwhile, so with a connection per thread every write read
  its b-tree pages again: ~9 us per transaction) and its statements stay prepared.
  One connection per thread for reads (`threading.local`): reads are rare on the hot path and a
  sqlite3 connection is not for concurrent use. Read connections of threads that ended are closed
  when the next one is opened, so their number follows the live threads that read.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from sl2s.runtime.store.base import SqlStore
from sl2s.runtime.store.records import FLOW_RETENTION, HOP_RETENTION, StoreError

BUSY_TIMEOUT = 10.0  # seconds a writer waits for another process's transaction
CHECKPOINT_EVERY = (
    0.5  # seconds between two WAL checkpoints (when something was written)
)
RESTART_WAIT = (
    0.1  # seconds the checkpointer's RESTART round waits for writers and readers
)
# frames in the WAL (pages written since it last started again) from which the checkpointer
# rewinds it: the RESTART round blocks writers for its own copy and fsyncs, so not every round
RESTART_FRAMES = 4096
WAL_SIZE_LIMIT = 64 << 20  # bytes the WAL file is cut back to when it starts again
# A writer waiting for another process's transaction (a client and its server on one file, as
# under `sl2s up`) sleeps 50 us, then twice as long each time, at most 200 us: transactions here
# take ~100 us, and at 2 ms the sleeper overslept most of them (in the 32-caller login flow a
# quarter of the BEGINs found the file busy; durable throughput 1,059-1,151 -> 1,182-1,214
# flows/s, three runs each).
_RETRY_FIRST, _RETRY_MAX = 50e-6, 200e-6
# Every thread that reads holds a connection; a hop server has up to 64 worker threads. With
# SQLite's defaults (2 MiB page cache, 128 cached statements, filled by the multi-row INSERTs of
# every batch size) a 5-minute soak grew the server's RSS 208 -> 469 MiB when every thread also had
# its own write connection. The file is hot in the OS cache, so a small page cache per read
# connection costs little; the process's one write connection gets SQLite's default cache and room
# for the multi-row statements of every size (9 per kind: `base._padded`).
CACHED_STATEMENTS = 16
PAGE_CACHE_KIB = 256
WRITE_CACHED_STATEMENTS = 128
WRITE_PAGE_CACHE_KIB = 2048


class SQLiteStore(SqlStore):
    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        hop_retention: float = HOP_RETENTION,
        flow_retention: float = FLOW_RETENTION,
    ) -> None:
        self.path = os.path.abspath(path)
        self.url = "sqlite:///" + self.path.lstrip("/")
        super().__init__(hop_retention, flow_retention)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._wlock = (
            threading.Lock()
        )  # the process's write connection, one writer at a time
        self._wconn_: sqlite3.Connection | None = None
        self._wpid = 0
        self._conns: dict[
            tuple[int, str], tuple[threading.Thread, sqlite3.Connection]
        ] = {}
        self._writes = 0  # transactions committed (the checkpointer's cue)
        self._checkpointer: threading.Thread | None = None
        self._checkpointer_pid = 0
        self._forked: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"store {self.url}: cannot create its directory: {error}"
            ) from None
        try:
            self._create_schema()
        except BaseException:
            self.close()
            raise

    # -- connections --------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection for reads (SQLite's busy handler, `busy_timeout`)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._closed and self._pid == os.getpid():
            return conn
        return self._connect("conn", self.busy_timeout)

    def _wconn(self) -> sqlite3.Connection:
        """The process's connection for writes (no busy handler: `_begin` waits); the caller
        holds `_wlock`."""
        conn = self._wconn_
        if conn is not None and self._wpid == os.getpid() and not self._closed:
            return conn
        if self._closed:
            raise StoreError(f"store {self.url} is closed")
        if conn is not None and self._wpid != os.getpid():
            self._forked.append(
                conn
            )  # a forked child: never use the parent's connection
        try:
            conn = self._open(0, WRITE_CACHED_STATEMENTS, WRITE_PAGE_CACHE_KIB)
        except sqlite3.Error as error:
            raise StoreError(f"store {self.url}: cannot open it: {error}") from None
        self._wconn_, self._wpid = conn, os.getpid()
        return conn

    def _after_fork(self) -> None:
        """In a forked child: a lock and a connection of its own (the parent's lock may have been
        held by a thread that does not exist here; its connection is never used again). A child
        starts with one thread, so no lock guards this (the parent's `_lock` could be held).
        """
        self._wlock = threading.Lock()
        if self._wconn_ is not None:
            self._forked.append(self._wconn_)
        self._wconn_, self._wpid = None, 0

    def _connect(self, slot: str, timeout: float) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.url} is closed")
        with self._lock:
            if (
                self._pid != os.getpid()
            ):  # a forked child: never use the parent's connections
                self._forked.extend(conn for _, conn in self._conns.values())
                self._conns.clear()
                self._pid = os.getpid()
            for key, (thread, old) in list(self._conns.items()):
                if not thread.is_alive():
                    old.close()
                    del self._conns[key]
        try:
            conn = self._open(timeout)
        except sqlite3.Error as error:
            raise StoreError(f"store {self.url}: cannot open it: {error}") from None
        setattr(self._local, slot, conn)
        with self._lock:
            self._conns[(threading.get_ident(), slot)] = (
                threading.current_thread(),
                conn,
            )
        return conn

    def _open(
        self,
        timeout: float,
        statements: int = CACHED_STATEMENTS,
        cache_kib: int = PAGE_CACHE_KIB,
    ) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=timeout,
            isolation_level=None,  # no implicit transactions: this module says BEGIN/COMMIT
            check_same_thread=False,  # the write connection serves every thread (under a lock)
            cached_statements=statements,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._set_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does it
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        # (after the WAL switch, which waits out another process's lock: this needs none)
        conn.execute(f"PRAGMA cache_size = -{cache_kib}")
        return conn

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """WAL is a property of the file; switching a new file to it needs a moment alone with it,
        which another process opening it at the same time can deny (SQLITE_BUSY) — retry.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            if mode.lower() != "wal":
                raise StoreError(
                    f"store {self.url}: SQLite refused WAL mode ({mode}); is the file on a"
                    " network share?"
                )
            return

    def _begin(self, conn: sqlite3.Connection) -> None:
        """`BEGIN IMMEDIATE`, waiting for another process's write in short sleeps."""
        delay, deadline = _RETRY_FIRST, None
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                text = str(error)
                if "locked" not in text and "busy" not in text:
                    raise StoreError(f"store {self.url}: {error}") from None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.busy_timeout
                elif now > deadline:
                    raise StoreError(f"store {self.url}: {error}") from None
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    @contextmanager
    def _write(self):
        if self._wpid and self._wpid != os.getpid():
            self._after_fork()
        if not self._wlock.acquire(timeout=self.busy_timeout):
            raise StoreError(
                f"store {self.url}: another thread of this process held the write lock"
                f" for {self.busy_timeout:g} s"
            )
        try:
            conn = self._wconn()
            if self._checkpointer_pid != self._wpid:
                self._start_checkpointer()
            self._begin(conn)
            try:
                yield conn.cursor()
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"store {self.url}: {error}") from None
            self._writes += 1
        finally:
            self._wlock.release()

    def _start_checkpointer(self) -> None:
        with self._lock:
            if self._checkpointer_pid == os.getpid() or self._closed:
                return
            self._checkpointer_pid = os.getpid()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_forever,
                name="sl2s-store-checkpoint",
                daemon=True,
            )
            self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        """Copy the WAL into the database file every CHECKPOINT_EVERY seconds, when something
        was written, and have it start again from its beginning.

        A PASSIVE checkpoint blocks nobody, but under sustained writes it never catches up: it
        copies the frames there were when it began, more are appended meanwhile, and SQLite
        rewinds the WAL only once every frame has been copied. The WAL then grows without end
        (2.5 GB and a 4.9 MB wal-index in a 100 s soak) and every page lookup searches a longer
        wal-index. So a PASSIVE round copies the bulk without blocking, and once the WAL holds
        RESTART_FRAMES frames a RESTART round right after copies the few frames written
        meanwhile and makes the next writer start the WAL again from its beginning: writers
        wait for that second round only (it gives up after RESTART_WAIT rather than stall them,
        and the next round tries again).
        """
        conn, seen = None, 0
        try:
            while not self._closed:
                time.sleep(CHECKPOINT_EVERY)
                if self._writes == seen or self._closed:
                    continue
                seen = self._writes
                try:
                    if conn is None:
                        conn = self._open(RESTART_WAIT)
                    _, frames, _ = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                    if frames < RESTART_FRAMES:
                        continue
                    # this process's writers wait (rather than race it for SQLite's lock)
                    if self._wlock.acquire(timeout=RESTART_WAIT):
                        try:
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                        finally:
                            self._wlock.release()
                except sqlite3.Error:  # housekeeping: the next round tries again
                    pass
        finally:
            if conn is not None:
                conn.close()

    @contextmanager
    def _read(self):
        conn = self._conn()
        try:
            yield conn.cursor()
        except sqlite3.OperationalError as error:
            raise StoreError(f"store {self.url}: {error}") from None

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            conns = [conn for _, conn in self._conns.values()]
            self._conns.clear()
        with self._wlock:  # after the write under way, if any
            if self._wconn_ is not None and self._wpid == os.getpid():
                conns.append(self._wconn_)
            self._wconn_ = None
        for conn in conns:
            conn.close()
