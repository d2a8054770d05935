"""The package's layering, read from the source (docs/architecture.md, "Layers" and "The runtime's
house"): no import cycle between modules anywhere in `sl2s` (imports inside functions and under
`TYPE_CHECKING` included), the runtime's core does not import its transports, and the flow store
imports nothing else of the runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import sl2s

PACKAGE_DIR = Path(sl2s.__file__).resolve().parent


def module_names(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("sl2s", *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of `sl2s` that `name` imports anywhere in its source. `from pkg import sub` names the
    submodule only; a package imported by its submodules (Python runs `pkg/__init__` first) is
    not an edge, as import checkers count it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [
                f"{target}.{a.name}"
                for a in node.names
                if f"{target}.{a.name}" in modules
            ]
            found.update(subs if len(subs) == len(node.names) else [target, *subs])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_names(PACKAGE_DIR)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_sl2s_imports_itself_back():
    assert cycles(import_graph()) == []


def test_the_runtime_core_does_not_import_its_transports():
    graph = import_graph()
    core = {m for m in graph if m.startswith("sl2s.runtime.core")}
    assert core, "the runtime's core moved: update docs/architecture.md and this test"
    wrong = {
        (m, t)
        for m in core
        for t in graph[m]
        if t.startswith(("sl2s.runtime.transport", "sl2s.runtime.store."))
        or t.startswith(("sl2s.observe", "sl2s.serve", "sl2s.cli", "sl2s.generate"))
    }
    assert wrong == set()


def test_the_flow_store_imports_nothing_else_of_the_runtime():
    graph = import_graph()
    wrong = {
        (m, t)
        for m in graph
        if m.startswith("sl2s.runtime.store")
        for t in graph[m]
        if t.startswith("sl2s.runtime") and not t.startswith("sl2s.runtime.store")
    }
    assert wrong == set()


def test_the_run_is_split_by_concern_into_small_modules():
    run_dir = PACKAGE_DIR / "runtime" / "core" / "run"
    sizes = {
        p.name: len(p.read_text(encoding="utf-8").splitlines())
        for p in run_dir.glob("*.py")
    }
    assert {
        "context.py",
        "activation.py",
        "events.py",
        "failures.py",
        "hops.py",
        "steps.py",
    } <= set(sizes)
    assert max(sizes.values()) < 400, sizes
