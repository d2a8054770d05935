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
- `busy_timeout`: a writer waits for another process's write transaction (they are short) instead
  of failing at once with "database is locked".
- Every write starts with `BEGIN IMMEDIATE`, taking the write lock up front: two processes never
  both read-then-write (which SQLite could only resolve by failing one of them), and an
  insert-or-get (`hop_begin`) is atomic across processes.
- One connection per thread (`threading.local`): a sqlite3 connection is not for concurrent use,
  and a connection per thread needs no lock on the hot path. Connections of threads that ended are
  closed when the next one is opened, so their number follows the live threads.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from sl2s.runtime.store import FLOW_RETENTION, HOP_RETENTION, StoreError
from sl2s.runtime.store.base import SqlStore

BUSY_TIMEOUT = 10.0  # seconds a writer waits for another process's transaction


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
        self._conns: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
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
        conn = getattr(self._local, "conn", None)
        if conn is not None and not self._closed and self._pid == os.getpid():
            return conn
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self.url} is closed")
        with self._lock:
            if (
                self._pid != os.getpid()
            ):  # a forked child: never use the parent's connections
                self._forked.extend(conn for _, conn in self._conns.values())
                self._conns.clear()
                self._pid = os.getpid()
            for ident, (thread, old) in list(self._conns.items()):
                if not thread.is_alive():
                    old.close()
                    del self._conns[ident]
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # no implicit transactions: this module says BEGIN/COMMIT
                check_same_thread=False,  # only so that close() may close it from any thread
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as error:
            raise StoreError(f"store {self.url}: cannot open it: {error}") from None
        self._local.conn = conn
        with self._lock:
            self._conns[threading.get_ident()] = (threading.current_thread(), conn)
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

    @contextmanager
    def _write(self):
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise StoreError(f"store {self.url}: {error}") from None
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
        for conn in conns:
            conn.close()
