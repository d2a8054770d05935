"""Benchmark `sl2s generate` on a synthetic plan, next to a floor measured in the same run.

    python bench/bench_generate.py [ROWS FLOWS MACHINES]     (default 10,000 / 500 / 20)

Measured in-process (the generate command's own function, output discarded):

- full:      generate into an empty directory
- no-op:     generate again, nothing changed
- one row:   change one row's log text, generate again (three rows, one after the other; best)
- floor:     read the plan, project it and render PLAN.md's body (the templates' inputs), render
             the same templates and write the files — nothing else (no user-code scan, no
             validation, no black, no lock, no cache, no atomic writes). Also shown: the render +
             write part alone.

Each measurement starts with the in-process memo caches of plan data cleared (as in a new
process); imports and compiled templates stay warm.

Targets: full <= 3x floor; no-op <= 0.5 s; one row <= 10% of full. Prints a table.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import typer  # noqa: E402
from make_plan import make_plan  # noqa: E402

from sl2s import names, show, template  # noqa: E402
from sl2s.cli.generate import generate_command  # noqa: E402
from sl2s.generate import encode, render  # noqa: E402
from sl2s.generate.core import _Names  # noqa: E402
from sl2s.names import identifier  # noqa: E402
from sl2s.plan import read_plan  # noqa: E402
from sl2s.projection import project  # noqa: E402
from sl2s.show import markdown  # noqa: E402

ROUNDS = 2  # floor and full generate are each measured this many times (best kept)


def fresh() -> None:
    """Forget the in-process memo caches of plan data (identifiers, templates, literals), as a
    new `sl2s` process would; imports and compiled Jinja templates stay warm."""
    names.identifier_or_none.cache_clear()
    template.parse.cache_clear()
    template._placeholder.cache_clear()
    encode.lit.cache_clear()
    show.markdown_code.cache_clear()


def timed(fn) -> float:
    fresh()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_generate(plan: Path, out: Path) -> None:
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        try:
            generate_command(plan, out, False, False)
        except typer.Exit as done:
            if done.exit_code:
                raise


def floor(plan_path: Path, out: Path) -> tuple[float, dict[str, float]]:
    """Render every template the generator renders for this plan, and write the files."""
    parts: dict[str, float] = {}
    t = time.perf_counter()
    plan = read_plan(plan_path)
    parts["read plan"] = time.perf_counter() - t
    t = time.perf_counter()
    projection = project(plan)
    parts["project"] = time.perf_counter() - t
    t = time.perf_counter()
    body = markdown(projection)
    parts["markdown"] = time.perf_counter() - t

    start = time.perf_counter()
    files: dict[str, str] = {}
    flows = {f.name: f for f in plan.flows}
    for view in projection.machines:
        m = view.name
        for flow in view.flows:
            stubs = [render.stub(s, s.id) for s in flows[flow].steps if s.machine == m]
            files[f"{m}/{flow}.py"] = render.join(
                render.user_module_header(flow, m), stubs
            )
        chunks = []
        names = _Names()
        for a in view.entries:
            if a.at is None:
                fields = tuple(
                    dict.fromkeys(
                        p for s in flows[a.flow].steps for p in s.placeholders
                    )
                )
                context = f"{a.flow.title().replace('_', '')}Context"
                typed = tuple((f, "object") for f in fields)
                chunks.append(render.context(a.flow, context, typed))
                params = tuple((f, None) for f in fields)
                chunks.append(
                    render.entry(a, a.flow, params, "machine", context, "cast")
                )
            else:
                chunks.append(
                    render.segment(
                        a, names.take(identifier(f"{a.flow}_at_{a.at}")), "machine"
                    )
                )
        header = render.wiring_header(
            m,
            "machine",
            ["UNSET", "Machine", "Run"],
            ["from typing import TypedDict, cast"],
            "p",
            "0",
        )
        files[f"{m}/_wiring.py"] = render.join(header, chunks)
        entries = [a.flow for a in view.entries if a.at is None]
        files[f"{m}/__init__.py"] = render.machine_init(
            m, view.flows, entries, "p", "0"
        )
    files["__init__.py"] = render.services_init("p", "0")
    files[".gitattributes"] = render.gitattributes("0")
    files["PLAN.md"] = render.plan_md(body, "0")
    for path, content in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return time.perf_counter() - start, parts


def main(argv: list[str]) -> None:
    numbers = [int(a) for a in argv[1:4]] or [10_000, 500, 20]
    work = Path(tempfile.mkdtemp(prefix="sl2s-bench-"))
    try:
        plan = work / "plan.csv"
        text = make_plan(*numbers)
        plan.write_text(text, encoding="utf-8")
        out = work / "services"

        run_generate(plan, work / "warmup")  # imports, template compilation
        shutil.rmtree(work / "warmup")

        # The machine is shared and noisy: interleave the floor and the full generate, repeat,
        # and keep the best of each.
        floors, fulls = [], []
        for round_ in range(ROUNDS):
            fresh()
            render_write, parts = floor(plan, work / f"floor{round_}")
            upstream = parts["read plan"] + parts["project"] + parts["markdown"]
            floors.append((upstream + render_write, render_write, parts))
            target = out if round_ == ROUNDS - 1 else work / f"full{round_}"
            fulls.append(timed(partial(run_generate, plan, target)))
        floor_time, render_write, parts = min(floors, key=lambda f: f[0])
        full = min(fulls)
        lines = sum(p.read_text("utf-8").count("\n") for p in out.rglob("*.py"))
        noop = min(timed(lambda: run_generate(plan, out)) for _ in range(3))

        # One row changed, three times (a quarter, half and three quarters into the plan): each
        # run regenerates after a real change; keep the best.
        rows = text.splitlines(keepends=True)
        one_rows = []
        for where in (len(rows) // 4, len(rows) // 2, 3 * len(rows) // 4):
            flow, log, machine = rows[where].rstrip("\n").split(",")
            rows[where] = f"{flow},{log} (changed),{machine}\n"
            plan.write_text("".join(rows), encoding="utf-8")
            one_rows.append(timed(lambda: run_generate(plan, out)))
        one_row = min(one_rows)

        print(
            f"plan: {numbers[0]:,} rows, {numbers[1]} flows, {numbers[2]} machines; "
            f"{lines:,} lines of Python generated"
        )
        print(
            f"floor = read plan {parts['read plan']:.2f} s + project {parts['project']:.2f} s"
            f" + markdown {parts['markdown']:.2f} s + render and write {render_write:.2f} s"
        )
        print()
        print(f"| {'measurement':<24} | {'seconds':>8} | {'target':<24} | {'met':<3} |")
        print(f"|{'-' * 26}|{'-' * 10}|{'-' * 26}|{'-' * 5}|")
        table = [
            ("floor", floor_time, "", None),
            ("  of which render+write", render_write, "", None),
            (
                "full generate",
                full,
                f"<= 3x floor ({3 * floor_time:.2f} s)",
                full <= 3 * floor_time,
            ),
            ("no-op regenerate", noop, "<= 0.5 s", noop <= 0.5),
            (
                "one row changed",
                one_row,
                f"<= 10% of full ({full / 10:.2f} s)",
                one_row <= full / 10,
            ),
        ]
        for name, seconds, target, met in table:
            mark = "" if met is None else ("yes" if met else "NO")
            print(f"| {name:<24} | {seconds:>8.2f} | {target:<24} | {mark:<3} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
