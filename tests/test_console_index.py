"""The console's index and queries (sl2s.console.index, .queries, .settings, .diagram), over
hand-written event files in tests/data/console/ and the synthetic events of bench/synthetic.py.
"""

from __future__ import annotations

import os
import random
import shutil
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from synthetic import demo_plan, flow_run

from sl2s.console import queries
from sl2s.console import settings as cs
from sl2s.console.diagram import sequence_svg
from sl2s.console.index import Index, flat_fields, parse_batch
from sl2s.diagnostics import Sl2sError

DATA = Path(__file__).resolve().parent / "data" / "console"
PARENT = "aaaa0000000000000000000000000001"
CHILD = "bbbb0000000000000000000000000002"
FAILED = "cccc0000000000000000000000000003"
LATER = datetime(
    2026, 12, 3, tzinfo=timezone.utc
)  # long after the fixtures: nothing pending


@pytest.fixture
def logs(tmp_path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    shutil.copy(DATA / "run_meta_parent_and_child.jsonl", d / "server.jsonl")
    return d


@pytest.fixture
def index(tmp_path, logs) -> Index:
    idx = Index(tmp_path / "index.sqlite3")
    idx.refresh([logs])
    yield idx
    idx.close()


def runs(idx: Index, **kw) -> list[str]:
    page = queries.list_runs(idx.conn, queries.RunFilter(**kw), now=LATER)
    return [r["cid"] for r in page.runs]


def test_runs_are_found_by_field_value_metadata_flow_machine_outcome_and_time(index):
    assert runs(index, fields=(("username", "ann"),)) == [PARENT, CHILD]
    assert runs(index, fields=(("actor", "bob"),)) == [PARENT, CHILD]
    assert runs(index, fields=(("ticket", "JIRA-12"), ("username", "ann"))) == [
        PARENT,
        CHILD,
    ]
    assert runs(index, fields=(("tenant_id", "1234"),)) == [FAILED]
    assert runs(index, fields=(("username", "nobody"),)) == []
    assert runs(index, flow="feed") == [CHILD]
    assert runs(index, machine="client") == [FAILED, PARENT]
    assert runs(index, outcome="failed") == [FAILED]
    # the last step of a flow: the one most runs without a failure end with
    assert runs(index, outcome="completed") == [PARENT, CHILD]
    assert runs(index, since="2026-12-01 17:30") == [FAILED]
    assert runs(index, until="2026-12-01T17:30") == [PARENT, CHILD]
    assert runs(index, text="wrong password") == [FAILED]
    assert runs(index, text="PermissionError") == [FAILED]


def test_newest_first_and_paged(tmp_path):
    logs = tmp_path / "many"
    logs.mkdir()
    rng = random.Random(3)
    login = demo_plan().flow("login").steps
    with (logs / "all.jsonl").open("wb") as handle:
        for n in range(23):
            for e in flow_run(login, cid=f"{n:032x}", start_ms=n * 1000, rng=rng):
                handle.write(orjson.dumps(e) + b"\n")
    idx = Index(tmp_path / "i.sqlite3")
    idx.refresh([logs])
    seen = []
    for page in (1, 2, 3):
        result = queries.list_runs(idx.conn, queries.RunFilter(page=page), page_size=10)
        seen += [r["cid"] for r in result.runs]
        assert result.more == (page < 3)
    assert seen == [f"{n:032x}" for n in reversed(range(23))]


def test_one_run_in_causal_order_with_hops_metadata_and_its_child(index):
    view = queries.get_run(index.conn, PARENT, now=LATER)
    steps = [
        (i["machine"], i["step"]) if i["kind"] == "event" else (i["hop"], i["target"])
        for i in view.items
    ]
    assert steps == [
        ("client", "user_attempted_login_as_username_and_password"),
        ("call", "server"),
        ("server", "received_request_to_login_as_username"),
        ("server", "testing_password_for_username"),
        ("server", "setting_session_for_username"),
        ("server", "finish_handling_user_login"),
        ("return", "client"),
        ("client", "login_successful"),
    ]
    assert view.run["meta"] == {
        "actor": "bob",
        "ticket": "JIRA-12",
        "reason": "ann cannot log in",
    }
    assert view.run["outcome"] == "completed"
    assert view.children == [
        {"cid": CHILD, "flow": "feed", "parent_step": "setting_session_for_username"}
    ]
    child = queries.get_run(index.conn, CHILD, now=LATER)
    assert (child.run["parent"], child.run["parent_step"]) == (
        PARENT,
        "setting_session_for_username",
    )
    assert queries.run_of_event(index.conn, "20000000000000000000000000000004") == CHILD
    marked = queries.get_run(
        index.conn, PARENT, highlight="20000000000000000000000000000002"
    )
    assert [i["id"] for i in marked.items if i.get("highlight")] == [
        "20000000000000000000000000000002"
    ]


def test_a_stream_lists_every_step_of_the_runs_with_one_key_value(index):
    items, more = queries.stream(index.conn, "username", "ann")
    assert not more
    assert {i["cid"] for i in items} == {PARENT, CHILD}
    assert [i["ts"] for i in items] == sorted((i["ts"] for i in items), reverse=True)
    only_feed, _ = queries.stream(index.conn, "actor", "bob", flows=("feed",))
    assert [i["step"] for i in only_feed] == [
        "retrieving_feed_information",
        "fetching_feed_information",
    ]


def test_refresh_reads_only_what_is_new_and_starts_over_on_a_replaced_file(
    tmp_path, logs
):
    idx = Index(tmp_path / "i.sqlite3")
    first = idx.refresh([logs])
    assert (first.events, first.runs) == (11, 3)
    again = idx.refresh([logs])
    assert (again.files_read, again.lines, again.events) == (0, 0, 0)
    leaked = (DATA / "leaked_secret_value.jsonl").read_bytes()
    with (logs / "server.jsonl").open("ab") as handle:
        handle.write(leaked[: leaked.index(b"\n") + 1])
        handle.write(b'{"torn": ')  # a line still being written: not read yet
    more = idx.refresh([logs])
    assert (more.lines, more.events, more.runs) == (1, 1, 1)
    with (logs / "server.jsonl").open("ab") as handle:
        handle.write(b'"line"}\n')
    assert idx.refresh([logs]).lines == 1
    # rotated: a new file (new inode) under the same name is read from its start; duplicates
    # of events already indexed are ignored
    os.unlink(logs / "server.jsonl")
    shutil.copy(DATA / "run_meta_parent_and_child.jsonl", logs / "server.jsonl")
    rotated = idx.refresh([logs])
    assert (rotated.lines, rotated.events) == (11, 0)
    assert idx.conn.execute("SELECT count(*) FROM events").fetchone()[0] == 12
    assert (
        idx.conn.execute(
            "SELECT count(*) FROM events_fts WHERE events_fts MATCH 'dave'"
        ).fetchone()[0]
        == 1
    )


def _events(n_runs: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    plan = demo_plan()
    out = []
    for n in range(n_runs):
        flow = plan.flow("login" if n % 3 else "feed").steps
        fail = flow[-1].id if n % 5 == 4 else None
        out += [
            orjson.dumps(e)
            for e in flow_run(
                flow, cid=f"{seed:08x}{n:024x}", start_ms=n, rng=rng, fail_at=fail
            )
        ]
    rng.shuffle(out)  # machines write concurrently: a run's events arrive in any order
    return out


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.integers(1, 12), st.lists(st.integers(0, 10_000), max_size=6), st.integers(0, 99)
)
def test_an_index_built_piece_by_piece_equals_one_built_at_once(
    tmp_path_factory, n_runs, cuts, seed
):
    lines = _events(n_runs, seed)
    base = tmp_path_factory.mktemp("prop")
    whole = base / "whole"
    whole.mkdir()
    (whole / "m.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    once = Index(base / "once.sqlite3")
    once.refresh([whole])
    pieces = base / "pieces"
    pieces.mkdir()
    stepwise = Index(base / "step.sqlite3")
    bounds = sorted({c % (len(lines) + 1) for c in cuts}) + [len(lines)]
    start = 0
    for end in bounds:
        with (pieces / "m.jsonl").open("ab") as handle:
            handle.write(b"".join(line + b"\n" for line in lines[start:end]))
        stepwise.refresh([pieces])
        start = end
    table = (
        "SELECT cid, flow, first_ts, last_ts, events, failures, last_step, last_step_at "
        "FROM runs ORDER BY cid"
    )
    assert (
        once.conn.execute(table).fetchall() == stepwise.conn.execute(table).fetchall()
    )
    fields = (
        "SELECT key, value, cid FROM run_fields JOIN runs ON runs.id = run_fields.run "
        "ORDER BY key, value, cid"
    )
    assert (
        once.conn.execute(fields).fetchall() == stepwise.conn.execute(fields).fetchall()
    )
    fts = "SELECT count(*) FROM events_fts WHERE events_fts MATCH 'login'"
    assert once.conn.execute(fts).fetchone() == stepwise.conn.execute(fts).fetchone()
    once.close()
    stepwise.close()


def test_a_secret_value_a_writer_left_in_clear_never_enters_the_index(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(DATA / "leaked_secret_value.jsonl", logs / "legacy.jsonl")
    idx = Index(tmp_path / "i.sqlite3")
    idx.refresh([logs])
    idx.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    idx.close()
    for path in tmp_path.glob("i.sqlite3*"):
        assert b"Tr0ub4dor" not in path.read_bytes(), path
    idx = Index(tmp_path / "i.sqlite3")
    view = queries.get_run(idx.conn, "dddd0000000000000000000000000004")
    leaked = view.items[-1]
    assert leaked["fields"] == {
        "username": "dave",
        "password": "***",
        "note": "was ***",
    }
    assert leaked["body"] == "retrying with *** for dave"
    assert leaked["exception"]["message"] == "bad ***"
    assert queries.list_runs(idx.conn, queries.RunFilter(text="Tr0ub4dor")).runs == []


def test_secret_names_from_the_environment_are_masked_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("SL2S_SECRETS", "pin")
    line = orjson.dumps(
        {
            "body": "x",
            "attributes": {
                "sl2s.event_id": "1",
                "sl2s.correlation_id": "c",
                "sl2s.fields": {"pin": "4711", "n": "pin 4711"},
            },
        }
    )
    idx = Index(tmp_path / "i.sqlite3")
    parsed, _ = parse_batch([line], idx.names)
    data = orjson.loads(parsed.rows[0][-1])
    assert data["attributes"]["sl2s.fields"] == {"pin": "***", "n": "pin ***"}


def test_flat_fields_index_scalars_and_one_level_of_mappings():
    fields = {
        "a": 1,
        "b": True,
        "c": "***",
        "d": {"e": "x", "f": [1]},
        "g": [1, 2],
        "h": None,
        "i": "y" * 300,
    }
    assert sorted(flat_fields(fields)) == [("a", "1"), ("b", "true"), ("d.e", "x")]


def test_search_text_is_split_into_field_filters_and_words():
    assert queries.parse_search('username=ann reason="fix it" wrong password') == (
        (("username", "ann"), ("reason", "fix it")),
        "wrong password",
    )
    assert (
        queries.fts_query('say "hi wrong-password') == '"say" "hi" "wrong" "password"'
    )
    with pytest.raises(ValueError):
        queries.outcome_sql("lost", {}, LATER)


def test_settings_from_sl2s_toml_and_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [*cs.KEYS.values(), *(env for _, env in cs.LINKS.values())]:
        monkeypatch.delenv(name, raising=False)
    services = tmp_path / "services"
    (services / ".sl2s" / "logs").mkdir(parents=True)
    (services / "sl2s.toml").write_text(
        '[console]\nurl = "http://127.0.0.1:8700"\n'
        '[links]\nrepo = "https://gitlab.com/org/app"\n'
        'source = "{repo}/-/blob/{revision}/{path}#L{line}"\n'
    )
    s = cs.load([services / ".sl2s" / "logs"])
    assert s.url == "http://127.0.0.1:8700"
    assert cs.source_link(s, "services/server/login.py", 17, "abc123") == (
        "https://gitlab.com/org/app/-/blob/abc123/services/server/login.py#L17"
    )
    monkeypatch.setenv("SL2S_CONSOLE_URL", "https://console.example")
    monkeypatch.setenv("SL2S_SOURCE_URL", cs.GITHUB)
    s = cs.load([services / ".sl2s" / "logs"])
    assert cs.event_link(s.url, "42") == "https://console.example/event/42"
    assert (
        cs.source_link(s, "a b.py", 3)
        == "https://gitlab.com/org/app/blob/HEAD/a%20b.py#L3"
    )
    assert cs.source_link(cs.Settings(), "a.py", 3) == ""
    (services / "sl2s.toml").write_text("[console]\nport = 1\n")
    with pytest.raises(
        Sl2sError, match=r"sl2s.toml: \[console\] has unknown setting\(s\): port"
    ):
        cs.load([services])


def test_the_sequence_diagram_has_a_note_per_step_and_an_arrow_per_hop(index):
    view = queries.get_run(
        index.conn, PARENT, highlight="20000000000000000000000000000002"
    )
    svg = str(sequence_svg("login", view.run["machines"], view.items))
    assert (
        svg.count('class="seq-note"') == 1 + 6 - 1
    )  # the flow's note, the steps but one
    assert svg.count("seq-highlight") == 1
    assert svg.count('class="seq-msg"') == 1 and svg.count("seq-return") == 1
    assert svg.count('class="seq-actor"') == 4  # two machines, top and bottom
    assert "<script" not in svg
    hostile = [
        {
            "kind": "event",
            "id": "1",
            "machine": "<m>",
            "step": "s",
            "body": "<img src=x>",
        }
    ]
    assert "<img" not in str(sequence_svg("<f>", ["<m>"], hostile))


def test_a_field_value_links_to_the_search_that_finds_it():
    from sl2s.console.app import field_query

    assert field_query("username", "ann") == "username=ann"
    assert field_query("reason", "fix it") == "reason='fix it'"
    assert queries.parse_search(field_query("reason", "it's")) == (
        (("reason", "it's"),),
        "",
    )
    assert field_query("tenant_id", 1234) == "tenant_id=1234"
    assert field_query("password", "***") == ""
    assert field_query("address", {"city": "x"}) == ""


def test_an_index_of_another_layout_is_rebuilt_from_the_logs(tmp_path, logs):
    import sqlite3

    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE runs (cid TEXT PRIMARY KEY) WITHOUT ROWID;"
    )
    conn.close()
    idx = Index(old)
    assert idx.refresh([logs]).events == 11
    assert runs(idx, fields=(("username", "carol"),)) == [FAILED]
    idx.close()
