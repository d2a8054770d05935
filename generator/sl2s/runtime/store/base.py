"""What both backends do, in SQL: the `FlowStore` methods over a DB-API cursor.

A backend supplies two context managers: `_write()` yields a cursor inside a transaction that
holds the right to write (committed when the block ends, rolled back if it raises) and `_read()` a
cursor for reads; plus its `dialect`. Everything else — the statements, JSON encoding, records —
is here, so that SQLite and PostgreSQL behave the same and are tested by the same tests.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager

import orjson

from sl2s.runtime.store.records import (
    ENDED_STATES,
    FLOW_RETENTION,
    FLOW_STATES,
    HOP_RETENTION,
    AmbiguousPrefix,
    FlowRecord,
    HopRecord,
    StepRecord,
    StoreError,
    check_masked,
)
from sl2s.runtime.store.schema import (
    FLOW_COLUMNS,
    SCHEMA_VERSION,
    SQLITE_ROWS_MAX,
    STEP_ROWS_MAX,
    ddl,
    sqlite_many,
    statements,
    step_insert_rows,
)

EXPIRE_BATCH = (
    5000  # rows deleted per transaction, so expiry never holds the write lock long
)
PREFIX_MIN = 6


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _load(text: str | None):
    return None if text is None else orjson.loads(text)


def _flow(row) -> FlowRecord:
    return FlowRecord(
        correlation_id=row[0],
        system=row[1],
        flow=row[2],
        machine=row[3],
        state=row[4],
        context=orjson.loads(row[5]),
        secrets=tuple(orjson.loads(row[6])),
        position=row[7],
        error=_load(row[8]),
        deadline=row[9],
        created=row[10],
        updated=row[11] if row[12] is None else max(row[11], row[12]),
        attempt=row[13],
    )


def _step(row) -> StepRecord:
    return StepRecord(
        correlation_id=row[0],
        step=row[1],
        machine=row[2],
        outcome=orjson.loads(row[3]),
        replayable=bool(row[4]),
        event_id=row[5],
        completed=row[6],
    )


def _hop(row) -> HopRecord:
    body = row[9]
    return HopRecord(
        key=row[0],
        digest=row[1],
        correlation_id=row[2],
        flow=row[3],
        target=row[4],
        at=row[5],
        state=row[6],
        status=row[7],
        headers=orjson.loads(row[8]),
        body=None if body is None else bytes(body),
        created=row[10],
        owner=row[11],
    )


def _flow_row(rec: FlowRecord) -> tuple:
    _check_state(rec.state)
    check_masked(rec)
    return (
        rec.correlation_id, rec.system, rec.flow, rec.machine, rec.state,
        _json(rec.context), _json(list(rec.secrets)), rec.position,
        None if rec.error is None else _json(rec.error), rec.deadline, rec.created,
        rec.updated, None, rec.attempt,
    )  # fmt: skip


def _step_row(r: StepRecord) -> tuple:
    return (
        r.correlation_id, r.step, r.machine, _json(r.outcome), r.replayable, r.event_id,
        r.completed,
    )  # fmt: skip


def _many(cur, sql: str, rows: list) -> None:
    """executemany, or execute for one row (psycopg's executemany costs a pipeline round)."""
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    elif rows:
        cur.executemany(sql, rows)


def _padded(rows: list[tuple]) -> list[tuple]:
    """SQLite: `rows` padded to a power of two by repeating the last one, so that a multi-row
    statement has one of 9 sizes (1, 2, 4 ... 256) instead of any: every size is a statement
    that the connection prepares and keeps (~50 KiB for 64 rows), and a soak that met every
    batch size grew each process by ~13 MiB. A repeated row changes nothing: the INSERTs
    ignore a conflicting row, and an `UPDATE ... FROM (VALUES ...)` updates a row once.
    """
    count = len(rows)
    size = 1 << (count - 1).bit_length()
    return rows if size == count else rows + [rows[-1]] * (size - count)


def _check_state(state: str) -> None:
    if state not in FLOW_STATES:
        raise ValueError(
            f"unknown flow state {state!r}: expected one of {', '.join(FLOW_STATES)}"
        )


class SqlStore(ABC):
    """The shared implementation; see `sl2s.runtime.store.FlowStore` for the contract."""

    dialect: str
    url: str

    def __init__(
        self,
        hop_retention: float = HOP_RETENTION,
        flow_retention: float = FLOW_RETENTION,
    ) -> None:
        self.hop_retention = hop_retention
        self.flow_retention = flow_retention
        self._sql = statements(self.dialect)

    # -- what a backend supplies --------------------------------------------------------------

    @abstractmethod
    def _write(self) -> AbstractContextManager:
        """A cursor inside a write transaction, committed when the block ends without error."""

    @abstractmethod
    def _read(self) -> AbstractContextManager:
        """A cursor for reads."""

    def _create_schema(self) -> None:
        """Create the tables if missing and check the version; callers serialise it."""
        with self._write() as cur:
            self._lock_schema(cur)
            for statement in ddl(self.dialect):
                cur.execute(statement)
            cur.execute(self._sql["version_insert"], (str(SCHEMA_VERSION),))
            cur.execute(self._sql["version_get"])
            found = int(cur.fetchone()[0])
            if (
                found < SCHEMA_VERSION
            ):  # an older store, which `ddl` just brought up to date
                cur.execute(self._sql["version_set"], (str(SCHEMA_VERSION),))
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.url} has schema version {found}; this sl2s knows version"
                f" {SCHEMA_VERSION} and older: upgrade sl2s"
            )

    def _lock_schema(self, cur) -> None:  # noqa: B027  (a hook: PostgreSQL's locks)
        """Serialise schema creation across processes (SQLite: the write lock already does)."""

    # -- flows --------------------------------------------------------------------------------

    def flow_started(self, rec: FlowRecord) -> None:
        """Insert the flow run; a no-op if it exists (a resume)."""
        row = _flow_row(rec)
        with self._write() as cur:
            cur.execute(self._sql["flow_insert"], row)

    def flow_ended(
        self, correlation_id: str, state: str, error: dict | None, now: float
    ) -> None:
        _check_state(state)
        text = None if error is None else _json(error)
        with self._write() as cur:
            cur.execute(self._sql["flow_end"], (state, text, now, correlation_id))

    def set_state(self, correlation_id: str, state: str, now: float) -> bool:
        _check_state(state)
        with self._write() as cur:
            cur.execute(self._sql["flow_state"], (state, now, correlation_id))
            return cur.rowcount == 1

    def flow_resumed(self, correlation_id: str, now: float) -> FlowRecord | None:
        """In one transaction: state back to pending, `attempt` + 1, error cleared; returns the
        record as it is now (None for an unknown id; full ids only)."""
        with self._write() as cur:
            cur.execute(self._sql["flow_resume"], (now, correlation_id))
            if cur.rowcount != 1:
                return None
            cur.execute(self._sql["flow_get"], (correlation_id,))
            row = cur.fetchone()
        return _flow(row)

    def commit(
        self,
        flows: Sequence[FlowRecord] = (),
        steps: Sequence[StepRecord | tuple] = (),
        ended: Sequence[tuple[str, str, dict | None, float]] = (),
        answered: tuple[str, int, dict[str, str], bytes, float] | None = None,
        answers: Sequence[tuple[str, int, dict[str, str], bytes, float]] = (),
        claims: Sequence[HopRecord] = (),
    ) -> list[tuple[HopRecord | None, str | None]]:
        """The runtime's group commit, in ONE transaction: claim each hop of `claims` (as
        `hop_claim`; their results are returned, in order); insert each flow (a no-op if it
        exists); record each step (a StepRecord, or the tuple `(correlation_id, step, machine,
        outcome_json, replayable, event_id, completed)` with the outcome already JSON text);
        move each flow's position to its last step in `steps`; store hops' answers
        (`answered = (key, status, headers, body, now)`, as `hop_finish`, and each of `answers`:
        a server's concurrent hops answered in one commit); then end flows
        (`(correlation_id, state, error, now)`, as `flow_ended`). Empty: nothing happens.
        """
        if answered is not None:
            answers = [answered, *answers]
        if not (flows or steps or ended or answers or claims):
            return []
        flow_rows = [_flow_row(rec) for rec in flows]
        step_rows = [
            _step_row(s) if isinstance(s, StepRecord) else tuple(s) for s in steps
        ]
        last: dict[str, tuple] = {}
        for row in step_rows:
            last[row[0]] = (
                row[1],
                row[6],
                row[0],
            )  # position, progressed, correlation id
        end_rows = []
        for cid, state, error, now in ended:
            _check_state(state)
            end_rows.append((state, None if error is None else _json(error), now, cid))
        many = self._rows
        claimed = []
        with self._write() as cur:
            for rec in claims:
                claimed.append(self._claim(cur, rec))
            if flow_rows:
                many(cur, "flow_insert", flow_rows)
            self._insert_steps(cur, step_rows)
            if last:
                many(cur, "flow_position", list(last.values()))
            if answers:
                self._answer_all(cur, answers)
            if end_rows:
                # one end per flow (the last), as applying them in order would leave it
                many(cur, "flow_end", list({row[3]: row for row in end_rows}.values()))
        return claimed

    def _rows(self, cur, kind: str, rows: list[tuple]) -> int:
        """Run statement `kind` for `rows`; returns the rows it changed (-1: not counted).
        SQLite: multi-row statements (`schema.sqlite_many`); PostgreSQL: `executemany`.
        """
        if len(rows) == 1:
            cur.execute(self._sql[kind], rows[0])
            return cur.rowcount
        if self.dialect != "sqlite":
            cur.executemany(self._sql[kind], rows)  # one pipeline
            return -1
        total = 0
        for start in range(0, len(rows), SQLITE_ROWS_MAX):
            chunk = _padded(rows[start : start + SQLITE_ROWS_MAX])
            cur.execute(
                sqlite_many(kind, len(chunk[0]), len(chunk)),
                [value for row in chunk for value in row],
            )
            total += cur.rowcount
        return total

    def flow(self, correlation_id: str) -> FlowRecord | None:
        """By full correlation id, else by a unique prefix of at least 6 characters, else by a
        unique suffix of at least 6 (`AmbiguousPrefix` when several flows match). A correlation
        id begins with the time its run began and ends with random digits, so flows started
        together share their first characters and are told apart by their last: a prefix is a
        key range, a suffix a scan of the flows (for the command line, not the hot path).
        """
        with self._read() as cur:
            cur.execute(self._sql["flow_get"], (correlation_id,))
            row = cur.fetchone()
            if row is not None or len(correlation_id) < PREFIX_MIN:
                return None if row is None else _flow(row)
            upper = correlation_id[:-1] + chr(ord(correlation_id[-1]) + 1)
            cur.execute(self._sql["flow_prefix"], (correlation_id, upper))
            rows, where = cur.fetchall(), "start"
            if not rows and correlation_id.isalnum():  # (no LIKE wildcard in it)
                cur.execute(self._sql["flow_suffix"], ("%" + correlation_id,))
                rows, where = cur.fetchall(), "end"
        if len(rows) > 1:
            shown = ", ".join(r[0] for r in rows[:5])
            raise AmbiguousPrefix(
                f"{correlation_id!r} is the {where} of several flows ({shown}"
                f"{', ...' if len(rows) > 5 else ''}): give more of the id"
                + (", or its last 6 or more characters" if where == "start" else "")
            )
        return _flow(rows[0]) if rows else None

    def flows(
        self,
        *,
        state: str | None = None,
        flow: str | None = None,
        machine: str | None = None,
        older_than: float | None = None,
        limit: int = 100,
    ) -> list[FlowRecord]:
        """Newest first (by the last change of state, or the start). `older_than` is an epoch
        time: only flows not updated since (no change of state nor step checkpoint), e.g.
        `time.time() - 600` for "no progress for ten minutes"."""
        where: list[str] = []
        args: list[object] = []
        if state is not None:
            _check_state(state)
            where.append("state = ?")
            args.append(state)
        if flow is not None:
            where.append("flow = ?")
            args.append(flow)
        if machine is not None:
            where.append("machine = ?")
            args.append(machine)
        if older_than is not None:
            where.append("updated < ? AND (progressed IS NULL OR progressed < ?)")
            args.extend((older_than, older_than))
        sql = f"SELECT {FLOW_COLUMNS} FROM sl2s_flows"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated DESC LIMIT ?"
        args.append(int(limit))
        if self.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        with self._read() as cur:
            cur.execute(sql, args)
            return [_flow(row) for row in cur.fetchall()]

    # -- step checkpoints ---------------------------------------------------------------------

    def steps_done(
        self,
        records: Sequence[StepRecord],
        position: tuple[str, str] | Sequence[tuple[str, str]] | None,
    ) -> None:
        """Record a batch of completed steps and the flow's position in one transaction (a group
        commit). `position` is (correlation id, step), or a list of them when the batch spans
        several flows. A step already recorded keeps its first outcome: that is the one resume
        replays."""
        if not records and not position:
            return
        with self._write() as cur:
            self._checkpoint(cur, records, position)

    def _checkpoint(self, cur, records: Sequence[StepRecord], position) -> None:
        self._insert_steps(cur, [_step_row(r) for r in records])
        if not position:
            return
        positions = [position] if isinstance(position[0], str) else list(position)
        now = max((r.completed for r in records), default=time.time())
        moves = [(step, now, cid) for cid, step in positions]
        _many(cur, self._sql["flow_position"], moves)

    def _insert_steps(self, cur, rows: list[tuple]) -> None:
        """Multi-row INSERTs: one statement per `STEP_ROWS_MAX[dialect]` steps."""
        size = STEP_ROWS_MAX[self.dialect]
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            if self.dialect == "sqlite":
                chunk = _padded(chunk)
            params = [value for row in chunk for value in row]
            cur.execute(step_insert_rows(self.dialect, len(chunk)), params)

    def steps_of(self, correlation_id: str) -> dict[str, StepRecord]:
        with self._read() as cur:
            cur.execute(self._sql["steps_of"], (correlation_id,))
            return {row[1]: _step(row) for row in cur.fetchall()}

    # -- hops ---------------------------------------------------------------------------------

    def hop_begin(self, rec: HopRecord) -> HopRecord | None:
        """Insert `rec` as running and return None, or return the record already there — one
        transaction, so two processes given the same key never both run the hop."""
        row = (
            rec.key, rec.digest, rec.correlation_id, rec.flow, rec.target, rec.at, "running",
            0, _json(rec.headers), None, rec.created, rec.owner,
            rec.created + self.hop_retention,
        )  # fmt: skip
        with self._write() as cur:
            cur.execute(self._sql["hop_insert"], row)
            if cur.rowcount == 1:
                return None
            cur.execute(self._sql["hop_get"], (rec.key,))
            found = cur.fetchone()
        if found is None:  # cannot happen inside one transaction; say so if it does
            raise StoreError(f"hop {rec.key}: neither inserted nor found in {self.url}")
        return _hop(found)

    def hop_finish(
        self,
        key: str,
        status: int,
        headers: dict[str, str],
        body: bytes,
        now: float,
        *,
        steps: Sequence[StepRecord] = (),
        position: tuple[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Store the answer. It is kept until `hop_retention` seconds after the hop began (set
        then, so that answering moves no index entry); `now` is accepted for the record's sake.
        `steps` and `position`, as in `steps_done`, commit in the same transaction: the segment's
        checkpoints and its answer become durable together, for the price of one commit.
        """
        with self._write() as cur:
            self._answer(cur, key, status, headers, body, now)
            if steps or position:
                self._checkpoint(cur, steps, position)

    def _answer_all(self, cur, answers: Sequence[tuple]) -> None:
        """Store several answers; StoreError (the transaction rolls back) if a key is unknown."""
        if len(answers) == 1 or self.dialect != "sqlite":
            for answer in answers:
                self._answer(cur, *answer)
            return
        rows = {key: (status, _json(headers), body, key)
                for key, status, headers, body, _now in answers}  # fmt: skip
        if self._rows(cur, "hop_finish", list(rows.values())) != len(rows):
            for key in rows:  # which one: say it as `_answer` would
                cur.execute(self._sql["hop_get"], (key,))
                if cur.fetchone() is None:
                    raise StoreError(f"hop {key}: no such hop in {self.url} (expired?)")
            raise StoreError(f"hops {', '.join(rows)}: not all found in {self.url}")

    def _answer(self, cur, key, status, headers, body, now) -> None:
        cur.execute(self._sql["hop_finish"], (status, _json(headers), body, key))
        if cur.rowcount != 1:
            raise StoreError(f"hop {key}: no such hop in {self.url} (expired?)")

    def hop_claim(self, rec: HopRecord) -> tuple[HopRecord | None, str | None]:
        """`hop_begin` and the flow's state in one go: `(None, state)` when `rec` was inserted
        (the caller runs the hop), else `(the record already there, state)`; `state` is the
        flow run's state (None for a flow this store does not know). The hop server needs both
        before it runs a segment (a cancelled flow's hops are refused): one transaction — on
        PostgreSQL one round trip — instead of a write and a read."""
        with self._write() as cur:
            return self._claim(cur, rec)

    def _claim(self, cur, rec: HopRecord) -> tuple[HopRecord | None, str | None]:
        cur.execute(self._sql["hop_insert"], self._hop_row(rec))
        if cur.rowcount == 1:
            cur.execute(self._sql["flow_state_get"], (rec.correlation_id,))
            found = cur.fetchone()
            return None, None if found is None else found[0]
        cur.execute(self._sql["hop_claim_get"], (rec.correlation_id, rec.key))
        found = cur.fetchone()
        if found is None or found[1] is None:  # cannot happen inside one transaction
            raise StoreError(f"hop {rec.key}: neither inserted nor found in {self.url}")
        return _hop(found[1:]), found[0]

    def _hop_row(self, rec: HopRecord) -> tuple:
        return (
            rec.key, rec.digest, rec.correlation_id, rec.flow, rec.target, rec.at, "running",
            0, _json(rec.headers), None, rec.created, rec.owner,
            rec.created + self.hop_retention,
        )  # fmt: skip

    def hop_get(self, key: str) -> HopRecord | None:
        with self._read() as cur:
            cur.execute(self._sql["hop_get"], (key,))
            row = cur.fetchone()
        return None if row is None else _hop(row)

    def hop_takeover(self, key: str, owner: str, stale_owner: str) -> bool:
        """Claim a running hop whose owner is `stale_owner` (a process that is gone). True for
        exactly one of several claimants."""
        with self._write() as cur:
            cur.execute(self._sql["hop_takeover"], (owner, key, stale_owner))
            return cur.rowcount == 1

    def hops_of(self, correlation_id: str) -> list[HopRecord]:
        """The hops of flow run `correlation_id`, oldest first."""
        with self._read() as cur:
            cur.execute(
                self._sql["hops_of"],
                (
                    correlation_id + ".",
                    correlation_id + "/",
                    correlation_id,
                    correlation_id,
                ),
            )
            hops = [_hop(row) for row in cur.fetchall()]
        return sorted(hops, key=lambda hop: hop.created)

    def nonce_seen(self, nonce: str, expires: float) -> bool:
        """True if `nonce` was seen before (a replay); otherwise remember it until `expires`."""
        with self._write() as cur:
            cur.execute(self._sql["nonce_insert"], (nonce, expires))
            return cur.rowcount == 0

    # -- housekeeping -------------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """Delete hops and nonces past retention, and completed or cancelled flows (with their
        steps) last updated more than `flow_retention` ago. Each deletion walks an index from its
        oldest entry and stops at `now`: the cost is the rows deleted, not the history kept.
        Returns how many rows went."""
        total = 0
        for name in ("hops_expire", "nonces_expire"):
            while True:
                with self._write() as cur:
                    cur.execute(self._sql[name], (now, EXPIRE_BATCH))
                    count = cur.rowcount
                total += max(count, 0)
                if count < EXPIRE_BATCH:
                    break
        return total + self.prune(now - self.flow_retention, ENDED_STATES)

    def prune(self, before: float, states: Sequence[str] = ENDED_STATES) -> int:
        """Delete flows in `states` last updated before `before`, with their steps (for
        `sl2s flows prune`). Returns how many flows went."""
        total = 0
        for state in states:
            _check_state(state)
            while True:
                with self._write() as cur:
                    cur.execute(self._sql["flows_ended"], (state, before, EXPIRE_BATCH))
                    ids = [(row[0],) for row in cur.fetchall()]
                    if ids:
                        cur.executemany(self._sql["steps_delete"], ids)
                        cur.executemany(self._sql["flow_delete"], ids)
                total += len(ids)
                if len(ids) < EXPIRE_BATCH:
                    break
        return total

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Close every connection; the store cannot be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
