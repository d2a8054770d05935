"""The flow store on PostgreSQL (psycopg 3), for machines on several hosts or with replicas.

psycopg is imported when a `postgresql://` URL is opened, not before: the embedded default needs
nothing beyond the standard library (`pip install 'sl2s[postgres]'` adds it).

- Autocommit is off; every method runs in one explicit transaction, committed before it returns,
  at PostgreSQL's default isolation (READ COMMITTED). `hop_begin`'s `INSERT ... ON CONFLICT DO
  NOTHING` waits for a concurrent insert of the same key to commit or roll back, and the `SELECT`
  that follows (a new statement, so a new snapshot) sees the winner's row: insert-or-get is
  atomic across processes and hosts.
- Connections come from a small pool (`pool_size`, default 8) shared by the process's threads
  rather than one per thread: a machine's hop server may run 64 worker threads, and a
  connection per thread on every machine and replica would exceed PostgreSQL's default
  `max_connections` (100). Each method holds a connection only for its own transaction (well
  under a millisecond on a local network), so a few connections serve many threads; taking one
  from the pool costs a lock and a list pop (see bench/bench_store.py).
- A connection that broke (the server restarted, the network dropped) is discarded together
  with the idle ones, which likely broke too; the method raises `StoreError` and the next call
  connects afresh. Nothing is retried here: whether a lost commit happened is for the caller to
  find out (`hop_get`, `steps_of`).
- The hop server's two calls per hop are one round trip each (autocommit, one statement):
  `hop_claim` (the claim, committed without waiting for the WAL flush, and the flow's state) and
  `commit` of a segment's steps with its answer(s) (data-modifying CTEs, `schema.pg_answer_commit`;
  a synchronous commit, as every commit that precedes an acknowledgement). Other commits keep a
  transaction of several statements.
- Schema creation takes a transaction-scoped advisory lock, so processes starting at the same
  time do not race on `CREATE TABLE IF NOT EXISTS` (which is not atomic in PostgreSQL).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

from sl2s.runtime.store.base import SqlStore, _hop, _json, _step_row
from sl2s.runtime.store.records import FLOW_RETENTION, HOP_RETENTION, StoreError, redact
from sl2s.runtime.store.schema import PG_HOP_CLAIM, pg_answer_commit

POOL_SIZE = 8
CONNECT_TIMEOUT = 10  # seconds
SCHEMA_LOCK = 0x51253  # advisory lock key that serialises schema creation


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "the PostgreSQL store needs psycopg 3: pip install 'sl2s[postgres]'"
            " (or choose a sqlite: store)"
        ) from None
    return psycopg


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _rollback(conn) -> None:
    """Roll back what failed, if the connection still can (a broken one is discarded anyway)."""
    if not (conn.broken or conn.closed):
        try:
            conn.rollback()
        except Exception:  # the connection broke while rolling back: _give drops it
            pass


class PostgresStore(SqlStore):
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        connect_timeout: int = CONNECT_TIMEOUT,
        hop_retention: float = HOP_RETENTION,
        flow_retention: float = FLOW_RETENTION,
    ) -> None:
        self._pg = _psycopg()
        self._conninfo = url
        self.url = redact(url)
        super().__init__(hop_retention, flow_retention)
        self.pool_size = max(1, int(pool_size))
        self.connect_timeout = connect_timeout
        self._cond = threading.Condition()
        self._idle: list = []
        self._open = 0
        self._pid = os.getpid()
        self._closed = False
        try:
            self._create_schema()
        except BaseException:
            self.close()
            raise

    # -- the pool -----------------------------------------------------------------------------

    def _take(self):
        with self._cond:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._idle, self._open, self._pid = [], 0, os.getpid()
            while True:
                if self._closed:
                    raise StoreError(f"store {self.url} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self.pool_size:
                    self._open += 1
                    break
                self._cond.wait()
        try:
            return self._pg.connect(
                self._conninfo, autocommit=False, connect_timeout=self.connect_timeout
            )
        except Exception as error:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise StoreError(
                f"cannot reach the store {self.url}: {_first_line(error)}"
            ) from None

    def _give(self, conn, broken: bool) -> None:
        stale = []
        with self._cond:
            if broken or self._closed or conn.closed:
                self._open -= 1
                stale.append(conn)
                if broken:  # the others were probably cut by the same cause
                    stale.extend(self._idle)
                    self._open -= len(self._idle)
                    self._idle = []
            else:
                self._idle.append(conn)
            self._cond.notify_all()
        for old in stale:
            old.close()

    @contextmanager
    def _transaction(self):
        conn = self._take()
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except self._pg.OperationalError as error:
            _rollback(conn)
            raise StoreError(f"store {self.url}: {_first_line(error)}") from None
        except BaseException:
            _rollback(conn)
            raise
        finally:
            self._give(conn, conn.broken or conn.closed)

    _write = _transaction
    _read = _transaction

    def commit(
        self, flows=(), steps=(), ended=(), answered=None, answers=(), claims=()
    ):
        """`SqlStore.commit`; a hop server's commit (steps and answers, no flow inserted or
        ended) as one statement in one round trip (`schema.pg_answer_commit`) instead of a
        transaction of five (BEGIN, steps, positions, answers, COMMIT)."""
        if answered is not None:
            answers = [answered, *answers]
        if flows or ended or claims or not answers:
            return super().commit(
                flows=flows, steps=steps, ended=ended, answers=answers, claims=claims
            )
        rows = [_step_row(x) if not isinstance(x, tuple) else x for x in steps]
        last: dict[str, tuple] = {}
        for row in rows:
            last[row[0]] = (
                row[1],
                row[6],
                row[0],
            )  # position, progressed, correlation id
        keys = {answer[0] for answer in answers}
        params = [value for row in rows for value in row]
        params.extend(value for move in last.values() for value in move)
        for key, status, headers, body, _now in answers:
            params.extend((status, _json(headers), body, key))
        params.append(len(keys))
        sql = pg_answer_commit(len(rows), len(last), len(answers))
        conn = self._take()
        try:
            conn.autocommit = True
            try:
                conn.execute(sql, params)
            finally:
                if not (conn.broken or conn.closed):
                    conn.autocommit = False
        except self._pg.errors.DivisionByZero:
            raise StoreError(
                f"hop {', '.join(sorted(keys))}: no such hop in {self.url} (expired?)"
            ) from None
        except self._pg.OperationalError as error:
            raise StoreError(f"store {self.url}: {_first_line(error)}") from None
        finally:
            self._give(conn, conn.broken or conn.closed)
        return []

    def hop_claim(self, rec):
        """`SqlStore.hop_claim` in one statement and one round trip (autocommit), committed
        without waiting for the WAL flush (`synchronous_commit` off for this transaction only):
        the claim is visible to every other session at once; only a crash of PostgreSQL itself
        could lose it, and then it is as if it had never been made — the answer that follows is
        committed synchronously and after it in the WAL, so no acknowledged answer depends on a
        claim that was lost (docs/durability.md)."""
        row = self._hop_row(rec)
        conn = self._take()
        try:
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        PG_HOP_CLAIM, (*row, rec.correlation_id, rec.key), prepare=True
                    )
                    found = cur.fetchone()
            finally:
                if not (conn.broken or conn.closed):
                    conn.autocommit = False
        except self._pg.OperationalError as error:
            raise StoreError(f"store {self.url}: {_first_line(error)}") from None
        finally:
            self._give(conn, conn.broken or conn.closed)
        inserted, state = found[0], found[1]
        if inserted:
            return None, state
        if (
            found[2] is None
        ):  # the winner committed after this statement began: read it now
            got = self.hop_get(rec.key)
            return (got, state) if got is not None else self.hop_claim(rec)
        return _hop(found[2:]), state

    def _lock_schema(self, cur) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))

    def close(self) -> None:
        """Close the idle connections now and the busy ones when they come back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            conn.close()
