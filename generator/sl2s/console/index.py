"""The console's index: every machine's JSON-lines events in one SQLite file, built incrementally.

Tables (one file, WAL):

- `files`: each event file read, with its device, inode, size and the byte offset read up to.
  Re-indexing reads a plain file from that offset when it is the same file (same inode, not
  shorter), else from the start (rotated or truncated); a `.jsonl.gz` is read again whole when its
  size or mtime changed. Events are deduplicated by event id, so reading a line twice is harmless.
- `events`: one row per event (id, correlation and causation ids, time, machine, flow, step,
  severity) and the event itself as masked JSON; `events_fts` (FTS5, contentless, tokens only)
  indexes the body, the step and a failure's exception type and message.
- `names`: the flows and machines seen (for the filter form).
- `runs`: one row per correlation id, numbered as first seen: flow, first/last time, events,
  failures, last step; merged batch by batch (recomputed from `events` for a batch that
  repeated events already indexed). Events, fields and machines refer to a run by its number,
  which grows, so what a refresh adds lands at the end of their indexes; `run_machines`, `run_fields` (every scalar
  field value the run's steps saw, and its run metadata), `run_info` (metadata, parent run).
- `incidents`: the incident files found in the log directories (a summary each, masked).

Secrets never enter in clear: the events already carry `***`, and on top of that a field whose
value is `***` anywhere, or named by `SL2S_SECRETS`, or a secret of a plan's lock file, is a secret
name; its value is stored as `***` in every event of the batch, and any clear value it has in the
batch is masked (sl2s.runtime.redact) in every text indexed: bodies, exception texts, fields.
"""

from __future__ import annotations

import gzip
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from sl2s.observe import events as ev
from sl2s.runtime.redact import MASK, Masker, secret_texts

SCHEMA_VERSION = 2
BATCH_LINES = 50_000
META = "sl2s.run_meta"
PARENT = "sl2s.parent_correlation_id"
PARENT_STEP = "sl2s.parent_step"
MAX_FIELD_VALUE = 200  # longer field values are not indexed for search (still shown)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, mtime INTEGER,
    offset INTEGER, kind TEXT);
CREATE TABLE IF NOT EXISTS events (
    rowid INTEGER PRIMARY KEY, event_id TEXT UNIQUE, run INTEGER, causation TEXT, ts TEXT,
    machine TEXT, flow TEXT, step TEXT, name TEXT, severity INTEGER, data BLOB);
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5 (
    body, content='', detail=none);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, cid TEXT UNIQUE, flow TEXT, first_ts TEXT, last_ts TEXT,
    events INTEGER, failures INTEGER, last_step TEXT, last_step_at TEXT);
CREATE TABLE IF NOT EXISTS run_machines (machine TEXT, run INTEGER, PRIMARY KEY (machine, run))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_fields (key TEXT, value TEXT, run INTEGER,
    PRIMARY KEY (key, value, run)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_info (
    cid TEXT PRIMARY KEY, meta TEXT, parent TEXT, parent_step TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secret_names (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS names (kind TEXT, name TEXT, PRIMARY KEY (kind, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, cid TEXT, path TEXT, size INTEGER, mtime INTEGER, summary TEXT)
    WITHOUT ROWID;
"""

# secondary indexes: created after the first build's bulk load (sorting once is faster than
# inserting a million random keys one by one)
INDEXES = """
CREATE INDEX IF NOT EXISTS events_run ON events (run);
CREATE INDEX IF NOT EXISTS runs_last ON runs (last_ts);
CREATE INDEX IF NOT EXISTS runs_flow ON runs (flow, last_ts);
CREATE INDEX IF NOT EXISTS runs_failed ON runs (failures, last_ts);
CREATE INDEX IF NOT EXISTS run_info_parent ON run_info (parent);
CREATE INDEX IF NOT EXISTS incidents_cid ON incidents (cid);
"""


def connect(path: str | os.PathLike, building: bool = False) -> sqlite3.Connection:
    """The index at `path` (created with its schema when missing). `building`: a new file that
    only becomes the index once complete (no journal, no fsync, secondary indexes later).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    if building:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-131072")
    else:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")
    conn.executescript(SCHEMA)
    if not building:
        conn.executescript(INDEXES)
    conn.execute(
        "INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
    )
    conn.commit()
    return conn


# ------------------------------------------------------------------------------- pure helpers


def flat_fields(fields: dict) -> Iterator[tuple[str, str]]:
    """(key, text) for each searchable value: scalars as text, one level of dicts as `a.b`."""
    for key, value in fields.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                if not isinstance(inner, (dict, list)):
                    yield from _scalar(f"{key}.{sub}", inner)
        elif not isinstance(value, list):
            yield from _scalar(str(key), value)


def _scalar(key: str, value: object) -> Iterator[tuple[str, str]]:
    if value is None or value == MASK:
        return
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    if len(text) <= MAX_FIELD_VALUE:
        yield key, text


def secret_names_in(event: dict) -> set[str]:
    """Field names an event shows masked: those are secrets."""
    fields = ev.attrs(event).get("sl2s.fields")
    if not isinstance(fields, dict):
        return set()
    return {k for k, v in fields.items() if v == MASK}


def guard(events: list[dict], names: set[str]) -> Masker:
    """The masker for a batch: the clear values that secret-named fields have in it (none when
    the runtime masked everything, as it does)."""
    texts: set[str] = set()
    for event in events:
        fields = ev.attrs(event).get("sl2s.fields")
        if isinstance(fields, dict):
            for name in names.intersection(fields):
                value = fields[name]
                if value != MASK:
                    texts.update(secret_texts(value))
    return Masker(texts)


def masked(event: dict, names: set[str], masker: Masker) -> dict:
    """The event with secret-named fields `***` and the batch's clear secret values masked
    everywhere (the same object when there is nothing to do)."""
    a = ev.attrs(event)
    fields = a.get("sl2s.fields")
    if (
        isinstance(fields, dict)
        and names
        and any(fields.get(n, MASK) != MASK for n in names)
    ):
        a = dict(a)
        a["sl2s.fields"] = {k: (MASK if k in names else v) for k, v in fields.items()}
        event = dict(event)
        event["attributes"] = a
    if masker:
        event = masker.value(event)
    return event


@dataclass
class Parsed:
    """One batch of events, ready for the database."""

    rows: list[tuple] = field(default_factory=list)
    fts: list[str] = field(default_factory=list)  # the text of each row, in row order
    fields: set[tuple[str, str, str]] = field(default_factory=set)
    machines: set[tuple[str, str]] = field(default_factory=set)
    info: dict[str, tuple] = field(default_factory=dict)
    # correlation id -> [flow, first ts, last ts, events, failures, last step key, last step]
    runs: dict[str, list] = field(default_factory=dict)


def parse_batch(lines: Iterable[bytes], names: set[str]) -> tuple[Parsed, set[str]]:
    """Rows for a batch of raw lines; `names` (the secret names known so far) grows with those
    the batch shows masked. Lines that are not events are skipped."""
    loads = orjson.loads
    decoded: list[tuple[bytes, dict, dict]] = []
    new_names: set[str] = set()
    clear: set[str] = set()  # values of secret-named fields left in clear by a writer
    for line in lines:
        try:
            event = loads(line)
        except orjson.JSONDecodeError:
            continue
        if type(event) is not dict:
            continue
        a = event.get("attributes")
        if type(a) is not dict or not a.get("sl2s.event_id"):
            continue
        fields = a.get("sl2s.fields")
        if type(fields) is dict and fields:
            if MASK in fields.values():
                for k, v in fields.items():
                    if v == MASK and k not in names:
                        new_names.add(k)
            for n in names:
                v = fields.get(n)
                if v is not None and v != MASK:
                    clear.update(secret_texts(v))
        decoded.append((line, event, a))
    if new_names:
        names |= new_names
        for _line, _event, a in decoded:  # a name first seen masked in this batch
            fields = a.get("sl2s.fields")
            if type(fields) is dict:
                for n in new_names:
                    v = fields.get(n)
                    if v is not None and v != MASK:
                        clear.update(secret_texts(v))
    masker = Masker(clear) if clear else None
    out = Parsed()
    dumps = orjson.dumps
    rows_append, fts_append = out.rows.append, out.fts.append
    add_field, add_machine, runs = out.fields.add, out.machines.add, out.runs
    for line, event, a in decoded:
        cid = a.get("sl2s.correlation_id")
        if not cid:
            continue
        fields = a.get("sl2s.fields")
        if masker is not None or (
            names
            and type(fields) is dict
            and any(fields.get(n, MASK) != MASK for n in names)
        ):
            event = masked(event, names, masker or Masker(()))
            a = event["attributes"]
            fields = a.get("sl2s.fields")
            data = dumps(event)
        else:
            data = line.rstrip(b"\r\n")
        body = event.get("body")
        body = (
            body
            if type(body) is str
            else ("" if body is None else dumps(body).decode())
        )
        resource = event.get("resource")
        machine = (
            a.get("sl2s.machine")
            or (resource.get("service.name") if type(resource) is dict else None)
            or "?"
        )
        step = a.get("sl2s.step") or ""
        eid = a["sl2s.event_id"]
        ts = event.get("timestamp") or ""
        flow = a.get("sl2s.flow") or ""
        name = event.get("event_name") or ""
        severity = event.get("severity_number")
        if type(severity) is not int:
            severity = ev.severity_number(event)
        failed = severity >= ev.ERROR or "exception.type" in a
        rows_append(
            (
                eid,
                cid,
                a.get("sl2s.causation_id"),
                ts,
                machine,
                flow,
                step,
                name,
                severity,
                data,
            )
        )
        if failed:
            body = f"{body} {a.get('exception.type') or ''} {a.get('exception.message') or ''}"
        fts_append(f"{body} {step}")
        add_machine((machine, cid))
        run = runs.get(cid)
        step_key = f"{ts} {eid}" if name == ev.STEP else ""
        if run is None:
            runs[cid] = [
                flow,
                ts,
                ts,
                1,
                int(failed),
                step_key,
                step if step_key else "",
            ]
        else:
            if flow and not run[0]:
                run[0] = flow
            if ts < run[1]:
                run[1] = ts
            if ts > run[2]:
                run[2] = ts
            run[3] += 1
            run[4] += failed
            if step_key > run[5]:
                run[5], run[6] = step_key, step
        if type(fields) is dict:
            for key, value in fields.items():
                t = type(value)
                if t is str:
                    if value != MASK and len(value) <= MAX_FIELD_VALUE:
                        add_field((key, value, cid))
                elif t is int:
                    add_field((key, str(value), cid))
                elif value is not None:
                    for k, v in flat_fields({key: value}):
                        add_field((k, v, cid))
        meta = a.get(META)
        parent = a.get(PARENT)
        if (type(meta) is dict and meta) or parent:
            meta = meta if type(meta) is dict else {}
            for key, value in meta.items():
                for k, v in _scalar(str(key), value):
                    add_field((k, v, cid))
            if cid not in out.info:
                out.info[cid] = (
                    dumps(meta).decode() if meta else None,
                    str(parent) if parent else None,
                    str(a.get(PARENT_STEP) or "") or None,
                )
    return out, new_names


# -------------------------------------------------------------------------------- the shell


@dataclass
class RefreshStats:
    files: int = 0
    files_read: int = 0
    lines: int = 0
    events: int = 0
    runs: int = 0
    incidents: int = 0


def _lock_secrets(paths: Iterable[Path]) -> set[str]:
    """Secret names of plans whose lock file sits above a log directory (`#name` templates)."""
    names: set[str] = set()
    for lock in lock_files(paths):
        try:
            data = orjson.loads(lock.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        for steps in (data.get("steps") or {}).values():
            for info in steps.values() if isinstance(steps, dict) else ():
                template = str((info or {}).get("template") or "")
                names.update(_hash_names(template))
    return names


def _hash_names(template: str) -> set[str]:
    import re

    return set(re.findall(r"(?<![\w#])#([A-Za-z_]\w*)", template))


def lock_files(paths: Iterable[Path]) -> list[Path]:
    """`sl2s.lock.json` of the generated trees whose log dirs are given (`<tree>/.sl2s/logs`)."""
    found: dict[Path, None] = {}
    for path in paths:
        here = Path(path).resolve()
        for parent in [here, *list(here.parents)[:3]]:
            lock = parent / "sl2s.lock.json"
            if lock.is_file():
                found.setdefault(lock, None)
                break
    return list(found)


def _schema(path: Path) -> str | None:
    """The schema version an index file was made with (None: not an index)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


class Index:
    """The index file and how to bring it up to date with the logs."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        # a new index is built in a file of its own, renamed into place when complete: a build
        # that is interrupted leaves no half index behind
        if self.path.exists() and _schema(self.path) != str(SCHEMA_VERSION):
            for stale in (
                self.path,
                *(self.path.with_name(self.path.name + x) for x in ("-wal", "-shm")),
            ):
                stale.unlink(
                    missing_ok=True
                )  # another layout: it is rebuilt from the logs
        self.building = not self.path.exists()
        if self.building:
            self._partial.unlink(missing_ok=True)
        self.conn = connect(
            self._partial if self.building else self.path, self.building
        )
        env = os.environ.get("SL2S_SECRETS", "")
        self.names = {r[0] for r in self.conn.execute("SELECT name FROM secret_names")}
        self.names |= {n.strip() for n in env.split(",") if n.strip()}

    def close(self) -> None:
        self.conn.close()

    # -- reading files

    def refresh(
        self,
        paths: Iterable[str | os.PathLike],
        index_incident_events: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> RefreshStats:
        """Index what is new in the event files and incidents under `paths`. `progress(done,
        total)`: bytes of the event files, those indexed before counted as done."""
        dirs = [Path(p) for p in paths]
        self.names |= _lock_secrets(p for p in dirs if p.is_dir())
        stats = RefreshStats()
        files = ev.event_files(dirs)
        affected: set[int] = set()
        reading = ev.ReadStats(progress=progress)  # counts the bytes as the readers do
        if progress is not None:
            reading.total = ev.files_size(files)
        for path in files:
            stats.files += 1
            report = reading.reached if progress is not None else None
            for chunk in self._new_lines(path, stats, report):
                affected |= self._store(chunk, stats)
            reading.finished(path)
        for directory in (p for p in dirs if p.is_dir()):
            affected |= self._incidents(directory, stats, index_incident_events)
        if affected:
            if self.building:  # the recount reads the events by run
                self.conn.executescript(INDEXES)
            self._update_runs(affected)
        self.conn.commit()
        if self.building:
            self.conn.executescript(INDEXES)
            self.conn.commit()
            self.conn.close()
            os.replace(self._partial, self.path)
            self.conn = connect(self.path)
            self.building = False
        return stats

    @property
    def _partial(self) -> Path:
        return self.path.with_name(self.path.name + ".building")

    def _new_lines(
        self,
        path: Path,
        stats: RefreshStats,
        report: Callable[[int], None] | None = None,
    ) -> Iterator[list[bytes]]:
        """Batches of the lines added to `path` since the last refresh (complete lines only);
        the file's row is updated as each batch is stored. `report(offset)`: how far into a
        plain file the stored lines reach."""
        try:
            st = path.stat()
        except OSError:
            return
        key = str(path.resolve())
        row = self.conn.execute(
            "SELECT dev, ino, size, mtime, offset FROM files WHERE path = ?", (key,)
        ).fetchone()
        gz = path.name.endswith(".gz")
        if gz:
            if row and row[2] == st.st_size and row[3] == st.st_mtime_ns:
                return
            start = 0
        elif (
            row and (row[0], row[1]) == (st.st_dev, st.st_ino) and st.st_size >= row[4]
        ):
            if st.st_size == row[4]:
                return
            start = row[4]
        else:
            start = 0
        stats.files_read += 1
        offset = start
        if gz:
            with gzip.open(path, "rb") as handle:
                batch: list[bytes] = []
                try:
                    for line in handle:
                        batch.append(line)
                        if len(batch) >= BATCH_LINES:
                            yield batch
                            batch = []
                except (EOFError, OSError):
                    pass
                if batch:
                    yield batch
            offset = st.st_size
        else:
            with path.open("rb") as handle:
                handle.seek(start)
                rest = b""  # the bytes after `offset`: a line not yet complete
                while True:
                    block = handle.read(1 << 24)
                    if not block:
                        break
                    data = rest + block
                    end = data.rfind(b"\n")
                    if end < 0:
                        rest = data
                        continue
                    rest = data[end + 1 :]
                    lines = data[: end + 1].splitlines()
                    for i in range(0, len(lines), BATCH_LINES):
                        yield lines[i : i + BATCH_LINES]
                    offset += end + 1
                    self._save_file(key, st, offset, "plain")
                    if report is not None:
                        report(offset)
        self._save_file(key, st, offset, "gz" if gz else "plain")

    def _save_file(self, key: str, st: os.stat_result, offset: int, kind: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, offset, kind),
        )

    def _store(self, lines: list[bytes], stats: RefreshStats) -> set[int]:
        """Store a batch; the numbers of the runs whose figures must be recomputed from
        `events` (a batch that repeated events already indexed; others are merged as they
        come)."""
        stats.lines += len(lines)
        parsed, new_names = parse_batch(lines, self.names)
        if new_names:
            self.conn.executemany(
                "INSERT OR IGNORE INTO secret_names VALUES (?)",
                [(n,) for n in new_names],
            )
        if not parsed.rows:
            return set()
        conn = self.conn
        # every run gets its number when first seen (numbers grow, so the events, fields and
        # machines of new runs are appended to their indexes rather than spread over them);
        # the batch's figures are merged into its row (recomputed below after duplicates)
        conn.executemany(
            """
            INSERT INTO runs (cid, flow, first_ts, last_ts, events, failures, last_step,
                              last_step_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (cid) DO UPDATE SET
              flow = coalesce(runs.flow, excluded.flow),
              first_ts = min(runs.first_ts, excluded.first_ts),
              last_ts = max(runs.last_ts, excluded.last_ts),
              events = runs.events + excluded.events,
              failures = runs.failures + excluded.failures,
              last_step = CASE WHEN coalesce(excluded.last_step_at, '') >
                coalesce(runs.last_step_at, '') THEN excluded.last_step ELSE runs.last_step END,
              last_step_at = max(coalesce(runs.last_step_at, ''),
                coalesce(excluded.last_step_at, ''))
            """,
            [
                (cid, r[0] or None, r[1], r[2], r[3], r[4], r[6] or None, r[5] or None)
                for cid, r in parsed.runs.items()
            ],
        )
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS batch (cid TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM batch")
        conn.executemany("INSERT INTO batch VALUES (?)", ((c,) for c in parsed.runs))
        ids = dict(
            conn.execute("SELECT r.cid, r.id FROM batch b JOIN runs r ON r.cid = b.cid")
        )
        conn.execute("DELETE FROM batch")
        before = conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[
            0
        ]
        changes = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO events (event_id, run, causation, ts, machine, flow, step,"
            " name, severity, data) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(r[0], ids[r[1]], *r[2:]) for r in parsed.rows],
        )
        inserted = conn.total_changes - changes
        stats.events += inserted
        stats.runs += len(parsed.runs)
        recompute: set[int] = set()
        if inserted == len(
            parsed.rows
        ):  # no duplicate: the new rows are before+1 … before+n
            texts = [(before + i, t) for i, t in enumerate(parsed.fts, 1)]
        else:  # duplicates were ignored: index the text of the rows just inserted only
            new_ids = {
                eid: rowid
                for rowid, eid in conn.execute(
                    "SELECT rowid, event_id FROM events WHERE rowid > ?", (before,)
                )
            }
            texts = []
            for row, t in zip(parsed.rows, parsed.fts):
                rowid = new_ids.pop(row[0], None)
                if rowid is not None:
                    texts.append((rowid, t))
            recompute = set(ids.values())
        conn.executemany("INSERT INTO events_fts (rowid, body) VALUES (?, ?)", texts)
        conn.executemany(
            "INSERT OR IGNORE INTO run_fields VALUES (?, ?, ?)",
            [(k, v, ids[c]) for k, v, c in parsed.fields],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO run_machines VALUES (?, ?)",
            [(m, ids[c]) for m, c in parsed.machines],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO names VALUES (?, ?)",
            {("machine", m) for m, _ in parsed.machines}
            | {("flow", r[0]) for r in parsed.runs.values() if r[0]},
        )
        if parsed.info:
            conn.executemany(
                "INSERT OR IGNORE INTO run_info VALUES (?, ?, ?, ?)",
                [(cid, *info) for cid, info in parsed.info.items()],
            )
        return recompute

    def _update_runs(self, runs: set[int]) -> None:
        """Recompute the figures of the runs numbered `runs` from their events."""
        conn = self.conn
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS touched (run INTEGER PRIMARY KEY)"
        )
        conn.execute("DELETE FROM touched")
        conn.executemany(
            "INSERT OR IGNORE INTO touched VALUES (?)", ((r,) for r in runs)
        )
        conn.execute("""
            UPDATE runs SET (flow, first_ts, last_ts, events, failures, last_step,
                             last_step_at) = (
              SELECT max(CASE WHEN e.flow != '' THEN e.flow END), min(e.ts), max(e.ts),
                     count(*), sum(e.severity >= 17 OR instr(e.data, '"exception.type"') > 0),
                     (SELECT l.step FROM events l WHERE l.run = runs.id
                        AND l.name = 'sl2s.step' ORDER BY l.ts DESC, l.event_id DESC LIMIT 1),
                     (SELECT l.ts || ' ' || l.event_id FROM events l WHERE l.run = runs.id
                        AND l.name = 'sl2s.step' ORDER BY l.ts DESC, l.event_id DESC LIMIT 1)
              FROM events e WHERE e.run = runs.id)
            WHERE id IN (SELECT run FROM touched)
            """)
        conn.execute("DELETE FROM touched")

    # -- incidents

    def _incidents(
        self, directory: Path, stats: RefreshStats, with_events: bool
    ) -> set[int]:
        from sl2s.diagnostics import Sl2sError
        from sl2s.observe.incidents import incident_paths, read_incident

        affected: set[int] = set()
        for root in [directory, *(p for p in directory.rglob("*") if p.is_dir())]:
            try:
                found = incident_paths(root)
            except Sl2sError:
                continue
            for incident_id, path in found.items():
                try:
                    st = path.stat()
                except OSError:
                    continue
                row = self.conn.execute(
                    "SELECT path, size, mtime FROM incidents WHERE id = ?",
                    (incident_id,),
                ).fetchone()
                if row and row == (str(path), st.st_size, st.st_mtime_ns):
                    continue
                try:
                    incident = read_incident(path)
                except (Sl2sError, OSError):
                    continue
                stats.incidents += 1
                lines = [orjson.dumps(e) for e in incident.events]
                parsed, _ = parse_batch(lines, self.names)
                failure = incident.failure
                cid = ev.correlation_id(failure) or ev.correlation_id(incident.trigger)
                summary = incident.summary()
                summary["git_revision"] = incident.header.get("git.revision")
                summary["plan_digest"] = incident.header.get("plan.digest")
                summary["trigger_event"] = ev.event_id(failure)
                masker = guard([failure], self.names)
                summary = masker.value(summary) if masker else summary
                self.conn.execute(
                    "INSERT OR REPLACE INTO incidents VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        incident_id,
                        cid,
                        str(path),
                        st.st_size,
                        st.st_mtime_ns,
                        orjson.dumps(summary).decode(),
                    ),
                )
                if with_events:
                    affected |= self._store(lines, stats)
                del parsed
        return affected
