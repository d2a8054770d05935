"""Properties of the move engine over generated projects (hypothesis).

A project here is one flow spread over a few machines' user modules, written the way the generator
and a tidy user write them: black-formatted, imports in isort order, shared helpers before the
steps, steps in plan order; the helpers one step owns are anywhere: right above it, right below it
or at the end of the module.

- conservation: after any sequence of moves every function, helper, import and comment exists
  exactly once (imports: at least once, at most once per module), every step body is byte-identical
  and every module compiles and stays black-formatted;
- round trip: moving a step A->B and back restores every file byte for byte.
"""

from __future__ import annotations

import ast
import re

import black
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sl2s.diagnostics import Sl2sError
from sl2s.rebalance.core import importers
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
        sections[section].append(
            f"from {module} import {', '.join(sorted(set(names), key=str.lower))}"
        )
    for section in (1, 2):
        if sections[section]:
            if out:
                out.append("")
            out += sections[section]
    return "\n".join(out) + "\n"


@st.composite
def projects(draw, messy: bool = False):
    """`messy`: also constants in default arguments, class helpers, closures and comprehensions
    shadowing module names, trailing comments in bodies and free-standing comments between steps.
    """
    machines = draw(st.integers(2, 3))
    steps = draw(st.integers(2, 6))
    owner = [draw(st.integers(0, machines - 1)) for _ in range(steps)]
    uses = [
        draw(st.lists(st.integers(0, len(IMPORTS) - 1), max_size=2, unique=True))
        for _ in range(steps)
    ]
    private = [draw(st.integers(0, 2)) for _ in range(steps)]
    # where a step's own helpers are: right above it, right below it, or at the end of the module
    placed = [draw(st.sampled_from(["above", "below", "end"])) for _ in range(steps)]
    commented = [draw(st.booleans()) for _ in range(steps)]
    shared_users = draw(
        st.lists(st.integers(0, steps - 1), max_size=steps, unique=True)
    )
    extras = [
        (
            draw(
                st.sets(
                    st.sampled_from(["const", "klass", "trailing", "free", "nested"])
                )
            )
            if messy
            else set()
        )
        for _ in range(steps)
    ]
    modules = {}
    for m in range(machines):
        mine = [i for i in range(steps) if owner[i] == m]
        imports = [STEP_IMPORT] + [IMPORTS[k][0] for i in mine for k in uses[i]]
        chunks = []
        at_end = []
        shared = [i for i in mine if i in shared_users]
        if len(shared) >= 2:
            chunks.append(f"def shared_{m}(x):\n    return str(x).strip()\n")
        for i in mine:
            extra = extras[i]
            if "free" in extra:
                chunks.append(f"# ---- section of step {i} ----\n")
            if "const" in extra:
                chunks.append(f"LIMIT_{i} = {i + 2}\n")
            if "klass" in extra:
                chunks.append(
                    f"class Box{i}:\n    scale = {i}\n\n    def apply(self, y):\n        return y * self.scale\n"
                )
            helpers = [
                f"# helper {k} of step {i}\ndef _h{i}_{k}(x):\n    return x + {k}\n"
                for k in range(private[i])
            ]
            if placed[i] == "above":
                chunks += helpers
            body = [f"    y = _h{i}_{k}(y)" for k in range(private[i])]
            if "klass" in extra:
                body.append(f"    y = Box{i}().apply(y)")
            if "nested" in extra:
                body.append(
                    "    def inner(y=y):\n        return [y for y in range(2)] + [y]\n\n    inner()"
                )
            body += [f"    x = str(y)\n    z = {IMPORTS[k][1]}" for k in uses[i]]
            if i in shared and len(shared) >= 2:
                body.append(f"    y = shared_{m}(y)")
            comment = f"# step {i} does things\n" if commented[i] else ""
            params = f"y, limit=LIMIT_{i}" if "const" in extra else "y"
            trailing = [f"    # end of step {i}"] if "trailing" in extra else []
            chunks.append(
                f'{comment}@step("f", "Step {i}")\ndef step_{i}({params}):\n'
                + "\n".join(body + ["    return {'y': y}".replace("'", '"')] + trailing)
                + "\n"
            )
            if placed[i] == "below":
                chunks += helpers
            elif placed[i] == "end":
                at_end += helpers
        text = f'"""Steps of flow \'f\' on machine \'m{m}\'."""\n\n' + _import_block(
            imports
        )
        text += "".join("\n\n" + c for c in chunks + at_end)
        modules[f"m{m}/f.py"] = black.format_str(text, mode=black.Mode())
    moves = draw(
        st.lists(
            st.tuples(st.integers(0, steps - 1), st.integers(0, machines - 1)),
            max_size=6,
        )
    )
    return modules, owner, moves


def _mod(path: str, text: str | None) -> Module:
    return Module("services." + path[:-3].replace("/", "."), "services/" + path, text)


def _defs(modules):
    """name -> body source of every top-level function, across modules (duplicates counted)."""
    out: dict[str, list[str]] = {}
    for text in modules.values():
        tree = ast.parse(text)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out.setdefault(node.name, []).append(ast.get_source_segment(text, node))
            elif isinstance(node, ast.Assign):
                out.setdefault(node.targets[0].id, []).append(
                    ast.get_source_segment(text, node)
                )
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
    return {
        n
        for ln in lines
        if ln.startswith(("import ", "from "))
        for n in _import_names(ln)
    }


def _steps_in(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^def step_(\d+)", text, re.M)]


def do_move(modules, owner, i, target, origins=None):
    return do_move_with_origins(modules, owner, i, target, origins)[0]


def do_move_with_origins(modules, owner, i, target, origins=None):
    src = f"m{owner[i]}/f.py"
    dst = f"m{target}/f.py"
    later = sorted(j for j in _steps_in(modules[dst]) if j > i)
    result = move(
        _mod(src, modules[src]),
        _mod(dst, modules[dst]),
        [f"step_{i}"],
        before=f"step_{later[0]}" if later else None,
        # as `sl2s rebalance` does: what other modules import from the source stays put
        pinned=importers(modules, _mod(src, None).name, "services", skip={src, dst}),
        origins=origins,
    )
    return {**modules, src: result.source, dst: result.dest}, result.origins


SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(st.booleans().flatmap(lambda messy: projects(messy=messy)))
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
            lines = [
                ln for ln in text.splitlines() if ln.startswith(("import ", "from "))
            ]
            bound = [
                b.strip() for ln in lines for b in ln.split(" import ")[-1].split(",")
            ]
            assert len(bound) == len(set(bound)), text  # no import twice in one module
        # every import some code needs is still there somewhere
        assert _bound(modules) >= _bound_needed(imports0)
        for m in range(max(owner) + 1):
            assert _steps_in(modules[f"m{m}/f.py"]) == sorted(
                _steps_in(modules[f"m{m}/f.py"])
            )


@SETTINGS
@given(projects(), st.data())
def test_round_trip_restores_every_file_byte_for_byte(project, data):
    modules, owner, _ = project
    i = data.draw(st.integers(0, len(owner) - 1))
    target = data.draw(
        st.sampled_from(
            [m for m in range(3) if f"m{m}/f.py" in modules and m != owner[i]]
        )
    )
    there, origins = do_move_with_origins(modules, owner, i, target)
    moved_owner = list(owner)
    moved_owner[i] = target
    # as `sl2s rebalance` does: the lock remembers where moved definitions came from
    back = do_move(there, moved_owner, i, owner[i], origins)
    assert back == modules


# --- whole-command properties: moved code still runs; a kill at any moment leaves before or after

import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

CLI = [sys.executable, "-c", "from sl2s.cli import main; main()"]


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=root, capture_output=True, text=True, check=False
    )


def _cli_here(root: Path, *args: str):
    """The same command in this process (no interpreter start-up): (exit code, output)."""
    from typer.testing import CliRunner

    from sl2s.cli import app

    here = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(here)
    text = result.output + (str(result.exception) if result.exception else "")
    return result.exit_code, text


def _system_code(flows: int, steps: int, machine_of) -> tuple[str, dict[str, str]]:
    """A plan and the user modules of a system whose steps compute `acc` with helpers and imports."""
    plan = ["Request\tLog\tMachine"]
    modules: dict[str, list[tuple[int, str, int]]] = {}
    for f in range(flows):
        for i in range(steps):
            machine = machine_of(f, i)
            plan.append(f"f{f}\tStep {i} adds to :acc\t{machine}")
            modules.setdefault(f"{machine}/f{f}.py", []).append((f, machine, i))
    texts = {}
    for path, owned in modules.items():
        f, machine, _ = owned[0]
        imports = {"import hashlib", "import json"}
        chunks = []
        if len(owned) >= 2:
            chunks.append(
                f"def shared_{machine}(acc):\n    return json.dumps(acc)[1:-1]\n"
            )
        for _, _, i in owned:
            chunks.append(f"# owned by step {i}\nLIMIT_{i} = {i + 4}\n")
            chunks.append(
                f"def _h{i}(acc):\n    return hashlib.sha256(acc.encode()).hexdigest()[:LIMIT_{i}]\n"
            )
            use = f"shared_{machine}(acc)" if len(owned) >= 2 else "acc"
            chunks.append(
                f'@step("f{f}", "Step {i} adds to :acc")\ndef step_{i}(acc):\n'
                f'    return {{"acc": {use} + "." + _h{i}(acc)}}\n'
            )
        text = (
            f'"""Steps of flow \'f{f}\' that run on machine \'{machine}\'."""\n\n'
            + "\n".join(sorted(imports))
            + "\n\nfrom sl2s.runtime import step\n"
            + "".join("\n\n" + c for c in chunks)
        )
        texts[path] = black.format_str(text, mode=black.Mode())
    return "\n".join(plan) + "\n", texts


def _make_system(root: Path, plan: str, texts: dict[str, str]) -> None:
    (root / "plan.csv").write_text(plan, encoding="utf-8")
    for (
        path,
        text,
    ) in texts.items():  # user code first: the generator then only adds the wiring
        (root / "services" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "services" / path).write_text(text, encoding="utf-8")
    code, output = _cli_here(root, "generate", "plan.csv")
    assert code == 0, output
    assert "stub:" not in output


def _run(root: Path, flow: str) -> list[str]:
    done = _cli(root, "run", "services", flow, "acc=x")
    assert done.returncode == 0, done.stdout + done.stderr
    return [
        ln.split(": ", 1)[-1]
        for ln in done.stdout.splitlines()
        if not ln.startswith("events:")
    ]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sl2s" not in p.parts and "__pycache__" not in p.parts
    }


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from("abc"), min_size=4, max_size=4),
    st.lists(st.sampled_from("abc"), min_size=4, max_size=4),
)
# several steps leaving one module and coming back in one run, around a shared helper
@example(before=list("aaaa"), after=list("aabb"))
@example(before=list("aaaa"), after=list("abbb"))
@example(before=list("abbb"), after=list("aaaa"))
def test_moved_code_still_runs(before, after):
    assume(before != after)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plan, texts = _system_code(1, 4, lambda f, i: before[i])
        _make_system(root, plan, texts)
        ran = _run(root, "f0")
        new_plan, _ = _system_code(1, 4, lambda f, i: after[i])
        (root / "plan.csv").write_text(new_plan, encoding="utf-8")
        was = _snapshot(root / "services")
        code, output = _cli_here(root, "rebalance", "plan.csv", "--allow-dirty")
        if code != 0:  # only a refused move may stop it, and then nothing changed
            assert "needs a manual move" in output, output
            assert _snapshot(root / "services") == was
            return
        assert _run(root, "f0") == ran
        assert _cli_here(root, "generate", "plan.csv", "--check")[0] == 0
        # no machine's module imports another machine's: shared helpers are in _shared/
        for path, text in _snapshot(root / "services").items():
            if path.endswith(".py"):
                assert (
                    "from ..a" not in text.decode() and "from ..b" not in text.decode()
                )
                assert "from ..c" not in text.decode(), path
        # and moving every step back restores every file, helpers and lock included; machines
        # the steps left keep their modules (reported), the shared module goes
        (root / "plan.csv").write_text(plan, encoding="utf-8")
        code, output = _cli_here(root, "rebalance", "plan.csv", "--allow-dirty")
        assert code == 0, output
        back = _snapshot(root / "services")
        assert {k: v for k, v in back.items() if k in was} == was
        assert all(k.split("/")[0] not in _machines(was) for k in back if k not in was)
        assert not any(k.startswith("_shared/") for k in back)
        assert _run(root, "f0") == ran


def _machines(snapshot: dict[str, bytes]) -> set[str]:
    return {k.split("/")[0] for k in snapshot if "/" in k}


def test_kill_at_any_moment_leaves_the_tree_before_or_after():
    """SIGKILL `sl2s rebalance` of 12 flows at random moments (some while it writes), then run
    another sl2s command: the tree is exactly as before or exactly as after."""
    flows = 12

    def old(flow: int, row: int) -> str:
        return ("client", "server", "server")[row]

    def new(flow: int, row: int) -> str:
        return ("client", "auth" if row == 1 else "server", "server")[row]

    plan, texts = _system_code(flows, 3, old)
    new_plan, _ = _system_code(flows, 3, new)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        _make_system(base, plan, texts)
        (base / "plan.csv").write_text(new_plan, encoding="utf-8")
        before = _snapshot(base / "services")
        full = Path(tmp) / "full"
        subprocess.run(["cp", "-a", str(base), str(full)], check=True)
        start = time.monotonic()
        done = _cli(
            full, "rebalance", "plan.csv", "--allow-dirty"
        )  # a real process, timed
        duration = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        after = _snapshot(full / "services")
        assert after != before
        outcomes = {"before": 0, "after": 0}
        for attempt in range(6):
            work = Path(tmp) / f"kill{attempt}"
            subprocess.run(["cp", "-a", str(base), str(work)], check=True)
            proc = subprocess.Popen(
                [*CLI, "rebalance", "plan.csv", "--allow-dirty"],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if attempt % 2:  # kill while writing: as soon as the journal is committed
                journal_file = work / "services" / ".sl2s-journal.json"
                deadline = time.monotonic() + 3 * duration + 5
                while (
                    not journal_file.exists()
                    and proc.poll() is None
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0, 0.01))
            else:
                time.sleep(rng.uniform(0.2, 1.0) * duration)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            check = _cli(
                work, "generate", "plan.csv", "--check"
            )  # any command recovers first
            state = _snapshot(work / "services")
            assert state in (
                before,
                after,
            ), f"attempt {attempt}: tree is neither before nor after"
            outcomes["before" if state == before else "after"] += 1
            if state == after:
                assert check.returncode == 0, check.stdout + check.stderr
        assert (
            outcomes["after"] >= 1
        ), outcomes  # the kills did land inside the write window
