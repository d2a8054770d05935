"""All-or-nothing writes: the journal replays an interrupted apply or discards an uncommitted one."""

from __future__ import annotations

import json

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.rebalance import journal


def tree(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_apply_writes_creates_and_deletes_and_leaves_no_journal(tmp_path):
    (tmp_path / "a.py").write_bytes(b"a\n")
    (tmp_path / "gone.py").write_bytes(b"x\n")
    changed = journal.apply(
        tmp_path, {"a.py": b"A\n", "new/b.py": b"B\n", "gone.py": None}
    )
    assert changed == 3
    assert tree(tmp_path) == {"a.py": b"A\n", "new/b.py": b"B\n"}


def test_unchanged_files_are_not_rewritten(tmp_path):
    (tmp_path / "a.py").write_bytes(b"a\n")
    before = (tmp_path / "a.py").stat().st_mtime_ns
    assert journal.apply(tmp_path, {"a.py": b"a\n"}) == 0
    assert (tmp_path / "a.py").stat().st_mtime_ns == before
    assert not (tmp_path / journal.JOURNAL).exists()


def _committed_journal(root, entries):
    body = json.dumps({"version": 1, "files": entries}).encode()
    import hashlib

    head = json.dumps({"sha256": hashlib.sha256(body).hexdigest()}).encode()
    (root / journal.JOURNAL).write_bytes(head + b"\n" + body)


def _entry(path, before, after):
    return {
        "path": path,
        "before": journal._encode(before),
        "after": journal._encode(after),
    }


def test_recover_replays_a_committed_journal_from_any_partial_state(tmp_path):
    (tmp_path / "a.py").write_bytes(b"A-after\n")  # already written before the crash
    (tmp_path / "b.py").write_bytes(b"b-before\n")  # not yet
    (tmp_path / "b.py.sl2s-tmp").write_bytes(b"b-aft")  # half-written temporary
    _committed_journal(
        tmp_path,
        [
            _entry("a.py", b"a-before\n", b"A-after\n"),
            _entry("b.py", b"b-before\n", b"B-after\n"),
            _entry("c/new.py", None, b"new\n"),
        ],
    )
    assert "completed" in journal.recover(tmp_path)
    assert tree(tmp_path) == {
        "a.py": b"A-after\n",
        "b.py": b"B-after\n",
        "c/new.py": b"new\n",
    }
    assert journal.recover(tmp_path) is None


def test_uncommitted_journal_is_discarded_and_tree_stays_as_before(tmp_path):
    (tmp_path / "a.py").write_bytes(b"a\n")
    (tmp_path / journal.PARTIAL).write_bytes(b'{"sha256": "trunc')
    assert "nothing had been changed" in journal.recover(tmp_path)
    assert tree(tmp_path) == {"a.py": b"a\n"}


def test_file_edited_after_the_crash_is_never_overwritten(tmp_path):
    (tmp_path / "a.py").write_bytes(b"user edited this\n")
    _committed_journal(tmp_path, [_entry("a.py", b"a-before\n", b"A-after\n")])
    with pytest.raises(Sl2sError, match="changed since an interrupted rebalance"):
        journal.recover(tmp_path)
    assert (tmp_path / "a.py").read_bytes() == b"user edited this\n"
    assert (tmp_path / journal.JOURNAL).exists()


def test_corrupt_journal_touches_nothing(tmp_path):
    (tmp_path / "a.py").write_bytes(b"a\n")
    (tmp_path / journal.JOURNAL).write_bytes(
        b'{"sha256": "00"}\n{"version": 1, "files": []}'
    )
    with pytest.raises(Sl2sError, match="unreadable"):
        journal.recover(tmp_path)
    assert (tmp_path / "a.py").read_bytes() == b"a\n"


def test_rollback_restores_before(tmp_path):
    (tmp_path / "a.py").write_bytes(b"A-after\n")
    (tmp_path / "n.py").write_bytes(b"new\n")
    _committed_journal(
        tmp_path, [_entry("a.py", b"a\n", b"A-after\n"), _entry("n.py", None, b"new\n")]
    )
    journal.rollback(tmp_path)
    assert tree(tmp_path) == {"a.py": b"a\n"}


def test_error_while_writing_rolls_back(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_bytes(b"a\n")
    (tmp_path / "b.py").write_bytes(b"b\n")
    real = journal._write_atomic
    calls = []

    def flaky(path, data):
        calls.append(path.name)
        if path.name == "b.py" and data == b"B\n":
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(journal, "_write_atomic", flaky)
    with pytest.raises(OSError):
        journal.apply(tmp_path, {"a.py": b"A\n", "b.py": b"B\n"})
    assert tree(tmp_path) == {"a.py": b"a\n", "b.py": b"b\n"}


def test_recover_from_argv_uses_out_option(tmp_path):
    out = tmp_path / "svc"
    out.mkdir()
    (out / "a.py").write_bytes(b"a\n")
    _committed_journal(out, [_entry("a.py", b"a\n", b"A\n")])
    assert (
        journal.recover_from_argv(
            ["generate", "plan.csv", "--out", str(tmp_path / "nope")]
        )
        == []
    )
    assert journal.recover_from_argv(["generate", "plan.csv", f"--out={out}"])
    assert (out / "a.py").read_bytes() == b"A\n"


def test_recover_from_argv_finds_a_positional_directory(tmp_path):
    (tmp_path / "a.py").write_bytes(b"a\n")
    _committed_journal(tmp_path, [_entry("a.py", b"a\n", b"A\n")])
    assert journal.recover_from_argv(["run", str(tmp_path), "login"])
    assert (tmp_path / "a.py").read_bytes() == b"A\n"


def test_ctrl_c_while_writing_rolls_back(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_bytes(b"a\n")
    (tmp_path / "b.py").write_bytes(b"b\n")
    real = journal._write_atomic

    def interrupted(path, data):
        if path.name == "b.py" and data == b"B\n":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(journal, "_write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        journal.apply(tmp_path, {"a.py": b"A\n", "b.py": b"B\n", "c.py": b"C\n"})
    assert tree(tmp_path) == {"a.py": b"a\n", "b.py": b"b\n"}
