"""Diff-minimal output: inserting one row in the middle of a 200-row plan changes only the lines
about that row and its neighbours' hops (stable step ids, no renumbering cascade)."""

from __future__ import annotations

import difflib
from functools import cache

import pytest

from sl2s.generate import generate, scan_module
from sl2s.generate.blackcheck import BlackCheck
from sl2s.plan import parse_plan

MACHINES = ["web", "api", "db", "mail", "cache"]
VERBS = ["Loading", "Checking", "Storing", "Sending", "Rendering"]
FIELDS = ["user", "order", "cart", "item", "region"]


def plan_200() -> list[str]:
    """200 rows: 10 flows of 20 steps; each flow hops between three machines."""
    rows = ["request,log,machine"]
    for f in range(10):
        cast = [MACHINES[(f + k) % 5] for k in range(3)]
        for s in range(20):
            machine = cast[(s // 3 + s // 7) % 3]
            rows.append(
                f"flow{f},{VERBS[s % 5]} thing {s} for :{FIELDS[(f + s) % 5]},{machine}"
            )
    return rows


def changed_lines(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    out = {}
    for path in sorted(set(before) | set(after)):
        diff = difflib.unified_diff(
            before.get(path, "").splitlines(),
            after.get(path, "").splitlines(),
            lineterm="",
            n=0,
        )
        count = sum(
            1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")
        )
        if count:
            out[path] = count
    return out


CHECK = BlackCheck()  # shared: black runs once per shape for the whole module


def run(rows: list[str], user: dict[str, str]):
    return generate(
        parse_plan(("\n".join(rows) + "\n").encode(), "plan.csv"),
        plan_ref="../plan.csv",
        user_modules=user,
        check=CHECK,
        scan=lambda path, source: _scan(source),
    )


@cache
def _scan(source: str):
    return scan_module(source)


@pytest.fixture(scope="module")
def first():
    return run(plan_200(), {})


def added_lines(before: dict[str, str], after: dict[str, str]) -> int:
    """Lines of the new files that are new or rewritten (the `+` side of the diff)."""
    total = 0
    for path in after:
        diff = difflib.unified_diff(
            before.get(path, "").splitlines(),
            after[path].splitlines(),
            lineterm="",
            n=0,
        )
        total += sum(1 for line in diff if line[:1] == "+" and line[:3] != "+++")
    return total


@pytest.mark.parametrize("at", [90, 95, 100, 105])  # rows around the middle of the plan
@pytest.mark.parametrize("target", MACHINES)
def test_inserting_one_row_in_the_middle_changes_few_generated_lines(
    at, target
) -> None:
    rows = plan_200()
    first = run(rows, {})
    user = {f.path: f.content for f in first.files if not f.generated}
    before = {f.path: f.content for f in first.files if f.generated}

    flow, _, neighbour = rows[at - 1].split(",")
    after_row = rows[at].split(",")[2]
    second = run(
        rows[:at] + [f"{flow},Inserted step for :user,{target}"] + rows[at:], user
    )
    after = {f.path: f.content for f in second.files if f.generated}

    changes = changed_lines(before, after)
    total = sum(changes.values())
    # Every insertion: under 40 new or rewritten lines in all generated files together.
    assert added_lines(before, after) < 40, changes
    if target in (neighbour, after_row):
        # No new hop: under 40 lines inserted + deleted (the lock's plan_lines line, its
        # digests, one steps line; a run.step line; the PLAN.md note and table row).
        assert total < 40, changes
    else:
        # A row on a third machine between two hops re-plans the call stack around it (calls
        # become returns on up to three machines): still only its neighbours' hops, a few more.
        assert total < 45, changes
    # only the files that are about the row or its neighbours' hops changed
    lock = changes.pop("sl2s.lock.json")
    assert (
        lock <= 2 * 1 + 1 + 2 + 2 * 5 + 2
    ), lock  # the plan_lines line, a step, the digests, the flow's projection digest
    changes.pop("PLAN.md", None)
    flow_machines = {r.split(",")[2] for r in rows if r.startswith(flow + ",")} | {
        target
    }
    assert {p.split("/")[0] for p in changes} <= flow_machines, changes
    # user code: only the new stub was added, after everything that was there
    for path, text in {
        f.path: f.content for f in second.files if not f.generated
    }.items():
        if path in user:
            assert text.startswith(user[path])
            assert text[len(user[path]) :].count("@step(") == 1


def test_no_row_numbers_in_generated_code() -> None:
    rows = plan_200()
    shifted = rows[:1] + ["flow0,Very first step,web"] + rows[1:]
    a = {
        f.path: f.content for f in run(rows, {}).files if f.path.endswith("_wiring.py")
    }
    b = {
        f.path: f.content
        for f in run(shifted, {}).files
        if f.path.endswith("_wiring.py")
    }
    changes = changed_lines(a, b)
    # only flow0's entry (on web) gains its first step; nothing else in any wiring moves
    assert (
        set(changes) == {"web/_wiring.py"} and changes["web/_wiring.py"] <= 3
    ), changes
