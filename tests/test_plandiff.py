"""sl2s.plandiff: what changed between two plans, as text and as a pull-request comment."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sl2s import plandiff
from sl2s.diagnostics import Sl2sError
from sl2s.plan import parse_plan

DATA = Path(__file__).resolve().parent / "data" / "plandiff"
PAIRS = sorted(p.name[: -len(".old.csv")] for p in DATA.glob("*.old.csv"))


def read(name: str):
    return parse_plan((DATA / name).read_bytes(), name)


def plan(text: str, path: str = "p.csv"):
    return parse_plan(("request,log,machine\n" + text.strip() + "\n").encode(), path)


def diff(old: str, new: str):
    return plandiff.diff_plans(plan(old, "old.csv"), plan(new, "new.csv"))


def kinds(d, flow: str = "f"):
    (fd,) = [f for f in d.flows if f.flow == flow]
    return fd


@pytest.mark.parametrize("name", PAIRS)
def test_markdown_golden_for_each_pair(name, golden):
    d = plandiff.diff_plans(read(f"{name}.old.csv"), read(f"{name}.new.csv"))
    assert not d.empty
    golden(f"diff/{name}.md", plandiff.markdown(d))


def test_text_golden_for_login(golden):
    d = plandiff.diff_plans(read("login.old.csv"), read("login.new.csv"))
    golden("diff/login.txt", plandiff.text(d))


def test_pairs_cover_the_sample_plans():
    samples = {
        p.stem for p in (DATA.parent.parent.parent / "sample_plans").glob("*.csv")
    }
    assert samples and samples <= set(PAIRS)


def test_formatting_only_changes_are_no_difference():
    old = parse_plan(b"request,log,machine\nf,Start :x,a\nf,Work,b\n", "old.csv")
    new = parse_plan(
        b"# a comment\nRequest\tLog\tMachine\n\nf\tStart :x\ta\nf\tWork\tb\n", "new.csv"
    )
    d = plandiff.diff_plans(old, new)
    assert d.empty and d.flows == ()
    assert plandiff.text(d) == "--- old.csv\n+++ new.csv\nno differences\n"
    assert "No changes" in plandiff.markdown(d)


def test_changed_text_at_the_same_position_is_a_rename():
    d = diff("f,Start,a\nf,Check :x,b\nf,Done,a", "f,Start,a\nf,Verify :x,b\nf,Done,a")
    fd = kinds(d)
    assert [(c.kind, c.old.template, c.new.template) for c in fd.steps] == [
        ("renamed", "Check :x", "Verify :x")
    ]
    assert fd.hops == ()  # hops are matched through the rename


def test_same_explicit_id_with_new_text_is_a_rename_even_when_reordered():
    d = plandiff.diff_plans(read("ids.old.csv"), read("ids.new.csv"))
    steps = [(c.kind, c.new.id) for c in kinds(d, "pay").steps]
    assert ("renamed", "charge") in steps and ("reordered", "charge") in steps
    assert all(kind != "added" and kind != "removed" for kind, _ in steps)


def test_moved_added_and_removed_steps_and_their_hops():
    d = diff(
        "f,Start,a\nf,Work,a\nf,Gone,b\nf,Done,a",
        "f,Start,a\nf,Work,b\nf,Done,a\nf,Extra,c",
    )
    fd = kinds(d)
    assert [(c.kind, (c.old or c.new).template) for c in fd.steps] == [
        ("moved", "Work"),
        ("removed", "Gone"),
        ("added", "Extra"),
    ]
    hops = [(h.kind, h.hop.kind, h.hop.source, h.hop.target) for h in fd.hops]
    assert hops == [
        ("removed", "call", "a", "b"),
        ("added", "call", "a", "b"),
        ("added", "call", "a", "c"),
        ("added", "return", "c", "a"),
    ]


def test_fields_and_secrets_newly_reaching_a_machine():
    d = diff(
        "f,Got :x and #k,a\nf,Work,b\nf,Done,a",
        "f,Got :x and #k,a\nf,Work with #k on :x,b\nf,Done,a",
    )
    fd = kinds(d)
    assert [(r.name, r.machine) for r in fd.secrets] == [("k", "b")]
    assert fd.fields == ()  # :x already travelled to b
    d = diff("f,Got,a\nf,Work,b", "f,Got :y,a\nf,Work,b")
    assert [(r.name, r.machine, r.secret) for r in kinds(d).fields] == [
        ("y", "a", False),
        ("y", "b", False),
    ]


def test_secrets_that_stop_reaching_a_machine_and_fields_that_stop_crossing():
    d = diff(
        "f,Got :x and #k,a\nf,Work with #k on :x,b\nf,Done,a",
        "f,Got :x and #k,a\nf,Work,b\nf,Done,a",
    )
    fd = kinds(d)
    assert [(r.name, r.machine, r.lost) for r in fd.secrets] == [("k", "b", True)]
    assert fd.fields == ()  # :x still travels to b (the context travels)
    assert "secret '#k' no longer reaches 'b'" in plandiff.text(d)
    d = diff("f,Got :y,a\nf,Work,b\nf,Done,a", "f,Got,a\nf,Work,b\nf,Done,a")
    assert [(r.name, r.machine, r.lost) for r in kinds(d).fields] == [
        ("y", "a", True),
        ("y", "b", True),
    ]
    assert "- field `:y` no longer reaches `b`" in plandiff.markdown(d)
    # the step that used the secret moved away: it reaches the new machine, not the old one
    d = diff(
        "f,Got #k,a\nf,Use #k,b\nf,Done,a",
        "f,Got #k,a\nf,Use #k,c\nf,Done,a",
    )
    assert [(r.name, r.machine, r.lost) for r in kinds(d).secrets] == [
        ("k", "c", False),
        ("k", "b", True),
    ]


def test_flows_added_and_removed():
    d = diff("f,Start,a\ng,Old,a", "f,Start,a\nh,New :z,a\nh,More,b")
    assert [(fd.flow, fd.status) for fd in d.flows] == [
        ("h", "added"),
        ("g", "removed"),
    ]
    text = plandiff.text(d)
    assert "flow added: 2 steps on 'a', 'b'" in text
    assert "flow removed: 1 step on 'a'" in text


def test_markdown_puts_plan_text_in_code_spans():
    d = diff("f,Hi,a", "f,Hi,a\nf,Ping @octocat <b>|x|</b> `y` $$z$$,a")
    md = plandiff.markdown(d)
    line = next(text for text in md.splitlines() if "octocat" in text)
    assert (
        line
        == "- step added ``Ping @octocat <b>\\|x\\|</b> `y` $$z$$`` on `a` (line 3)"
    )


def test_an_invalid_plan_raises_with_diagnostics():
    with pytest.raises(Sl2sError) as caught:
        diff("f,Start,a", "f,Typed #pin,a\nf,Relay,b\nf,Use #pin,c")
    assert {d.path for d in caught.value.diagnostics} == {"new.csv"}


# --- properties: one edit to a plan is reported as exactly that edit ---------------------------

ROWS = st.lists(st.sampled_from("abc"), min_size=1, max_size=12)


def rows_plan(rows: list[tuple[str, str]], path: str):
    body = "".join(f"f,{text},{machine}\n" for text, machine in rows)
    return parse_plan(("request,log,machine\n" + body).encode(), path)


def numbered(machines: list[str]) -> list[tuple[str, str]]:
    return [(f"Step {n}", m) for n, m in enumerate(machines)]


def step_kinds(d):
    return [(c.kind, (c.new or c.old).template) for fd in d.flows for c in fd.steps]


@settings(max_examples=150, deadline=None)
@given(ROWS, st.data())
def test_one_edit_is_reported_as_that_edit(machines, data):
    rows = numbered(machines)
    old = rows_plan(rows, "old.csv")
    assert plandiff.diff_plans(old, rows_plan(rows, "same.csv")).empty
    at = data.draw(st.integers(0, len(rows)))
    inserted = (
        rows[:at] + [("Brand new", data.draw(st.sampled_from("abc")))] + rows[at:]
    )
    assert step_kinds(plandiff.diff_plans(old, rows_plan(inserted, "new.csv"))) == [
        ("added", "Brand new")
    ]
    k = data.draw(st.integers(0, len(rows) - 1))
    if len(rows) > 1:
        removed = rows[:k] + rows[k + 1 :]
        assert step_kinds(plandiff.diff_plans(old, rows_plan(removed, "new.csv"))) == [
            ("removed", rows[k][0])
        ]
    renamed = rows[:k] + [("Renamed step", rows[k][1])] + rows[k + 1 :]
    assert step_kinds(plandiff.diff_plans(old, rows_plan(renamed, "new.csv"))) == [
        ("renamed", "Renamed step")
    ]
    other = data.draw(st.sampled_from([m for m in "abcd" if m != rows[k][1]]))
    moved = rows[:k] + [(rows[k][0], other)] + rows[k + 1 :]
    assert step_kinds(plandiff.diff_plans(old, rows_plan(moved, "new.csv"))) == [
        ("moved", rows[k][0])
    ]
