"""Error groups with a life cycle, deploys and the revision of a copy without .git (issue: errors
reach people first, items 1 and 3)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from observe_tree import clean_env, make_tree, run_job, sl2s

from sl2s.observe import errors as er
from sl2s.observe.deploys import Deploy, suspected
from sl2s.observe.errorstore import ErrorStore
from sl2s.observe.incidents import list_incidents


def occ(
    ts: str, revision: str | None = None, fp: str = "f1", eid: str | None = None, **kw
):
    return er.Occurrence(
        fingerprint=fp,
        exception_type="IndexError",
        message="empty",
        frames=("server/job.py:step",),
        timestamp=ts,
        machine=kw.pop("machine", "server"),
        revision=revision,
        event_id=eid,
        **kw,
    )


def test_life_cycle_new_seen_resolved_reactivated():
    g, what = er.observe(None, occ("2026-01-01T00:00:01Z", "r1"))
    assert (what, g.state, g.count) == ("new", "open", 1)
    g, what = er.observe(g, occ("2026-01-01T00:00:02Z", "r1"))
    assert (what, g.count) == ("seen", 2)
    g = er.transition(
        g, "resolved", "2026-01-01T00:00:03Z", revision="r2", revisions_seen=("r1",)
    )
    assert g.shown_state == "resolved in r2"
    g2, what = er.observe(g, occ("2026-01-01T00:00:04Z", "r1"))
    assert what == "seen" and g2.state == "resolved"  # old code still running
    g3, what = er.observe(g, occ("2026-01-01T00:00:02.5Z", "r2"))
    assert what == "seen"  # an occurrence from before the resolution, read late
    g4, what = er.observe(g, occ("2026-01-01T00:00:05Z", "r2"))
    assert (what, g4.shown_state, g4.reactivations) == ("reactivated", "reactivated", 1)


def test_ignored_and_acknowledged_groups_are_counted_not_announced():
    g, _ = er.observe(None, occ("2026-01-01T00:00:01Z"))
    ignored = er.transition(g, "ignored", "2026-01-01T00:00:02Z")
    assert er.observe(ignored, occ("2026-01-01T00:00:03Z"))[1] == "ignored"
    acked = er.transition(g, "acknowledged", "2026-01-01T00:00:02Z")
    g2, what = er.observe(acked, occ("2026-01-01T00:00:03Z"))
    assert (what, g2.state, g2.count) == ("seen", "acknowledged", 2)
    with pytest.raises(ValueError, match="unknown state"):
        er.transition(g, "fixed", "2026-01-01T00:00:02Z")


stamps = st.integers(0, 59).map(lambda s: f"2026-01-01T00:00:{s:02d}Z")


@given(
    st.lists(
        st.tuples(stamps, st.sampled_from(["r1", "r2", None])), min_size=1, max_size=30
    )
)
def test_count_and_first_last_seen_follow_the_occurrences(items):
    group = None
    for ts, rev in items:
        group, _ = er.observe(group, occ(ts, rev))
    assert group.count == len(items)
    assert group.first_seen == min(ts for ts, _ in items)
    assert group.last_seen == max(ts for ts, _ in items)


def test_suspected_deploy_is_the_one_it_appeared_after():
    deploys = [
        Deploy(1, "r1", "2026-01-01T00:00:00Z"),
        Deploy(2, "r2", "2026-01-02T00:00:00Z"),
        Deploy(3, "r3", "2026-01-03T00:00:00Z"),
    ]
    assert suspected(deploys, "2025-12-31T00:00:00Z") is None
    assert suspected(deploys, "2026-01-02T05:00:00Z").id == 2
    # first seen in r1 (a replica not yet updated) after deploy 2: r1's deploy
    assert suspected(deploys, "2026-01-02T05:00:00Z", "r1").id == 1


def test_the_store_counts_an_event_once_and_keeps_facets(tmp_path):
    with ErrorStore(tmp_path) as store:
        assert (
            store.record(occ("2026-01-01T00:00:01Z", "r1", eid="e1", host="h1"))[1]
            == "new"
        )
        assert store.record(occ("2026-01-01T00:00:01Z", "r1", eid="e1", host="h1"))[
            1
        ] == ("duplicate")
        store.record(
            occ("2026-01-01T00:00:02Z", "r2", eid="e2", host="h2", machine="other")
        )
        g = store.find("f")
        assert g.count == 2
        assert g.facets["host"] == {"h1": 1, "h2": 1}
        assert g.facets["machine"] == {"server": 1, "other": 1}
        assert g.facets["revision"] == {"r1": 1, "r2": 1}
    with ErrorStore(tmp_path) as again:  # kept across processes
        assert again.set_state("f1", "resolved", revision="r3").revisions_before == (
            "r1",
            "r2",
        )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("errors"))


def test_errors_commands_resolve_and_reactivate_across_revisions(tree, tmp_path):
    logs = str(tmp_path / "logs")
    done = sl2s(
        "deploys",
        "record",
        str(tree),
        "--revision",
        "r1",
        "--target",
        "prod",
        "--logs",
        logs,
        env=clean_env(),
    )
    assert (
        done.returncode == 0 and "recorded deploy #1 of r1" in done.stdout
    ), done.stderr
    assert (
        run_job(tree, "perm-1", SL2S_LOG_DIR=logs, SL2S_REVISION="r1").returncode == 1
    )
    assert (
        run_job(tree, "empty-1", SL2S_LOG_DIR=logs, SL2S_REVISION="r1").returncode == 1
    )
    listed = sl2s("errors", "list", "--logs", logs, env=clean_env())
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("  open  ") == 2
    assert "PermissionError: no access to perm-1" in listed.stdout
    assert "suspected: deploy #1 of r1" in listed.stdout
    index = next(line for line in listed.stdout.splitlines() if "IndexError" in line)
    fp = index.split()[0]
    done = sl2s(
        "errors", "resolve", fp[:8], "--in", "r2", "--logs", logs, env=clean_env()
    )
    assert done.stdout.startswith(f"{fp}  resolved in r2"), done.stderr
    sl2s(
        "deploys",
        "record",
        str(tree),
        "--revision",
        "r2",
        "--logs",
        logs,
        env=clean_env(),
    )
    nothing = sl2s("errors", "list", "--since", "r2", "--logs", logs, env=clean_env())
    assert (nothing.returncode, nothing.stdout) == (0, "no error groups\n")
    assert (
        run_job(tree, "empty-2", SL2S_LOG_DIR=logs, SL2S_REVISION="r2").returncode == 1
    )
    back = sl2s("errors", "list", "--since", "r2", "--logs", logs, env=clean_env())
    assert back.returncode == 1
    assert back.stdout.startswith(f"{fp}  reactivated  2x  IndexError")
    assert "suspected: deploy #2 of r2" in back.stdout
    shown = sl2s("errors", "show", fp, "--logs", logs, env=clean_env()).stdout
    assert "revisions     r1 (1), r2 (1)" in shown
    assert "reactivated   " in shown
    ignored = sl2s("errors", "ignore", "nope", "--logs", logs, env=clean_env())
    assert (
        ignored.returncode == 1 and "no error group matching 'nope'" in ignored.stderr
    )
    assert "Traceback" not in ignored.stderr


def test_a_copy_without_git_reports_the_revision_given_at_deploy_time(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    tree = make_tree(repo, "svc")
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "x"], check=True)
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    done = sl2s(
        "deploy",
        str(tree),
        "--target",
        "compose",
        "-o",
        str(tmp_path / "c.yaml"),
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    assert f"recorded deploy #1 of {head}" in done.stderr
    image = tmp_path / "image" / "app"  # what a container holds: the tree, no .git
    shutil.copytree(tree, image / "svc", ignore=shutil.ignore_patterns(".sl2s"))
    shutil.copy(repo / "job.csv", image / "job.csv")
    assert not any(p.name == ".git" for p in (image, *image.parents))
    logs = tmp_path / "logs"
    assert run_job(image / "svc", "perm-9", SL2S_LOG_DIR=str(logs)).returncode == 1
    (incident,) = list_incidents(logs)
    assert incident.header["git.revision"] == head
    assert incident.header["git.revision.from"] == "sl2s.revision"
    shown = sl2s("incidents", "show", str(logs), incident.id, env=clean_env()).stdout
    assert f"revision      {head} (from sl2s.revision)" in shown


def test_without_any_revision_deploy_says_so_and_records_nothing(tree, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy, ignore=shutil.ignore_patterns(".sl2s", "sl2s.revision"))
    done = sl2s("deploys", "record", str(copy), env=clean_env())
    assert done.returncode == 1
    assert "no revision known" in done.stderr and "Traceback" not in done.stderr
    assert not (copy / "sl2s.revision").exists()


def test_patterns_new_since_reports_a_new_exception_at_a_step_that_failed_before(
    tree, tmp_path
):
    logs, state = str(tmp_path / "logs"), str(tmp_path / "state.json")
    plan = str(tree.parent / "job.csv")
    assert run_job(tree, "perm-1", SL2S_LOG_DIR=logs).returncode == 1
    first = sl2s("patterns", plan, logs, "--new-since", state, env=clean_env())
    assert (
        first.returncode == 1 and "NEW  error  1x  PermissionError at " in first.stdout
    )
    assert run_job(tree, "perm-2", SL2S_LOG_DIR=logs).returncode == 1
    same = sl2s("patterns", plan, logs, "--new-since", state, env=clean_env())
    assert (same.returncode, same.stdout.splitlines()[-1].split(" in ")[0]) == (
        0,
        "0 new pattern(s)",
    )
    assert run_job(tree, "empty-3", SL2S_LOG_DIR=logs).returncode == 1
    new = sl2s("patterns", plan, logs, "--new-since", state, env=clean_env())
    assert new.returncode == 1
    assert new.stdout.startswith(
        f"NEW  error  1x  IndexError at {tree.name}/server/job.py:17 (job/server_works_on_job)"
    ), new.stdout
    assert new.stdout.splitlines()[-1].startswith("1 new pattern(s)")
