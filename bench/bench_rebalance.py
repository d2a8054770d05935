"""Benchmark: one `sl2s rebalance` move in projects of 10, 100 and 1,000 user modules.

    python bench/bench_rebalance.py [--sizes 10,100,1000] [--rope-timeout 300] [--repeat 15]

A project is M machines x F flows of user modules (`services/m<j>/f<k>.py`; 50 x 20 = 1,000), each
module with four steps, realistic bodies (stdlib imports, a module constant, a helper shared by the
module's steps, one helper per step) — and a plan of all those steps. In the same run, per size:

- move: the pure engine moving one step (with its own helper, the imports it uses, a cross-import
  for the shared helper) between two modules (their text in memory). Target: the three
  sizes within 1.5x of each other (the cost depends on the two touched modules only).
- floor: libcst parse + codegen of the same two modules (what any formatting-preserving tool pays
  at least). Target: move <= 3x floor.
- core: `sl2s.rebalance.core.rebalance` — plan vs code for the whole project with the generator's
  scan cache warm (as after a previous `sl2s generate`), one step's machine changed. This part is
  proportional to the project (one hash per module), shown for context.
- rope: `rope.refactor.move` (MoveGlobal) of the same function, in a copy of the project, in a
  subprocess with a time limit; then whether the moved step still computes the same result.
- ours runs: the same check on the engine's result.

Then one move out of a ~5,000-line module next to its floor, and a last row repeats the move at
the smallest size after giving the destination module its own, different `_fingerprint_0_0` (a
same-named helper): sl2s must refuse naming both definitions; rope's result is checked for the same
answer.

Prints a table. Move and floor: best of --repeat runs, also interleaved across sizes so that load
from other processes hits each size alike (rope: one run); the machine is shared.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import libcst

from sl2s.diagnostics import Sl2sError
from sl2s.generate.usercode import scan_module
from sl2s.plan import read_plan
from sl2s.rebalance.core import rebalance
from sl2s.rebalance.move import Module, move

STEPS_PER_MODULE = 4
SHAPES = {10: (5, 2), 100: (10, 10), 1000: (50, 20)}


def module_text(machine: int, flow: int, first: int) -> str:
    """One user module: four steps numbered from `first` (step numbers are unique project-wide)."""
    tag = f"{machine}_{flow}"
    parts = [
        f'"""Steps of flow \'f{flow}\' that run on machine \'m{machine}\'."""\n',
        "import hashlib\nimport json\nfrom datetime import datetime, timezone\n\n"
        "from sl2s.runtime import step\n",
        f"RETRIES_{tag} = 3\n",
        textwrap.dedent(f'''\
            def _fingerprint_{tag}(value):
                """A short stable digest of a JSON-able value."""
                encoded = json.dumps(value, sort_keys=True).encode("utf-8")
                return hashlib.sha1(encoded).hexdigest()[:12]
            '''),
    ]
    for n in range(first, first + STEPS_PER_MODULE):
        parts.append(textwrap.dedent(f"""\
                # Scoring rule of step {n}: weights the fields seen so far.
                def _score_{n}(acc):
                    total = 0
                    for position, char in enumerate(acc):
                        total += (position + 1) * ord(char) % {n % 89 + 7}
                    return total % 1000
                """))
        parts.append(textwrap.dedent(f"""\
                @step("f{flow}", "Step {n} handles :acc")
                def step_{n}(acc):
                    # Retry-safe: the result depends on acc only.
                    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()
                    for _ in range(RETRIES_{tag}):
                        digest = _fingerprint_{tag}({{"acc": acc, "stamp": stamp}})
                    return {{"acc": f"{{acc}}.{{_score_{n}(acc)}}-{{digest[:4]}}"}}
                """))
    return (
        parts[0]
        + "\n"
        + parts[1]
        + "\n"
        + parts[2]
        + "".join("\n\n" + p for p in parts[3:])
    )


def build(root: Path, machines: int, flows: int) -> tuple[str, dict[str, str]]:
    """Write the project; return its plan text and {path: source} of the user modules."""
    services = root / "services"
    services.mkdir(parents=True)
    (services / "__init__.py").write_text("")
    rows = ["Request\tLog\tMachine"]
    modules: dict[str, str] = {}
    n = 0
    for k in range(flows):
        for j in range(machines):
            (services / f"m{j}").mkdir(exist_ok=True)
            (services / f"m{j}" / "__init__.py").write_text("")
            text = module_text(j, k, n)
            path = f"m{j}/f{k}.py"
            (services / path).write_text(text)
            modules[path] = text
            rows += [
                f"f{k}\tStep {i} handles :acc\tm{j}"
                for i in range(n, n + STEPS_PER_MODULE)
            ]
            n += STEPS_PER_MODULE
    return "\n".join(rows) + "\n", modules


def best_time(fn, repeat: int) -> float:
    """Best of `repeat` runs: the machine is shared, the minimum is the least noisy estimate."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


RUN_CHECK = """
import importlib, sys
sys.path.insert(0, {root!r})
module = importlib.import_module({module!r})
print(getattr(module, {function!r})("acc-0"))
"""


def still_runs(
    root: Path, module: str, function: str, expected: str | None
) -> tuple[bool, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_CHECK.format(root=str(root), module=module, function=function),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        return False, (
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        )
    out = done.stdout.strip()
    return (expected is None or out == expected), out


ROPE = """
import sys, time
from rope.base.project import Project
from rope.refactor.move import create_move
root, src, dst, function = sys.argv[1:5]
start = time.perf_counter()
project = Project(root, ropefolder=None)
resource = project.get_resource(src)
offset = resource.read().index("def " + function) + 4
mover = create_move(project, resource, offset)
changes = mover.get_changes(project.get_resource(dst))
project.do(changes)
project.close()
print(time.perf_counter() - start)
"""


def bench(size: int, repeat: int, rope_timeout: float) -> dict:
    machines, flows = SHAPES[size]
    tmp = Path(tempfile.mkdtemp(prefix=f"sl2s-bench-{size}-"))
    try:
        plan_text, modules = build(tmp, machines, flows)
        src_path, dst_path = "m0/f0.py", "m1/f0.py"
        function = "step_1"  # second step of m0/f0: its helper moves, the shared one is imported
        root = tmp / "services"

        def one_move():
            a = (root / src_path).read_text()
            b = (root / dst_path).read_text()
            return move(
                Module("services.m0.f0", "services/" + src_path, a),
                Module("services.m1.f0", "services/" + dst_path, b),
                [function],
                before=None,
            )

        def floor():
            for path in (src_path, dst_path):
                libcst.parse_module((root / path).read_text()).code  # noqa: B018

        result = one_move()
        t_move = best_time(one_move, repeat)
        t_floor = best_time(floor, repeat)
        # in-memory copies, for the interleaved timing in main() (this project is removed below)
        texts = {path: (root / path).read_text() for path in (src_path, dst_path)}

        def move_kept():
            move(
                Module("services.m0.f0", "services/" + src_path, texts[src_path]),
                Module("services.m1.f0", "services/" + dst_path, texts[dst_path]),
                [function],
            )

        def floor_kept():
            for path in (src_path, dst_path):
                libcst.parse_module(texts[path]).code  # noqa: B018

        # the pure core over the whole project, scans cached as after `sl2s generate`
        (tmp / "plan.csv").write_text(
            plan_text.replace("Step 1 handles :acc\tm0", "Step 1 handles :acc\tm1")
        )
        plan = read_plan(tmp / "plan.csv")
        cache = {}

        def cached_scan(path: str, source: str):
            key = hash(source)
            if key not in cache:
                cache[key] = scan_module(source)
            return cache[key]

        for path, text in modules.items():
            cached_scan(path, text)

        def core():
            texts = {p: (root / p).read_text() for p in modules}
            return rebalance(
                plan, user_modules=texts, lock={}, system="services", scan=cached_scan
            )

        outcome = core()
        assert [m.function for m in outcome.moves] == [function], outcome.moves
        t_core = best_time(core, max(1, repeat // 2))

        expected = still_runs(tmp, "services.m0.f0", function, None)[1]
        ours_dir = tmp.parent / (tmp.name + "-ours")
        shutil.copytree(tmp, ours_dir)
        (ours_dir / "services" / src_path).write_text(result.source)
        (ours_dir / "services" / dst_path).write_text(result.dest)
        ours_ok, _ = still_runs(ours_dir, "services.m1.f0", function, expected)
        shutil.rmtree(ours_dir)

        rope_dir = tmp.parent / (tmp.name + "-rope")
        shutil.copytree(tmp, rope_dir)
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    ROPE,
                    str(rope_dir),
                    "services/" + src_path,
                    "services/" + dst_path,
                    function,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=rope_timeout,
            )
            if done.returncode == 0:
                t_rope = float(done.stdout.strip().splitlines()[-1])
                rope_ok, rope_out = still_runs(
                    rope_dir, "services.m1.f0", function, expected
                )
                rope_note = "same result" if rope_ok else f"BROKEN ({rope_out[:60]})"
            else:
                t_rope, rope_note = (
                    None,
                    "rope failed: "
                    + (done.stderr.strip().splitlines() or ["?"])[-1][:60],
                )
        except subprocess.TimeoutExpired:
            t_rope, rope_note = None, f"> {rope_timeout:.0f} s (stopped)"
        shutil.rmtree(rope_dir, ignore_errors=True)
        return {
            "size": size,
            "move_fn": move_kept,
            "floor_fn": floor_kept,
            "move": t_move,
            "floor": t_floor,
            "core": t_core,
            "rope": t_rope,
            "rope_note": rope_note,
            "ours_ok": ours_ok,
            "lines": len(modules[src_path].splitlines())
            + len(modules[dst_path].splitlines()),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def large_module(repeat: int) -> str:
    """One move out of a ~5,000-line module (DESIGN section 4's case) next to its libcst floor."""
    global STEPS_PER_MODULE
    saved, STEPS_PER_MODULE = STEPS_PER_MODULE, 300
    try:
        big = module_text(0, 0, 0)
    finally:
        STEPS_PER_MODULE = saved
    small = module_text(1, 0, 1000)

    def one_move():
        return move(
            Module("services.m0.f0", "services/m0/f0.py", big),
            Module("services.m1.f0", "services/m1/f0.py", small),
            ["step_150"],
        )

    def floor():
        for text in (big, small):
            libcst.parse_module(text).code  # noqa: B018

    one_move()
    t_move = best_time(one_move, max(3, repeat // 3))
    t_floor = best_time(floor, max(3, repeat // 3))
    return (
        f"large module ({len(big.splitlines())} lines): move {t_move * 1e3:.0f} ms, "
        f"floor {t_floor * 1e3:.0f} ms, move/floor {t_move / t_floor:.2f}"
    )


def collision(rope_timeout: float) -> str:
    """The destination already has a different helper of the same name as one the step uses."""
    tmp = Path(tempfile.mkdtemp(prefix="sl2s-bench-collide-"))
    try:
        build(tmp, *SHAPES[10])
        root = tmp / "services"
        dst = root / "m1" / "f0.py"
        dst.write_text(
            dst.read_text()
            + '\n\ndef _fingerprint_0_0(value):\n    return "not-the-same"\n'
        )
        expected = still_runs(tmp, "services.m0.f0", "step_1", None)[1]
        try:
            move(
                Module(
                    "services.m0.f0",
                    "services/m0/f0.py",
                    (root / "m0" / "f0.py").read_text(),
                ),
                Module("services.m1.f0", "services/m1/f0.py", dst.read_text()),
                ["step_1"],
            )
            ours = "MOVED (wrong)"
        except Sl2sError as error:
            ours = "refused: " + str(error).splitlines()[0].split(": ", 1)[1][:70]
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                ROPE,
                str(tmp),
                "services/m0/f0.py",
                "services/m1/f0.py",
                "step_1",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=rope_timeout,
        )
        if done.returncode != 0:
            rope = "rope failed"
        else:
            ok, out = still_runs(tmp, "services.m1.f0", "step_1", expected)
            rope = (
                "same result"
                if ok
                else f"DIFFERENT result ({out[:40]} != {expected[:40]})"
            )
        return f"collision case: sl2s {ours}\n                rope {rope}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rope-timeout", type=float, default=300.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = [bench(size, args.repeat, args.rope_timeout) for size in sizes]
    # again, interleaved across sizes so that load from other processes hits each size alike
    for _ in range(args.repeat):
        for r in rows:
            r["move"] = min(r["move"], best_time(r["move_fn"], 1))
            r["floor"] = min(r["floor"], best_time(r["floor_fn"], 1))
    print()
    print(
        f"{'modules':>8} {'move ms':>9} {'floor ms':>9} {'move/floor':>10} {'core ms':>9} "
        f"{'rope s':>9}  {'ours runs':<10} rope result"
    )
    for r in rows:
        rope = "-" if r["rope"] is None else f"{r['rope']:.2f}"
        print(
            f"{r['size']:>8} {r['move'] * 1e3:>9.2f} {r['floor'] * 1e3:>9.2f} {r['move'] / r['floor']:>10.2f} "
            f"{r['core'] * 1e3:>9.1f} {rope:>9}  {'yes' if r['ours_ok'] else 'NO':<10} {r['rope_note']}"
        )
    moves = [r["move"] for r in rows]
    print()
    print(
        f"move spread across sizes: {max(moves) / min(moves):.2f}x (target <= 1.5x); "
        f"worst move/floor: {max(r['move'] / r['floor'] for r in rows):.2f}x (target <= 3x); "
        f"touched modules: 2 ({rows[0]['lines']} lines)"
    )
    print(large_module(args.repeat))
    print(collision(args.rope_timeout))


if __name__ == "__main__":
    main()
