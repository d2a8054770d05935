"""The one schema of the flow store, shared by SQLite and PostgreSQL, and its statements.

Tables (all prefixed `sl2s_`, so a shared PostgreSQL database stays tidy):

- `sl2s_meta`    key/value; `schema_version` says which schema the file or database holds.
- `sl2s_flows`   one row per flow run, by correlation id.
- `sl2s_steps`   one row per completed step, by (correlation id, step id).
- `sl2s_hops`    one row per inbound hop, by idempotency key; `expires` is when retention ends.
- `sl2s_nonces`  nonces of signed hops already seen, until they expire.

Every lookup the runtime makes on a hot path, and every deletion by age, has an index, so no
operation costs in proportion to history: hops and nonces by `expires` (what `expire` deletes),
hops by correlation id, flows by (state, updated) (listing and retention), by (flow, updated) and
by updated alone (newest first), steps by their primary key, whose first column is the
correlation id.

What changes on the hot path touches as few index pages as it can (an index entry that moves is
more pages for the commit to write, and a commit's cost is mostly its pages): a step checkpoint
moves the flow's `position` and `progressed` (no index), and `updated` changes only with the
flow's state; a hop's answer leaves `expires` (set when the hop began: `created` + retention)
alone. Small-row tables
are clustered on their key in SQLite (`WITHOUT ROWID`: one b-tree instead of two).

The dialects differ only in a few type names (`DIALECTS`); the key columns are bytewise in both
(SQLite's BINARY collation, PostgreSQL's "C"), so a prefix of a correlation id is a key range.
Statements are written with `?` placeholders; PostgreSQL's get `%s` (`statements`).
"""

from __future__ import annotations

import functools

SCHEMA_VERSION = 2

DIALECTS = {
    "sqlite": {
        "key": "TEXT",
        "real": "REAL",
        "blob": "BLOB",
        "bool": "INTEGER",
        "clustered": " WITHOUT ROWID",
    },
    "postgres": {
        "key": 'TEXT COLLATE "C"',
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
        "bool": "BOOLEAN",
        "clustered": "",
    },
}

# a hop whose key does not begin with its correlation id and a dot (ids are 32 characters)
FOREIGN = "substr(key, 1, 33) <> correlation_id || '.'"

TABLES = (
    """CREATE TABLE IF NOT EXISTS sl2s_meta (
        key {key} PRIMARY KEY,
        value TEXT NOT NULL
    ){clustered}""",
    """CREATE TABLE IF NOT EXISTS sl2s_flows (
        correlation_id {key} PRIMARY KEY,
        system TEXT NOT NULL,
        flow TEXT NOT NULL,
        machine TEXT NOT NULL,
        state TEXT NOT NULL,
        context TEXT NOT NULL,
        secrets TEXT NOT NULL,
        position TEXT,
        error TEXT,
        deadline {real},
        created {real} NOT NULL,
        updated {real} NOT NULL,
        progressed {real},
        attempt INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS sl2s_flows_state_updated ON sl2s_flows (state, updated)",
    "CREATE INDEX IF NOT EXISTS sl2s_flows_flow_updated ON sl2s_flows (flow, updated)",
    "CREATE INDEX IF NOT EXISTS sl2s_flows_updated ON sl2s_flows (updated)",
    """CREATE TABLE IF NOT EXISTS sl2s_steps (
        correlation_id {key} NOT NULL,
        step {key} NOT NULL,
        machine TEXT NOT NULL,
        outcome TEXT NOT NULL,
        replayable {bool} NOT NULL,
        event_id TEXT,
        completed {real} NOT NULL,
        PRIMARY KEY (correlation_id, step)
    ){clustered}""",
    """CREATE TABLE IF NOT EXISTS sl2s_hops (
        key {key} PRIMARY KEY,
        digest TEXT NOT NULL,
        correlation_id {key} NOT NULL,
        flow TEXT NOT NULL,
        target TEXT NOT NULL,
        at TEXT NOT NULL,
        state TEXT NOT NULL,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body {blob},
        created {real} NOT NULL,
        owner TEXT NOT NULL,
        expires {real} NOT NULL
    )""",
    # a flow's hops by correlation id: the keys sl2s makes begin with it (`<cid>.<attempt>.<at>`),
    # so they are a range of the key's own index; only hops whose key does not (a caller of the
    # protocol that makes its own keys) need an entry here
    f"CREATE INDEX IF NOT EXISTS sl2s_hops_foreign ON sl2s_hops (correlation_id) WHERE {FOREIGN}",
    """CREATE TABLE IF NOT EXISTS sl2s_nonces (
        nonce {key} PRIMARY KEY,
        expires {real} NOT NULL
    ){clustered}""",
    "CREATE INDEX IF NOT EXISTS sl2s_nonces_expires ON sl2s_nonces (expires)",
)


# Hops by age, for expiry. SQLite walks the table itself: its rowid grows with every insertion,
# so the oldest hops come first, and one index fewer is one page fewer for every claim to write
# (a claim wrote four b-trees: 150 -> 128 us of the hop server's durable work, in process, with
# time-ordered ids). PostgreSQL has no such order and keeps an index.
# The indexes schema version 1 had and 2 has not are dropped on every open, not only when the
# version moves: an sl2s of version 1 that opens the store (and is then refused) creates them
# again first.
EXTRA = {
    "sqlite": (
        "DROP INDEX IF EXISTS sl2s_hops_expires",
        "DROP INDEX IF EXISTS sl2s_hops_correlation",
    ),
    "postgres": (
        "CREATE INDEX IF NOT EXISTS sl2s_hops_expires ON sl2s_hops (expires)",
        "DROP INDEX IF EXISTS sl2s_hops_correlation",
    ),
}


def ddl(dialect: str) -> list[str]:
    """The CREATE statements for `dialect` ("sqlite" or "postgres"), in order; run on every open,
    they also bring a store of an older schema version to this one (version 1 -> 2: `EXTRA`).
    """
    types = DIALECTS[dialect]
    return [statement.format(**types) for statement in TABLES] + list(EXTRA[dialect])


FLOW_COLUMNS = (
    "correlation_id, system, flow, machine, state, context, secrets, position, error,"
    " deadline, created, updated, progressed, attempt"
)
STEP_COLUMNS = "correlation_id, step, machine, outcome, replayable, event_id, completed"
HOP_COLUMNS = "key, digest, correlation_id, flow, target, at, state, status, headers, body, created, owner"
HOP_COLUMNS_H = ", ".join("h." + c.strip() for c in HOP_COLUMNS.split(","))

# PostgreSQL's hop claim in ONE statement and one round trip (autocommit): the insert-or-get, the
# flow's state and, when the key existed, its record; committed without waiting for the WAL flush
# (`synchronous_commit` off for this transaction only — why that is safe: docs/durability.md).
# When the key was inserted by a transaction that committed after this statement's snapshot, the
# record is not visible here (count 0, no row): the caller reads it again.
PG_HOP_CLAIM = (
    "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS v),"
    f" ins AS (INSERT INTO sl2s_hops ({HOP_COLUMNS}, expires)"
    " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM cfg"
    " ON CONFLICT (key) DO NOTHING RETURNING key)"
    " SELECT (SELECT count(*) FROM ins), (SELECT state FROM sl2s_flows WHERE correlation_id = %s),"
    f" {HOP_COLUMNS_H} FROM (SELECT 1) AS one LEFT JOIN sl2s_hops h ON h.key = %s"
)

SQL = {
    "version_insert": "INSERT INTO sl2s_meta (key, value) VALUES ('schema_version', ?)"
    " ON CONFLICT (key) DO NOTHING",
    "version_get": "SELECT value FROM sl2s_meta WHERE key = 'schema_version'",
    "version_set": "UPDATE sl2s_meta SET value = ? WHERE key = 'schema_version'",
    # flows
    "flow_insert": f"INSERT INTO sl2s_flows ({FLOW_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (correlation_id) DO NOTHING",
    "flow_end": "UPDATE sl2s_flows SET state = ?, error = ?, updated = ? WHERE correlation_id = ?",
    "flow_resume": "UPDATE sl2s_flows SET state = 'pending', attempt = attempt + 1, error = NULL,"
    " updated = ? WHERE correlation_id = ?",
    "flow_state": "UPDATE sl2s_flows SET state = ?, updated = ? WHERE correlation_id = ?",
    "flow_get": f"SELECT {FLOW_COLUMNS} FROM sl2s_flows WHERE correlation_id = ?",
    "flow_prefix": f"SELECT {FLOW_COLUMNS} FROM sl2s_flows"
    " WHERE correlation_id >= ? AND correlation_id < ? ORDER BY correlation_id LIMIT 6",
    "flow_suffix": f"SELECT {FLOW_COLUMNS} FROM sl2s_flows WHERE correlation_id LIKE ?"
    " ORDER BY correlation_id LIMIT 6",
    "flow_position": "UPDATE sl2s_flows SET position = ?, progressed = ? WHERE correlation_id = ?",
    "flows_ended": "SELECT correlation_id FROM sl2s_flows WHERE state = ? AND updated <= ?"
    " LIMIT ?",
    "flow_delete": "DELETE FROM sl2s_flows WHERE correlation_id = ?",
    # steps
    "step_insert": f"INSERT INTO sl2s_steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (correlation_id, step) DO NOTHING",
    "steps_of": f"SELECT {STEP_COLUMNS} FROM sl2s_steps WHERE correlation_id = ?",
    "steps_delete": "DELETE FROM sl2s_steps WHERE correlation_id = ?",
    # hops
    "hop_insert": f"INSERT INTO sl2s_hops ({HOP_COLUMNS}, expires)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
    "hop_get": f"SELECT {HOP_COLUMNS} FROM sl2s_hops WHERE key = ?",
    "hop_finish": "UPDATE sl2s_hops SET state = 'answered', status = ?, headers = ?, body = ?"
    " WHERE key = ?",
    "hop_takeover": "UPDATE sl2s_hops SET owner = ? WHERE key = ? AND state = 'running'"
    " AND owner = ?",
    # (key >= '<cid>.' AND key < '<cid>/': the keys sl2s made; then the others, by the partial
    # index; the caller sorts them by `created`)
    "hops_of": f"SELECT {HOP_COLUMNS} FROM sl2s_hops WHERE key >= ? AND key < ?"
    " AND correlation_id = ?"
    f" UNION ALL SELECT {HOP_COLUMNS} FROM sl2s_hops WHERE correlation_id = ? AND {FOREIGN}",
    # hop_claim: the flow's state (is it cancelled?) and the hop's record, read in one statement
    "flow_state_get": "SELECT state FROM sl2s_flows WHERE correlation_id = ?",
    "hop_claim_get": "SELECT (SELECT state FROM sl2s_flows WHERE correlation_id = ?),"
    f" {HOP_COLUMNS_H} FROM (SELECT 1) AS one LEFT JOIN sl2s_hops h ON h.key = ?",
    "nonce_insert": "INSERT INTO sl2s_nonces (nonce, expires) VALUES (?, ?)"
    " ON CONFLICT (nonce) DO NOTHING",
    # expiry: by the `expires` indexes, a bounded batch per transaction
    "hops_expire": "DELETE FROM sl2s_hops WHERE key IN"
    " (SELECT key FROM sl2s_hops WHERE expires <= ? LIMIT ?)",
    "nonces_expire": "DELETE FROM sl2s_nonces WHERE nonce IN"
    " (SELECT nonce FROM sl2s_nonces WHERE expires <= ? LIMIT ?)",
}


# Rows per multi-row INSERT of steps (7 parameters each): SQLite allows 32,766 parameters;
# psycopg caches the parsing of a query only up to 50 parameters (a longer one is parsed again on
# every call, which bench/bench_store.py showed costing more than the round trips it saves), so
# PostgreSQL gets chunks of 7.
STEP_ROWS_MAX = {"sqlite": 256, "postgres": 7}


@functools.lru_cache(maxsize=64)
def step_insert_rows(dialect: str, count: int) -> str:
    """One INSERT of `count` step rows: a batch costs one statement and one round trip, not one
    per step."""
    mark = "?" if dialect == "sqlite" else "%s"
    row = "(" + ", ".join([mark] * 7) + ")"
    return (
        f"INSERT INTO sl2s_steps ({STEP_COLUMNS}) VALUES {', '.join([row] * count)}"
        " ON CONFLICT (correlation_id, step) DO NOTHING"
    )


# SQLite: a group commit's rows in one statement per kind (multi-row VALUES), not one per row:
# each statement hands the GIL back and forth, and under load a thread waits for the GIL between
# statements while its transaction holds the database's one write lock (bench_durable, login).
_SQLITE_MANY = {
    "flow_insert": f"INSERT INTO sl2s_flows ({FLOW_COLUMNS}) VALUES {{rows}}"
    " ON CONFLICT (correlation_id) DO NOTHING",
    "flow_position": "UPDATE sl2s_flows SET position = v.column1, progressed = v.column2"
    " FROM (VALUES {rows}) AS v WHERE sl2s_flows.correlation_id = v.column3",
    "hop_finish": "UPDATE sl2s_hops SET state = 'answered', status = v.column1,"
    " headers = v.column2, body = v.column3 FROM (VALUES {rows}) AS v"
    " WHERE sl2s_hops.key = v.column4",
    "flow_end": "UPDATE sl2s_flows SET state = v.column1, error = v.column2,"
    " updated = v.column3 FROM (VALUES {rows}) AS v WHERE sl2s_flows.correlation_id = v.column4",
}
SQLITE_ROWS_MAX = 256


@functools.lru_cache(maxsize=256)
def sqlite_many(kind: str, width: int, count: int) -> str:
    """SQLite: the statement `kind` of `_SQLITE_MANY` for `count` rows of `width` values."""
    row = "(" + ", ".join(["?"] * width) + ")"
    return _SQLITE_MANY[kind].format(rows=", ".join([row] * count))


@functools.lru_cache(maxsize=256)
def pg_answer_commit(steps: int, flows: int, answers: int) -> str:
    """PostgreSQL: a hop server's commit — `steps` step rows, the positions of `flows` flows and
    `answers` hop answers — as ONE statement (data-modifying CTEs), so that in autocommit it costs
    one round trip and one WAL flush. An unknown hop key makes it fail (division by zero, which
    the store reports as "no such hop"), undoing the whole statement, as a transaction would.
    Parameters: the step rows, then (position, progressed, correlation id) per flow, then
    (status, headers, body, key) per answer, then `answers` once more."""
    parts = []
    if steps:
        row = "(" + ", ".join(["%s"] * 7) + ")"
        parts.append(
            f"s AS (INSERT INTO sl2s_steps ({STEP_COLUMNS}) VALUES {', '.join([row] * steps)}"
            " ON CONFLICT (correlation_id, step) DO NOTHING)"
        )
    if flows:
        rows = ", ".join(["(%s, %s::double precision, %s)"] * flows)
        parts.append(
            "p AS (UPDATE sl2s_flows f SET position = v.position, progressed = v.progressed"
            f" FROM (VALUES {rows}) AS v (position, progressed, cid)"
            " WHERE f.correlation_id = v.cid)"
        )
    rows = ", ".join(["(%s::integer, %s, %s::bytea, %s)"] * answers)
    parts.append(
        "a AS (UPDATE sl2s_hops h SET state = 'answered', status = v.status,"
        f" headers = v.headers, body = v.body FROM (VALUES {rows}) AS v (status, headers, body,"
        " key) WHERE h.key = v.key RETURNING 1)"
    )
    return "WITH " + ", ".join(parts) + " SELECT 1 / ((SELECT count(*) FROM a) / %s)"


# SQLite: expired hops from the oldest, in rowid order (`EXTRA`), a bounded batch at a time;
# a batch that holds a hop still retained ends the pass (the next one starts again from it)
SQLITE_HOPS_EXPIRE = (
    "DELETE FROM sl2s_hops WHERE expires <= ? AND rowid IN"
    " (SELECT rowid FROM sl2s_hops WHERE rowid > 0 ORDER BY rowid LIMIT ?)"
)


def statements(dialect: str) -> dict[str, str]:
    """`SQL` with the placeholders of `dialect` (sqlite3 `?`, psycopg `%s`)."""
    if dialect == "sqlite":
        return {**SQL, "hops_expire": SQLITE_HOPS_EXPIRE}
    return {name: text.replace("?", "%s") for name, text in SQL.items()}
