"""Crash details of a failing step (issue: errors reach people first, item 2): the user's line
(not random.py), its local variables and the step's arguments with secrets masked, the traceback
in `incidents show`, and a source link at the revision from the URL template setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from observe_tree import clean_env, make_tree, run_job, sl2s

from sl2s.observe.events import open_lines
from sl2s.observe.incidents import list_incidents
from sl2s.runtime.core import crash
from sl2s.runtime.redact import Masker

TOKEN = "tok-s3cr3t-42"


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    tree = make_tree(base)
    (tree / "sl2s.toml").write_text(
        '[links]\nsource = "{repo}/blob/{revision}/{path}#L{line}"\n'
        'repo = "https://github.com/acme/jobs/"\n',
        encoding="utf-8",
    )
    logs = base / "logs"
    done = run_job(
        tree, "empty-7", TOKEN, SL2S_LOG_DIR=str(logs), SL2S_REVISION="r-2041"
    )
    assert done.returncode == 1, done.stderr
    (incident,) = list_incidents(logs)
    return tree, logs, incident


def test_the_crashing_line_is_the_users_not_random_py(failed):
    tree, _logs, incident = failed
    a = incident.failure["attributes"]
    source = (tree / "server" / "job.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "random.choice([])" in text)
    assert a["sl2s.raised_at"] == f"{tree.name}/server/job.py:{line}"
    assert incident.summary()["links"]["source"] == a["sl2s.raised_at"]
    assert incident.header["links"]["source_url"] == (
        f"https://github.com/acme/jobs/blob/r-2041/{tree.name}/server/job.py#L{line}"
    )
    (frame,) = a["sl2s.crash.frames"]
    assert frame["line"] == line and frame["function"] == "server_works_on_job"
    assert frame["code"] == 'return {"pick": random.choice([])}'


def test_locals_and_arguments_are_shown_with_the_secret_masked(failed):
    _tree, logs, incident = failed
    a = incident.failure["attributes"]
    assert a["sl2s.crash.arguments"] == {"job": "'empty-7'", "token": "***"}
    local = a["sl2s.crash.frames"][0]["locals"]
    assert local["attempts"] == "3"
    assert local["digest"].startswith("'") and len(local["digest"]) == 14
    assert local["note"] == "'token is ***'"  # by value, in another variable
    for path in logs.iterdir():
        assert not any(TOKEN.encode() in line for line in open_lines(path)), path


def test_incidents_show_prints_the_traceback_locals_and_link(failed):
    _tree, logs, incident = failed
    done = sl2s("incidents", "show", str(logs), incident.id, env=clean_env())
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "  arguments\n    job = 'empty-7'\n    token = ***\n" in out
    assert "        attempts = 3\n" in out
    assert "  traceback\n    Traceback (most recent call last):" in out
    assert "IndexError: Cannot choose from an empty sequence" in out
    assert "revision      r-2041 (from SL2S_REVISION)" in out
    assert "https://github.com/acme/jobs/blob/r-2041/" in out
    assert TOKEN not in out


def test_details_cut_long_values_and_mask_by_name_and_value():
    def step(password, rows):
        big = "x" * 1000
        mention = f"pw={password}"
        return rows[5], big, mention

    try:
        step("hunter2", [])
    except IndexError as error:
        tb = error.__traceback__.tb_next  # start at the step, as the runtime does
    found = crash.details(
        tb,
        relative=lambda p: Path(p).name,
        scrub=Masker(["hunter2"]).text,
        secret_names={"password"},
    )
    (frame,) = found["frames"]
    assert found["raised_at"] == f"test_observe_crash.py:{frame['line']}"
    assert found["arguments"] == {"password": "***", "rows": "[]"}
    assert frame["locals"]["mention"] == "'pw=***'"
    assert len(frame["locals"]["big"]) == crash.MAX_REPR
    assert frame["locals"]["big"].endswith("…")


def test_a_failing_repr_does_not_hide_the_crash():
    class Odd:
        def __repr__(self):
            raise RuntimeError("no")

    def step(value):
        odd = Odd()  # noqa: F841
        raise KeyError(value)

    try:
        step(1)
    except KeyError as error:
        tb = error.__traceback__.tb_next
    found = crash.details(tb, relative=str, scrub=lambda t: t)
    assert found["frames"][0]["locals"]["odd"].startswith("<Odd instance at 0x")


def test_a_long_value_is_cut_after_masking_never_through_a_secret():
    text = "a" * 150 + " hunter2 " + "b" * 300
    for value in (text, [text], {"k": text}):
        out = crash.shown(value, Masker(["hunter2"]).text)
        assert "hunt" not in out and len(out) == crash.MAX_REPR
    assert crash.shown(list(range(10**6)), str).endswith(", ...]")  # not all repr'd
