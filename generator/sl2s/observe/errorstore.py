"""The error store: error groups, their states and the deploys, in one SQLite file next to the logs.

`<log dir>/errors.sqlite` (its own file: the console keeps its event index elsewhere). Tables:

- `groups` — one row per fingerprint: the group (sl2s.observe.errors.Group) and its state;
- `facets` — per group, counts by machine, host, revision and environment;
- `seen_events` — event ids already counted, so reading the same failure twice (an incident file
  and the live log, a second `sync`) counts it once;
- `synced` — closed incident files already read;
- `deploys` — recorded deploys (sl2s.observe.deploys).

WAL mode and a busy timeout: `sl2s watch` and `sl2s errors` may use one file at the same time.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import orjson

from sl2s.diagnostics import Sl2sError
from sl2s.observe import errors as er
from sl2s.observe import events as ev
from sl2s.observe.deploys import Deploy, suspected

STORE_FILE = "errors.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups(
  fingerprint TEXT PRIMARY KEY, data TEXT NOT NULL, first_seen TEXT, last_seen TEXT,
  state TEXT, count INTEGER);
CREATE TABLE IF NOT EXISTS facets(
  fingerprint TEXT, kind TEXT, value TEXT, count INTEGER,
  PRIMARY KEY (fingerprint, kind, value));
CREATE TABLE IF NOT EXISTS seen_events(event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS synced(incident TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS deploys(
  id INTEGER PRIMARY KEY AUTOINCREMENT, revision TEXT NOT NULL, at TEXT NOT NULL,
  target TEXT, environment TEXT, how TEXT);
"""


def store_path(log_dir: str | os.PathLike) -> Path:
    return Path(log_dir) / STORE_FILE


class ErrorStore:
    def __init__(self, log_dir: str | os.PathLike) -> None:
        directory = Path(log_dir)
        if directory.exists() and not directory.is_dir():
            raise Sl2sError(f"{log_dir}: not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = store_path(directory)
        try:
            self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise Sl2sError(f"{self.path}: not an sl2s error store ({error})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ErrorStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------ groups

    def group(self, fingerprint: str) -> er.Group | None:
        row = self.db.execute(
            "SELECT data FROM groups WHERE fingerprint=?", (fingerprint,)
        ).fetchone()
        return _group(row[0], self._facets(fingerprint)) if row else None

    def _facets(self, fingerprint: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for kind, value, count in self.db.execute(
            "SELECT kind, value, count FROM facets WHERE fingerprint=? ORDER BY count DESC, value",
            (fingerprint,),
        ):
            out.setdefault(kind, {})[value] = count
        return out

    def groups(self) -> list[er.Group]:
        rows = self.db.execute(
            "SELECT data, fingerprint FROM groups ORDER BY last_seen DESC, fingerprint"
        ).fetchall()
        return [_group(data, self._facets(fp)) for data, fp in rows]

    def find(self, part: str) -> er.Group:
        """The group whose fingerprint is `part` or starts with it (unique), else Sl2sError."""
        rows = self.db.execute(
            "SELECT fingerprint FROM groups WHERE fingerprint LIKE ? ESCAPE '\\'",
            (part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        if len(rows) != 1:
            what = "no error group" if not rows else f"{len(rows)} error groups"
            raise Sl2sError(f"{self.path}: {what} matching {part!r}")
        return self.group(rows[0][0])  # type: ignore[return-value]

    def _put(self, group: er.Group) -> None:
        data = asdict(group)
        data.pop("facets")
        self.db.execute(
            "INSERT OR REPLACE INTO groups(fingerprint, data, first_seen, last_seen, state, count)"
            " VALUES (?,?,?,?,?,?)",
            (
                group.fingerprint,
                orjson.dumps(data).decode(),
                group.first_seen,
                group.last_seen,
                group.state,
                group.count,
            ),
        )

    def record(self, o: er.Occurrence) -> tuple[er.Group, str]:
        """Count one occurrence (once per event id); (the group after it, what happened:
        `new`, `reactivated`, `seen`, `ignored`, or `duplicate` for an event counted before).
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if o.event_id:
                done = self.db.execute(
                    "INSERT OR IGNORE INTO seen_events(event_id) VALUES (?)",
                    (o.event_id,),
                )
                if done.rowcount == 0:
                    self.db.execute("COMMIT")
                    return self.group(o.fingerprint) or er.new_group(o), "duplicate"
            before = self.group(o.fingerprint)
            group, outcome = er.observe(before, o)
            self._put(group)
            for kind, value in o.facets().items():
                self.db.execute(
                    "INSERT INTO facets(fingerprint, kind, value, count) VALUES (?,?,?,1) "
                    "ON CONFLICT(fingerprint, kind, value) DO UPDATE SET count=count+1",
                    (o.fingerprint, kind, value),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.group(o.fingerprint) or group, outcome

    def set_state(
        self,
        part: str,
        state: str,
        *,
        revision: str | None = None,
        at: str | None = None,
    ) -> er.Group:
        group = self.find(part)
        seen = tuple(self._facets(group.fingerprint).get("revision", {}))
        changed = er.transition(
            group,
            state,
            at or ev.utc_now_text(),
            revision=revision,
            revisions_seen=seen,
        )
        self._put(changed)
        return self.group(changed.fingerprint)  # type: ignore[return-value]

    # ------------------------------------------------------------------------------ incidents

    def sync(self, log_dir: str | os.PathLike) -> list[tuple[er.Group, str]]:
        """Read the incidents of `log_dir` not read yet; (group, outcome) per counted failure."""
        from sl2s.observe.incidents import incident_paths, read_incident

        out: list[tuple[er.Group, str]] = []
        if not Path(log_dir).is_dir():
            return out
        done = {r[0] for r in self.db.execute("SELECT incident FROM synced")}
        for incident_id, path in incident_paths(log_dir).items():
            if incident_id in done:
                continue
            try:
                incident = read_incident(path)
            except Sl2sError:
                continue
            for event in incident.events:
                if not event.get("sl2s.trigger"):
                    continue
                o = occurrence_in_incident(event, incident.header, incident.id)
                if o is not None:
                    out.append(self.record(o))
            if incident.complete:
                self.db.execute(
                    "INSERT OR IGNORE INTO synced(incident) VALUES (?)", (incident_id,)
                )
        return out

    # ------------------------------------------------------------------------------ deploys

    def add_deploy(
        self,
        revision: str,
        *,
        at: str | None = None,
        target: str = "",
        environment: str = "",
        how: str = "",
    ) -> Deploy:
        when = at or ev.utc_now_text()
        cursor = self.db.execute(
            "INSERT INTO deploys(revision, at, target, environment, how) VALUES (?,?,?,?,?)",
            (revision, when, target, environment, how),
        )
        return Deploy(
            int(cursor.lastrowid or 0), revision, when, target, environment, how
        )

    def deploys(self) -> list[Deploy]:
        return [
            Deploy(int(i), r, a, t or "", e or "", h or "")
            for i, r, a, t, e, h in self.db.execute(
                "SELECT id, revision, at, target, environment, how FROM deploys ORDER BY at, id"
            )
        ]

    def suspected_deploy(self, group: er.Group) -> Deploy | None:
        """The deploy it came with; for a reactivated group, the deploy it came back with."""
        if group.reactivated_at and group.state == "open":
            return suspected(self.deploys(), group.reactivated_at)
        return suspected(self.deploys(), group.first_seen, group.first_revision)


def occurrence_in_incident(event: dict, header: dict, incident_id: str | None):
    return er.occurrence(
        event,
        host=header.get("host.name"),
        revision=header.get("git.revision"),
        environment=header.get("deployment.environment"),
        incident=incident_id,
    )


def _group(data: str, facets: dict) -> er.Group:
    raw = orjson.loads(data)
    raw["frames"] = tuple(raw.get("frames") or ())
    raw["revisions_before"] = tuple(raw.get("revisions_before") or ())
    return er.Group(**raw, facets=facets)


def since_time(store: ErrorStore, since: str) -> str:
    """`--since`: an ISO time, a deploy id (`#3` or `3`), or a revision deployed (its latest
    deploy's time)."""
    text = since.strip()
    deploys = store.deploys()
    number = text.lstrip("#")
    if number.isdigit():
        for d in deploys:
            if d.id == int(number):
                return d.at
    same = [d for d in deploys if d.revision == text] or [
        d for d in deploys if len(text) >= 4 and d.revision.startswith(text)
    ]
    if same:
        return same[-1].at
    if ev.parse_time(text) is not None:
        parsed = ev.parse_time(text)
        return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # type: ignore[union-attr]
    raise Sl2sError(
        f"--since {since!r}: not a time (2026-11-23T10:00:00Z), a deploy id or a deployed revision"
    )


def new_since(groups: Iterable[er.Group], when: str) -> list[er.Group]:
    """Groups that appeared, or came back, after `when`."""
    return [
        g
        for g in groups
        if g.first_seen > when
        or (g.reactivated_at is not None and g.reactivated_at > when)
    ]
