"""The pure plan-vs-code core (sl2s.rebalance.core), without the CLI."""

from __future__ import annotations

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.plan import read_plan
from sl2s.rebalance.core import rebalance


def plan_of(tmp_path, rows: str):
    path = tmp_path / "plan.csv"
    path.write_text("Request\tLog\tMachine\n" + rows, encoding="utf-8")
    return read_plan(path)


def module(*steps: tuple[str, str]) -> str:
    out = "from sl2s.runtime import step\n"
    for template, function in steps:
        out += f'\n\n@step("f", "{template}")\ndef {function}():\n    return None\n'
    return out


def test_moves_in_plan_order_and_places_before_the_next_step(tmp_path):
    plan = plan_of(tmp_path, "f\tOne\ta\nf\tTwo\tb\nf\tThree\tb\n")
    modules = {
        "a/f.py": module(("One", "one"), ("Two", "two")),
        "b/f.py": module(("Three", "three")),
    }
    out = rebalance(plan, user_modules=modules, lock={})
    assert [(m.id, m.source, m.dest) for m in out.moves] == [
        ("two", "a/f.py", "b/f.py")
    ]
    assert out.modules["b/f.py"].index("def two") < out.modules["b/f.py"].index(
        "def three"
    )
    assert out.changed == ("a/f.py", "b/f.py")


def test_new_machine_module_starts_from_the_generator_header(tmp_path):
    plan = plan_of(tmp_path, "f\tOne\ta\nf\tTwo\tc\n")
    modules = {"a/f.py": module(("One", "one"), ("Two", "two"))}
    out = rebalance(plan, user_modules=modules, lock={})
    assert out.new_machines == ("c",)
    assert out.modules["c/f.py"].startswith(
        "\"\"\"Steps of flow 'f' that run on machine 'c'."
    )
    assert "def two" in out.modules["c/f.py"]


def test_rename_by_position_with_a_row_inserted_elsewhere(tmp_path):
    plan = plan_of(tmp_path, "f\tZero\ta\nf\tOne\ta\nf\tDeux\ta\n")
    modules = {"a/f.py": module(("One", "one"), ("Two", "two"))}
    lock = {"plan_lines": {"f": {"one": 2, "two": 3}}}
    out = rebalance(plan, user_modules=modules, lock=lock)
    assert [(r.old_id, r.new_id) for r in out.renames] == [("two", "deux")]
    assert '@step("f", "Deux")\ndef two():' in out.modules["a/f.py"]


def test_machine_without_steps_keeps_its_modules_and_is_reported(tmp_path):
    plan = plan_of(tmp_path, "f\tOne\ta\nf\tTwo\ta\n")
    modules = {"a/f.py": module(("One", "one")), "b/f.py": module(("Two", "two"))}
    out = rebalance(plan, user_modules=modules, lock={})
    assert "b/f.py" in out.modules
    assert (
        out.emptied and "machine 'b'" in out.emptied[0] and "b/f.py" in out.emptied[0]
    )


def test_step_defined_twice_without_a_lock_is_refused(tmp_path):
    plan = plan_of(tmp_path, "f\tOne\tc\n")
    modules = {"a/f.py": module(("One", "one")), "b/f.py": module(("One", "uno"))}
    with pytest.raises(Sl2sError, match="defined more than once"):
        rebalance(plan, user_modules=modules, lock={})


def test_force_partial_reports_what_it_left(tmp_path):
    plan = plan_of(tmp_path, "f\tOne\tb\nf\tTwo\tb\n")
    bad = module(("One", "one")).replace(
        "    return None\n", "    global X\n    return None\n", 1
    ) + ('\n\n@step("f", "Two")\ndef two():\n    return None\n')
    out = rebalance(plan, user_modules={"a/f.py": bad}, lock={}, force_partial=True)
    assert [m.id for m in out.moves] == ["two"]
    assert out.failed and "needs a manual move" in out.failed[0].message
    with pytest.raises(Sl2sError, match="`global X` rebinds module names"):
        rebalance(plan, user_modules={"a/f.py": bad}, lock={})
