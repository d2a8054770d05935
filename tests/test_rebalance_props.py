"""Properties of the move engine over generated projects (hypothesis).

A project here is one flow spread over a few machines' user modules, written the way the generator
and a tidy user write them: black-formatted, imports in isort order, helpers owned by one step right
above it, shared helpers before the steps, steps in plan order.

- conservation: after any sequence of moves every function, helper, import and comment exists
  exactly once (imports: at least once, at most once per module), every step body is byte-identical
  and every module compiles and stays black-formatted;
- round trip: moving a step A->B and back restores every file byte for byte.
"""

from __future__ import annotations

import ast
import re

import black
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sl2s.diagnostics import Sl2sError
from sl2s.rebalance.move import Module, move

IMPORTS = [
    ("import hashlib", "hashlib.sha256(x.encode()).hexdigest()"),
    ("import json", "json.dumps(x)"),
    ("import re", 're.sub(r"\\s+", " ", x)'),
    ("from collections import OrderedDict", "list(OrderedDict.fromkeys(x))"),
    ("from os.path import basename", "basename(x)"),
    ("from os.path import join", 'join(x, "y")'),
]
STEP_IMPORT = "from sl2s.runtime import step"


def _section(line: str) -> int:
    return 2 if line.startswith("from sl2s") else 1


def _import_block(lines: list[str]) -> str:
    """isort (profile black): stdlib section, then third-party; `import` before `from`; merged."""
    plain = sorted({ln for ln in lines if ln.startswith("import ")})
    froms: dict[tuple[int, str], list[str]] = {}
    for ln in lines:
        if ln.startswith("from "):
            module, names = ln[5:].split(" import ")
            froms.setdefault((_section(ln), module), []).extend(names.split(", "))
    out: list[str] = []
    sections = {1: list(plain), 2: []}
    for (section, module), names in sorted(froms.items()):
        sections[section].append(f"from {module} import {', '.join(sorted(set(names), key=str.lower))}")
    for section in (1, 2):
        if sections[section]:
            if out:
                out.append("")
            out += sections[section]
    return "\n".join(out) + "\n"


@st.composite
def projects(draw):
    machines = draw(st.integers(2, 3))
    steps = draw(st.integers(2, 6))
    owner = [draw(st.integers(0, machines - 1)) for _ in range(steps)]
    uses = [draw(st.lists(st.integers(0, len(IMPORTS) - 1), max_size=2, unique=True)) for _ in range(steps)]
    private = [draw(st.integers(0, 2)) for _ in range(steps)]
    commented = [draw(st.booleans()) for _ in range(steps)]
    shared_users = draw(st.lists(st.integers(0, steps - 1), max_size=steps, unique=True))
    modules = {}
    for m in range(machines):
        mine = [i for i in range(steps) if owner[i] == m]
        imports = [STEP_IMPORT] + [IMPORTS[k][0] for i in mine for k in uses[i]]
        chunks = []
        shared = [i for i in mine if i in shared_users]
        if len(shared) >= 2:
            chunks.append(f"def shared_{m}(x):\n    return str(x).strip()\n")
        for i in mine:
            for k in range(private[i]):
                chunks.append(f"# helper {k} of step {i}\ndef _h{i}_{k}(x):\n    return x + {k}\n")
            body = [f"    y = _h{i}_{k}(y)" for k in range(private[i])]
            body += [f"    x = str(y)\n    z = {IMPORTS[k][1]}" for k in uses[i]]
            if i in shared and len(shared) >= 2:
                body.append(f"    y = shared_{m}(y)")
            comment = f"# step {i} does things\n" if commented[i] else ""
            chunks.append(
                f'{comment}@step("f", "Step {i}")\ndef step_{i}(y):\n'
                + "\n".join(body + ["    return {'y': y}".replace("'", '"')])
                + "\n"
            )
        text = f'"""Steps of flow \'f\' on machine \'m{m}\'."""\n\n' + _import_block(imports)
        text += "".join("\n\n" + c for c in chunks)
        modules[f"m{m}/f.py"] = black.format_str(text, mode=black.Mode())
    moves = draw(st.lists(st.tuples(st.integers(0, steps - 1), st.integers(0, machines - 1)), max_size=6))
    return modules, owner, moves


def _mod(path: str, text: str | None) -> Module:
    return Module("services." + path[:-3].replace("/", "."), "services/" + path, text)


def _defs(modules):
    """name -> body source of every top-level function, across modules (duplicates counted)."""
    out: dict[str, list[str]] = {}
    for text in modules.values():
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                out.setdefault(node.name, []).append(ast.get_source_segment(text, node))
    return out


def _comments(modules):
    return sorted(c for t in modules.values() for c in re.findall(r"#.*", t))


def _import_names(line: str) -> set[str]:
    if line.startswith("import "):
        return {line[7:].strip()}
    return {n.strip() for n in line.split(" import ")[-1].split(",") if n.strip()}


def _bound(modules) -> set[str]:
    return {
        n
        for t in modules.values()
        for ln in t.splitlines()
        if ln.startswith(("import ", "from "))
        for n in _import_names(ln)
    }


def _bound_needed(lines) -> set[str]:
    return {n for ln in lines if ln.startswith(("import ", "from ")) for n in _import_names(ln)}


def _steps_in(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^def step_(\d+)", text, re.M)]


def do_move(modules, owner, i, target):
    src = f"m{owner[i]}/f.py"
    dst = f"m{target}/f.py"
    later = sorted(j for j in _steps_in(modules[dst]) if j > i)
    result = move(
        _mod(src, modules[src]), _mod(dst, modules[dst]), [f"step_{i}"],
        before=f"step_{later[0]}" if later else None,
    )
    return {**modules, src: result.source, dst: result.dest}


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(projects())
def test_conservation_over_any_sequence_of_moves(project):
    modules, owner, moves = project
    owner = list(owner)
    defs0 = _defs(modules)
    comments0 = _comments(modules)
    imports0 = {ln for t in modules.values() for ln in t.splitlines() if "import" in ln}
    for i, target in moves:
        if owner[i] == target:
            continue
        try:
            modules = do_move(modules, owner, i, target)
        except Sl2sError as error:  # only cycles between two machines may refuse here
            assert "import cycle" in str(error), str(error)
            continue
        owner[i] = target
        defs = _defs(modules)
        assert sorted(defs) == sorted(defs0)
        for name, bodies in defs.items():
            assert len(bodies) == 1, name
            assert bodies == defs0[name]  # byte-identical, decorators and all
        assert _comments(modules) == comments0
        for path, text in modules.items():
            compile(text, path, "exec")
            assert black.format_str(text, mode=black.Mode()) == text, path
            lines = [ln for ln in text.splitlines() if ln.startswith(("import ", "from "))]
            bound = [b.strip() for ln in lines for b in ln.split(" import ")[-1].split(",")]
            assert len(bound) == len(set(bound)), text  # no import twice in one module
        # every import some code needs is still there somewhere
        assert _bound(modules) >= _bound_needed(imports0)
        for m in range(max(owner) + 1):
            assert _steps_in(modules[f"m{m}/f.py"]) == sorted(_steps_in(modules[f"m{m}/f.py"]))


@SETTINGS
@given(projects(), st.data())
def test_round_trip_restores_every_file_byte_for_byte(project, data):
    modules, owner, _ = project
    i = data.draw(st.integers(0, len(owner) - 1))
    target = data.draw(st.sampled_from([m for m in range(3) if f"m{m}/f.py" in modules and m != owner[i]]))
    there = do_move(modules, owner, i, target)
    moved_owner = list(owner)
    moved_owner[i] = target
    back = do_move(there, moved_owner, i, owner[i])
    assert back == modules
