"""sl2s.api: the runtime's own objects at run time, declared for type checkers with the same
parameters as the runtime's functions (so the declarations cannot drift from what runs).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import sl2s.api as api
import sl2s.observe
import sl2s.runtime as runtime
from sl2s.rebalance import journal

SOURCE = Path(api.__file__).read_text(encoding="utf-8")


def declared() -> dict[str, ast.FunctionDef]:
    """`name` or `Class.method` -> its declaration in the TYPE_CHECKING block."""
    block = next(
        n for n in ast.parse(SOURCE).body if isinstance(n, ast.If)
    )  # if TYPE_CHECKING:
    out: dict[str, ast.FunctionDef] = {}
    for node in block.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out[f"{node.name}.{item.name}"] = item
    return out


def shape(fn: ast.FunctionDef) -> list[tuple[str, str]]:
    a = fn.args
    out = [(p.arg, "POSITIONAL_ONLY") for p in a.posonlyargs]
    out += [(p.arg, "POSITIONAL_OR_KEYWORD") for p in a.args]
    if a.vararg:
        out.append((a.vararg.arg, "VAR_POSITIONAL"))
    out += [(p.arg, "KEYWORD_ONLY") for p in a.kwonlyargs]
    if a.kwarg:
        out.append((a.kwarg.arg, "VAR_KEYWORD"))
    return [(n, k) for n, k in out if n != "self"]


def actual(obj: object) -> list[tuple[str, str]]:
    return [
        (p.name, p.kind.name)
        for p in inspect.signature(obj).parameters.values()  # type: ignore[arg-type]
        if p.name != "self"
    ]


def test_at_run_time_the_names_are_the_runtimes_own_objects() -> None:
    assert api.step is runtime.step
    assert api.Machine is runtime.Machine
    assert api.Run is runtime.Run
    assert api.UNSET is runtime.UNSET
    assert isinstance(runtime.UNSET, api.Unset)
    assert api.install_flight_recorder is sl2s.observe.install
    assert (
        api.refuse_import_over_pending_rebalance is journal.refuse_import_over_pending
    )


def test_declarations_name_the_same_parameters_as_the_runtime() -> None:
    d = declared()
    pairs = {
        "step": runtime.step,
        "install_flight_recorder": sl2s.observe.install,
        "refuse_import_over_pending_rebalance": journal.refuse_import_over_pending,
        "Machine.__init__": runtime.Machine.__init__,
        "Machine.start": runtime.Machine.start,
        "Machine.segment": runtime.Machine.segment,
        "Run.step": runtime.Run.step,
        "Run.call": runtime.Run.call,
        "Run.return_to": runtime.Run.return_to,
        "Run.finish": runtime.Run.finish,
    }
    assert set(pairs) <= set(d) | {"Unset.__bool__"}
    for name, obj in pairs.items():
        assert shape(d[name]) == actual(obj), name
