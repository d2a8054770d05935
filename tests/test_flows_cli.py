"""`sl2s flows list|show|resume|cancel` (docs/durability.md): the command as a user runs it, in
subprocesses, on the relay system with counting user code (tests/relay_flows.py) — with the default
SQLite store, and once with the PostgreSQL store of a throw-away cluster (tests/pg.py).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from harness import SL2S, sl2s, stop  # noqa: E402  (isort: after relay_flows)
from relay_flows import (  # puts tests/data/http on sys.path; the `relay` fixture: conftest.py
    SECRET,
    STEPS,
    assert_logs_agree_with_store,
    counted,
    listening_socket,
    serve_on,
    the_flow,
)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    text = done.stderr.strip()
    assert text.count("\n") == 0 and "Traceback" not in text, text
    return text


def test_list_filters_by_state_flow_machine_and_age_and_show_tells_the_run(relay):
    tree, env, counts = relay
    ok = sl2s("run", str(tree), "relay", "job=ok", f"token={SECRET}", env=env)
    assert ok.returncode == 0, ok.stderr
    Path(f"{counts}.boom").write_text("")
    assert (
        sl2s(
            "run", str(tree), "relay", "job=bad", f"token={SECRET}", env=env
        ).returncode
        == 1
    )

    listed = sl2s("flows", "list", str(tree), env=env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "FLOW", "MACHINE", "AGE", "LAST", "STEP"]
    # newest first: the failed run, then the completed one
    assert [r.split()[1:4] for r in rows] == [
        ["failed", "relay", "front"],
        ["completed", "relay", "front"],
    ]
    failed_id, done_id = (r.split()[0] for r in rows)
    assert rows[0].split()[-1] == "middle_passes_job"
    assert rows[1].split()[-1] == "front_done_with_job"

    def ids(*options: str) -> list[str]:
        done = sl2s("flows", "list", str(tree), *options, env=env)
        assert done.returncode == 0, done.stderr
        if done.stdout.strip() == "no flow runs":
            return []
        return [line.split()[0] for line in done.stdout.splitlines()[1:]]

    assert ids("--state", "completed") == [done_id]
    assert ids("--state", "failed", "--flow", "relay", "--machine", "front") == [
        failed_id
    ]
    assert ids("--machine", "back") == [] and ids("--flow", "other") == []
    assert ids("--older-than", "1h") == [] and ids("--older-than", "0") == [
        failed_id,
        done_id,
    ]
    assert ids("--limit", "1") == [failed_id]
    # prune: only old flows go, completed and cancelled ones unless a state is named
    kept = sl2s("flows", "prune", str(tree), "--older-than", "1h", env=env)
    assert kept.returncode == 0 and kept.stdout.strip() == "0 flow run(s) deleted"
    pruned = sl2s("flows", "prune", str(tree), "--older-than", "0s", env=env)
    assert pruned.stdout.strip() == "1 flow run(s) deleted" and ids() == [failed_id]

    shown = sl2s("flows", "show", str(tree), failed_id[:7], env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert (
        f"flow run {failed_id}: flow 'relay' from machine 'front', failed (attempt 0)"
        in text
    )
    assert "steps done (2):" in text and "hops (0):" in text
    done_part = text[text.index("steps done") :]
    assert done_part.index("front_got_job_and_token") < done_part.index(
        "middle_passes_job"
    )
    assert (
        '"job":"bad"' in text
        and "secrets not kept (give them to resume): token" in text
    )
    assert "error: step 'back_works_on_job' of flow 'relay' failed" in text
    assert SECRET not in text


def test_a_cancelled_flow_has_its_next_hop_refused_and_cannot_be_resumed(relay):
    tree, env, counts = relay
    Path(f"{counts}.slowmiddle").write_text("")
    running = subprocess.Popen(
        [*SL2S, "run", str(tree), "relay", "job=j5", f"token={SECRET}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            counted(counts)["middle_passes_job"] == 0
        ):  # middle sleeps in its first step
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rec, _, _ = the_flow(env)  # recorded: front committed before its hop to middle
        cancelled = sl2s("flows", "cancel", str(tree), rec.correlation_id, env=env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert (
            cancelled.stdout.strip()
            == f"flow run {rec.correlation_id} ('relay') cancelled"
        )
        _, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    # middle's hop to back was refused: back never ran, the run failed saying why
    assert running.returncode == 1 and "was cancelled" in err
    assert counted(counts)["back_works_on_job"] == 0
    rec, steps, _ = the_flow(env)
    assert rec.state == "cancelled" and "back_works_on_job" not in steps
    refused = one_line_error(
        sl2s(
            "flows", "resume", str(tree), rec.correlation_id, f"token={SECRET}", env=env
        )
    )
    assert "was cancelled; it cannot be resumed" in refused


def test_bad_input_is_one_line_without_a_traceback(relay, tmp_path):
    tree, env, counts = relay
    Path(f"{counts}.boom").write_text("")
    assert (
        sl2s("run", str(tree), "relay", "job=j6", f"token={SECRET}", env=env).returncode
        == 1
    )
    rec, _, _ = the_flow(env)
    cid = rec.correlation_id
    for args, expected in (
        (("show", str(tree), "ffffffffff"), "no flow run 'ffffffffff'"),
        (("resume", str(tree), cid, "job=other"), "job is not a secret of this run"),
        (("resume", str(tree), cid, "token"), "expected FIELD=VALUE"),
        (("list", str(tmp_path / "nowhere")), "no such directory"),
    ):
        assert expected in one_line_error(sl2s("flows", *args, env=env)), args
    for args, expected in (  # usage mistakes: click's usage message, exit 2
        (
            ("list", str(tree), "--state", "sleeping"),
            "'sleeping' is not one of 'pending'",
        ),
        (("list", str(tree), "--older-than", "soon"), "--older-than 'soon'"),
    ):
        done = sl2s("flows", *args, env=env)
        assert done.returncode == 2 and expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    off = sl2s("flows", "list", str(tree), env={**env, "SL2S_STORE": "none"})
    assert "durability is off" in one_line_error(off)
    bad = sl2s("flows", "list", str(tree), env={**env, "SL2S_STORE": "mysql://x"})
    assert "not a store URL" in one_line_error(bad)
    # nothing above changed the flow
    assert the_flow(env)[0].state == "failed"


def test_resume_with_the_postgresql_store(relay, pg_url):
    import psycopg

    tree, env, counts = relay
    env = {**env, "SL2S_STORE": pg_url}
    Path(f"{counts}.boom").write_text("")
    failed = sl2s("run", str(tree), "relay", "job=pg", f"token={SECRET}", env=env)
    assert failed.returncode == 1
    listed = sl2s("flows", "list", str(tree), "--state", "failed", env=env)
    assert listed.returncode == 0, listed.stderr
    cid = listed.stdout.splitlines()[1].split()[0]
    Path(f"{counts}.boom").unlink()
    resumed = sl2s("flows", "resume", str(tree), cid, f"token={SECRET}", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert counted(counts) == {
        "front_got_job_and_token": 1,
        "middle_passes_job": 1,
        "back_works_on_job": 2,
        "middle_saw_back_finish_job": 1,
        "front_done_with_job": 1,
    }
    from sl2s.runtime.store import open_store

    store = open_store(pg_url)
    try:
        rec, steps = store.flow(cid), store.steps_of(cid)
    finally:
        store.close()
    assert rec.state == "completed" and rec.attempt == 1 and set(steps) == set(STEPS)
    assert_logs_agree_with_store(env, cid, steps)
    # nothing the database holds contains the secret
    with psycopg.connect(pg_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        assert tables
        for table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            assert not any(SECRET in row[0] for row in rows), table
    # the default SQLite file was never created: the setting chose PostgreSQL
    assert not (Path(env["SL2S_LOG_DIR"]) / "flows.sqlite3").exists()


def test_resume_remote_sends_new_keys_and_the_servers_replay_their_steps(relay):
    """A flow that failed over HTTP (back's step raised; its answer, a failure, is stored under
    the hop's key) resumed with --remote: the hops go out with the next attempt's keys, so the
    stored failures are not replayed, while every server replays the steps it had recorded.
    """
    tree, env, counts = relay
    sockets = {m: listening_socket() for m in ("middle", "back")}
    env = {
        **env,
        **{
            f"SL2S_URL_{m.upper()}": f"http://127.0.0.1:{s.getsockname()[1]}"
            for m, s in sockets.items()
        },
    }
    servers = {m: serve_on(tree, m, s, env) for m, s in sockets.items()}
    try:
        Path(f"{counts}.boom").write_text("")
        args = ("relay", "job=rm", f"token={SECRET}", "--remote")
        failed = sl2s("run", str(tree), *args, env=env)
        assert failed.returncode == 1 and "back is broken today" in failed.stderr
        rec, _, hops = the_flow(env)
        assert rec.state == "failed"
        assert sorted((h.key.split(".")[1], h.target, h.status) for h in hops) == [
            ("0", "back", 500),
            ("0", "middle", 500),
        ]
        Path(f"{counts}.boom").unlink()
        resumed = sl2s(
            "flows", "resume", str(tree), rec.correlation_id, f"token={SECRET}", "--remote",
            env=env,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
    finally:
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()
    assert counted(counts) == {
        "front_got_job_and_token": 1,
        "middle_passes_job": 1,
        "back_works_on_job": 2,
        "middle_saw_back_finish_job": 1,
        "front_done_with_job": 1,
    }
    rec, steps, hops = the_flow(env)
    assert rec.state == "completed" and rec.attempt == 1 and set(steps) == set(STEPS)
    assert sorted((h.key.split(".")[1], h.target, h.status) for h in hops) == [
        ("0", "back", 500),
        ("0", "middle", 500),
        ("1", "back", 200),
        ("1", "middle", 200),
    ]
    assert_logs_agree_with_store(env, rec.correlation_id, steps)


def test_the_store_chosen_in_sl2s_toml_serves_every_process(relay):
    """`[store] url` in the tree's sl2s.toml (beside its `[machines]`/`[hop]` settings) is the one
    store of the served machines, the calling process and `sl2s flows`."""
    tree, env, counts = relay
    (tree / "sl2s.toml").write_text(
        '[hop]\ntimeout = 20\n\n[store]\nurl = "sqlite:state/flows.sqlite3"\n'
    )
    sockets = {m: listening_socket() for m in ("middle", "back")}
    env = {
        **env,
        **{
            f"SL2S_URL_{m.upper()}": f"http://127.0.0.1:{s.getsockname()[1]}"
            for m, s in sockets.items()
        },
    }
    servers = {m: serve_on(tree, m, s, env) for m, s in sockets.items()}
    try:
        done = sl2s(
            "run",
            str(tree),
            "relay",
            "job=toml",
            f"token={SECRET}",
            "--remote",
            env=env,
        )
        assert done.returncode == 0, done.stderr
    finally:
        for proc in servers.values():
            stop(proc)
        for sock in sockets.values():
            sock.close()
    listed = sl2s("flows", "list", str(tree), "--state", "completed", env=env)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2, listed
    cid = listed.stdout.splitlines()[1].split()[0]
    shown = sl2s("flows", "show", str(tree), cid, env=env)
    assert (
        "steps done (5):" in shown.stdout and "hops (2):" in shown.stdout
    ), shown.stdout
    assert (tree / "state" / "flows.sqlite3").is_file()
    assert not (Path(env["SL2S_LOG_DIR"]) / "flows.sqlite3").exists()


def test_with_sl2s_store_none_nothing_is_recorded(relay):
    tree, env, counts = relay
    env = {**env, "SL2S_STORE": "none"}
    done = sl2s("run", str(tree), "relay", "job=off", f"token={SECRET}", env=env)
    assert done.returncode == 0, done.stderr
    assert counted(counts)["back_works_on_job"] == 1
    assert not list(Path(env["SL2S_LOG_DIR"]).glob("flows.sqlite3*"))
