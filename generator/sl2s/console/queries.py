"""What the console's pages ask of the index: runs filtered and paged, one run, one event's run,
a stream of one key value. Pure over a `sqlite3.Connection` (no files, no HTTP)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import orjson

from sl2s.observe import events as ev
from sl2s.observe.story import build_story

OUTCOMES = ("completed", "failed", "stopped early", "pending")
PENDING_SECONDS = (
    60.0  # a run not finished whose last event is newer than this is pending
)
PAGE = 50
TEXT_WINDOW = 10_000  # matching events a word search looks at, per page

_FIELD = re.compile(r"^([^\s=]+)=(.*)$")


@dataclass(frozen=True)
class RunFilter:
    flow: str = ""
    machine: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    text: str = ""
    page: int = 1


def parse_search(search: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """`username=ann actor=bob wrong password` -> ((username, ann), (actor, bob)), 'wrong password'.

    A value may be quoted (`reason="fix it"`)."""
    import shlex

    try:
        words = shlex.split(search)
    except ValueError:
        words = search.split()
    fields, text = [], []
    for word in words:
        m = _FIELD.match(word)
        if m and m.group(1):
            fields.append((m.group(1), m.group(2)))
        else:
            text.append(word)
    return tuple(fields), " ".join(text)


def normalise_time(text: str) -> str:
    """A user's time (`2026-12-04 21:00`, `2026-12-04T21:00:00Z`) as the index's ISO prefix."""
    text = text.strip().replace(" ", "T")
    return text[:-1] if text.endswith("Z") else text


def fts_query(text: str) -> str:
    """Each word (letters, digits, `_`: the index's tokens) quoted, all required: no syntax
    errors from user input, and no phrase (the index keeps no positions)."""
    return " ".join(f'"{w}"' for w in re.findall(r"\w+", text))


def terminal_steps(conn: sqlite3.Connection, plans: dict[str, str]) -> dict[str, str]:
    """flow -> its last step: from the plans' lock files when known, else the step that most of
    the flow's last 1,000 runs without a failure end with (an index range per flow)."""
    out = dict(plans)
    flows = [r[0] for r in conn.execute("SELECT name FROM names WHERE kind = 'flow'")]
    for flow in flows:
        if flow in plans:
            continue
        row = conn.execute(
            "SELECT last_step, count(*) AS n FROM (SELECT last_step FROM runs "
            "WHERE flow = ? AND failures = 0 ORDER BY last_ts DESC LIMIT 1000) "
            "GROUP BY last_step ORDER BY n DESC, last_step LIMIT 1",
            (flow,),
        ).fetchone()
        if row is not None and row[0]:
            out[flow] = row[0]
    return out


def outcome_sql(
    outcome: str, terminal: dict[str, str], now: datetime
) -> tuple[str, list]:
    done = " OR ".join("(r.flow = ? AND r.last_step = ?)" for _ in terminal) or "0"
    args = [x for pair in terminal.items() for x in pair]
    cutoff = iso(now - timedelta(seconds=PENDING_SECONDS))
    if outcome == "failed":
        return "r.failures > 0", []
    if outcome == "completed":
        return f"r.failures = 0 AND ({done})", args
    if outcome == "pending":
        return f"r.failures = 0 AND NOT ({done}) AND r.last_ts >= ?", args + [cutoff]
    if outcome == "stopped early":
        return f"r.failures = 0 AND NOT ({done}) AND r.last_ts < ?", args + [cutoff]
    raise ValueError(f"unknown outcome {outcome!r} ({', '.join(OUTCOMES)})")


def outcome_of(row: dict, terminal: dict[str, str], now: datetime) -> str:
    if row["failures"]:
        return "failed"
    if terminal.get(row["flow"]) == row["last_step"]:
        return "completed"
    cutoff = iso(now - timedelta(seconds=PENDING_SECONDS))
    return "pending" if (row["last_ts"] or "") >= cutoff else "stopped early"


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class RunPage:
    runs: list[dict]
    page: int
    more: bool
    flows: list[str] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)


_RUN_COLUMNS = (
    "r.cid, r.flow, r.first_ts, r.last_ts, r.events, r.failures, r.last_step, "
    "i.meta, i.parent, i.parent_step, r.id"
)


def _run_dict(row: tuple) -> dict:
    keys = (
        "cid",
        "flow",
        "first_ts",
        "last_ts",
        "events",
        "failures",
        "last_step",
        "meta",
        "parent",
        "parent_step",
        "id",
    )
    out = dict(zip(keys, row))
    out["meta"] = orjson.loads(out["meta"]) if out["meta"] else {}
    out["duration_ms"] = duration_ms(out["first_ts"], out["last_ts"])
    return out


def duration_ms(first: str | None, last: str | None) -> float | None:
    a, b = ev.parse_time(first), ev.parse_time(last)
    return (b - a).total_seconds() * 1000 if a and b else None


def list_runs(
    conn: sqlite3.Connection,
    f: RunFilter,
    plans: dict[str, str] | None = None,
    now: datetime | None = None,
    page_size: int = PAGE,
    terminal: dict[str, str] | None = None,
) -> RunPage:
    """A page of runs, newest first. `terminal` (flow -> last step, `terminal_steps`) may be
    given to spare its query (a scan of the runs)."""
    now = now or datetime.now(timezone.utc)
    if terminal is None:
        terminal = terminal_steps(conn, plans or {})
    # the most selective filter drives the query: a field value, else the words; the rest are
    # conditions on its runs (else SQLite may walk every run in time order, testing each)
    source = "runs r"
    where: list[str] = []
    args: list[object] = []
    fields = list(f.fields)
    words = fts_query(f.text)
    if fields:
        key, value = fields.pop(0)
        source = "run_fields f0 CROSS JOIN runs r ON r.id = f0.run"
        where.append("f0.key = ? AND f0.value = ?")
        args += [key, value]
    elif words:
        # the newest matching events first (rowids grow as events are indexed): a common word
        # is looked for in the newest TEXT_WINDOW matches a page, not in every event
        source = (
            "(SELECT DISTINCT run FROM events WHERE rowid IN "
            "(SELECT rowid FROM events_fts WHERE events_fts MATCH ? ORDER BY rowid DESC "
            "LIMIT ?)) t CROSS JOIN runs r ON r.id = t.run"
        )
        args += [words, TEXT_WINDOW * max(1, f.page)]
        words = ""
    if f.flow:
        where.append("r.flow = ?")
        args.append(f.flow)
    if f.machine:
        where.append("r.id IN (SELECT run FROM run_machines WHERE machine = ?)")
        args.append(f.machine)
    for key, value in fields:
        where.append("r.id IN (SELECT run FROM run_fields WHERE key = ? AND value = ?)")
        args += [key, value]
    if words:
        where.append(
            "r.id IN (SELECT run FROM events WHERE rowid IN "
            "(SELECT rowid FROM events_fts WHERE events_fts MATCH ?))"
        )
        args.append(words)
    if f.since:
        where.append("r.last_ts >= ?")
        args.append(normalise_time(f.since))
    if f.until:
        where.append("r.first_ts <= ?")
        args.append(normalise_time(f.until) + "\uffff")
    if f.outcome:
        sql, extra = outcome_sql(f.outcome, terminal, now)
        where.append(sql)
        args += extra
    page = max(1, f.page)
    query = (
        f"SELECT {_RUN_COLUMNS} FROM {source} LEFT JOIN run_info i ON i.cid = r.cid"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY r.last_ts DESC, r.cid DESC LIMIT ? OFFSET ?"
    )
    rows = conn.execute(
        query, args + [page_size + 1, (page - 1) * page_size]
    ).fetchall()
    runs = [_run_dict(r) for r in rows[:page_size]]
    for run in runs:
        run["outcome"] = outcome_of(run, terminal, now)
        run["machines"] = [
            m
            for (m,) in conn.execute(
                "SELECT DISTINCT machine FROM events WHERE run = ? ORDER BY machine",
                (run["id"],),
            )
        ]
    return RunPage(runs, page, len(rows) > page_size)


def choices(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
    """(flows, machines) the index knows, for the filter form."""
    flows = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM names WHERE kind = 'flow' ORDER BY name"
        )
    ]
    machines = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM names WHERE kind = 'machine' ORDER BY name"
        )
    ]
    return flows, machines


def run_of_event(conn: sqlite3.Connection, event_id: str) -> str | None:
    row = conn.execute(
        "SELECT r.cid FROM events e JOIN runs r ON r.id = e.run WHERE e.event_id = ?",
        (event_id,),
    ).fetchone()
    return row[0] if row else None


@dataclass
class RunView:
    run: dict
    items: list[dict]  # {"kind": "event"|"hop", ...} in causal order
    stopped: str
    children: list[dict]
    incidents: list[dict]
    highlight: str | None = None


def get_run(
    conn: sqlite3.Connection,
    cid: str,
    plans: dict[str, str] | None = None,
    highlight: str | None = None,
    now: datetime | None = None,
    terminal: dict[str, str] | None = None,
) -> RunView | None:
    row = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs r LEFT JOIN run_info i ON i.cid = r.cid "
        "WHERE r.cid = ?",
        (cid,),
    ).fetchone()
    if row is None:
        return None
    now = now or datetime.now(timezone.utc)
    run = _run_dict(row)
    if terminal is None:
        terminal = terminal_steps(conn, plans or {})
    run["outcome"] = outcome_of(run, terminal, now)
    events = [
        orjson.loads(data)
        for (data,) in conn.execute(
            "SELECT data FROM events WHERE run = ?", (run["id"],)
        )
    ]
    story = build_story(cid, events, mark=highlight)
    from sl2s.observe.story import causal_order

    ordered = causal_order(events)
    items: list[dict] = []
    position = 0
    for line in story.lines:
        if line.kind == "hop":
            items.append(
                {
                    "kind": "hop",
                    "hop": line.hop_kind,
                    "source": line.source,
                    "target": line.target,
                }
            )
            continue
        event, _cause = ordered[position]
        position += 1
        items.append(event_item(event, line.delta_ms, line.elapsed_ms, highlight))
    run["machines"] = list(story.machines)
    children = [
        {"cid": c, "flow": flow, "parent_step": step}
        for c, flow, step in conn.execute(
            "SELECT i.cid, r.flow, i.parent_step FROM run_info i LEFT JOIN runs r "
            "ON r.cid = i.cid WHERE i.parent = ? ORDER BY r.first_ts",
            (cid,),
        )
    ]
    incidents = [
        {"id": i, **orjson.loads(summary)}
        for i, summary in conn.execute(
            "SELECT id, summary FROM incidents WHERE cid = ? ORDER BY id", (cid,)
        )
    ]
    return RunView(run, items, story.stopped, children, incidents, highlight)


def event_item(
    event: dict, delta_ms: float | None, elapsed_ms: float | None, highlight: str | None
) -> dict:
    a = ev.attrs(event)
    fields = a.get("sl2s.fields")
    return {
        "kind": "event",
        "id": ev.event_id(event) or "",
        "cause": ev.causation_id(event) or "",
        "ts": event.get("timestamp") or "",
        "delta_ms": delta_ms,
        "elapsed_ms": elapsed_ms,
        "machine": ev.machine(event),
        "flow": a.get("sl2s.flow") or "",
        "step": a.get("sl2s.step") or event.get("event_name") or "",
        "name": event.get("event_name") or "",
        "severity": event.get("severity_text") or "",
        "failed": ev.is_failure(event),
        "body": (
            event.get("body")
            if isinstance(event.get("body"), str)
            else orjson.dumps(event.get("body")).decode()
        ),
        "template": a.get("sl2s.template") or "",
        "fields": fields if isinstance(fields, dict) else {},
        "plan": a.get("sl2s.plan") or "",
        "path": a.get("code.filepath") or "",
        "line": a.get("code.lineno") or 0,
        "exception": (
            {
                "type": a.get("exception.type") or "",
                "message": a.get("exception.message") or "",
                "stacktrace": a.get("exception.stacktrace") or "",
            }
            if "exception.type" in a
            else None
        ),
        "highlight": highlight is not None and ev.event_id(event) == highlight,
    }


def stream(
    conn: sqlite3.Connection,
    key: str,
    value: str,
    flows: tuple[str, ...] = (),
    page: int = 1,
    page_size: int = 200,
) -> tuple[list[dict], bool]:
    """The step events of every run where `key=value` (in `flows`, when given), newest first."""
    where = [
        "e.run IN (SELECT run FROM run_fields WHERE key = ? AND value = ?)",
        "e.name = 'sl2s.step'",
    ]
    args: list = [key, value]
    if flows:
        where.append(f"e.flow IN ({','.join('?' for _ in flows)})")
        args += list(flows)
    rows = conn.execute(
        "SELECT e.data FROM events e WHERE "
        + " AND ".join(where)
        + " ORDER BY e.ts DESC, e.event_id DESC LIMIT ? OFFSET ?",
        args + [page_size + 1, (max(1, page) - 1) * page_size],
    ).fetchall()
    items = []
    for (data,) in rows[:page_size]:
        event = orjson.loads(data)
        item = event_item(event, None, None, None)
        item["cid"] = ev.correlation_id(event)
        meta = ev.attrs(event).get("sl2s.run_meta")
        item["meta"] = meta if isinstance(meta, dict) else {}
        items.append(item)
    return items, len(rows) > page_size


def plan_terminals(lock_paths) -> dict[str, str]:
    """flow -> last step, from lock files' `plan_lines` (the step on the highest plan line)."""
    out: dict[str, str] = {}
    for path in lock_paths:
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        for flow, lines in (data.get("plan_lines") or {}).items():
            if isinstance(lines, dict) and lines:
                out[flow] = max(lines.items(), key=lambda kv: kv[1])[0]
    return out
