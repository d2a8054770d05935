"""The generate cache (`<out>/.sl2s/cache/`, including the per-machine memo of rendered wiring
chunks) never changes output: after every edit of a sequence of plan and user-code edits, a tree
generated with the cache kept from run to run is byte-identical to one generated with the cache
deleted before each run, and `sl2s generate` prints the same."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

from sl2s.cli import main

MACHINES = ["client", "server", "db", "machine", "auth"]
FIELDS = ["user_id", "order_id", "amount", "email", "machine", "run"]


def sl2s(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["sl2s", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return done.value.code, out, err


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".sl2s" not in p.relative_to(root).parts
    }


def random_plan(rnd: random.Random, flows: int = 6) -> list[list[str]]:
    rows = []
    for f in range(flows):
        cast = rnd.sample(MACHINES, k=rnd.randint(1, 4))
        machine = cast[0]
        for s in range(rnd.randint(1, 7)):
            if s and rnd.random() < 0.5:
                machine = rnd.choice(cast)
            fields = rnd.sample(FIELDS, k=rnd.randint(0, 2))
            text = f"Step {s} of flow {f}" + "".join(f" :{x}" for x in fields)
            if rnd.random() < 0.15:
                text += " #api_key"
            rows.append([f"flow{f}", text, machine])
    return rows


def edit(rnd: random.Random, rows: list[list[str]]) -> list[list[str]]:
    """One random plan edit: change a log text or a machine, insert, delete or move a row."""
    rows = [list(r) for r in rows]
    i = rnd.randrange(len(rows))
    kind = rnd.choice(["text", "machine", "insert", "delete", "move", "secret"])
    if kind == "text":
        rows[i][1] += " (changed)"
    elif kind == "machine":
        rows[i][2] = rnd.choice(MACHINES)
    elif kind == "insert":
        rows.insert(
            i, [rows[i][0], f"Inserted {rnd.randrange(10**6)} :amount", rows[i][2]]
        )
    elif kind == "delete" and len(rows) > 1:
        del rows[i]
    elif kind == "move":
        row = rows.pop(i)
        rows.insert(rnd.randrange(len(rows) + 1), row)
    elif kind == "secret":
        rows[i][1] += " with #token"
    return rows


def text_of(rows: list[list[str]]) -> str:
    return "request,log,machine\n" + "".join(",".join(r) + "\n" for r in rows)


def take_secret_parameter(services: Path) -> None:
    """User code asks for a secret (changes `uses`, so hops and wiring change)."""
    for module in sorted(services.glob("*/flow*.py")):
        source = module.read_text(encoding="utf-8")
        if "def " in source and "api_key" not in source:
            head, _, rest = source.partition("def ")
            name, _, tail = rest.partition("(")
            module.write_text(
                f"{head}def {name}(api_key, {tail}".replace(", )", ")"),
                encoding="utf-8",
            )
            return


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cache_on_and_off_give_identical_trees(tmp_path, monkeypatch, capsys, seed):
    monkeypatch.chdir(tmp_path)
    rnd = random.Random(seed)
    rows = random_plan(rnd)
    plans = [rows]
    for _ in range(8):
        rows = edit(rnd, rows)
        plans.append(rows)
    plans.append(plans[0])  # back to the start: old cache entries, pruned or not
    for step, rows in enumerate(plans):
        Path("plan.csv").write_text(text_of(rows), encoding="utf-8")
        results = []
        for out, keep in (("cached", True), ("uncached", False)):
            if not keep:
                shutil.rmtree(Path(out) / ".sl2s", ignore_errors=True)
            results.append(
                sl2s(monkeypatch, capsys, "generate", "plan.csv", "--out", out)
            )
        cached, uncached = results
        assert cached[0] == uncached[0], (step, cached, uncached)
        if cached[0] != 0:
            continue  # an invalid plan (e.g. a duplicate step id): same errors, nothing written
        assert cached[1].replace("cached/", "X/") == uncached[1].replace(
            "uncached/", "X/"
        )
        assert tree(Path("cached")) == tree(Path("uncached")), step
        if step == 4:
            for out in ("cached", "uncached"):
                take_secret_parameter(Path(out))
    assert (Path("cached") / ".sl2s" / "cache" / "render").is_dir()


def test_a_damaged_render_cache_is_ignored(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rnd = random.Random(7)
    rows = random_plan(rnd)
    Path("plan.csv").write_text(text_of(rows), encoding="utf-8")
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    expected = tree(Path("services"))
    render = Path("services") / ".sl2s" / "cache" / "render"
    files = sorted(render.glob("*.json"))
    assert files
    files[0].write_text("{not json", encoding="utf-8")
    for other in files[1:]:
        other.write_text('{"key": "another sl2s", "chunks": {}}', encoding="utf-8")
    shutil.rmtree(Path("services") / "client", ignore_errors=True)
    (Path("services") / "PLAN.md").unlink()
    assert sl2s(monkeypatch, capsys, "generate", "plan.csv")[0] == 0
    assert tree(Path("services")) == expected
