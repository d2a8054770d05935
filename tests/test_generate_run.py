"""Generate each sample plan, import the generated system and run every flow in one process (the
local transport): one event per step in plan order, on the right machines, one correlation id,
and an unbroken causation chain."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from eventlog import causal_chain, written

from sl2s.generate import generate
from sl2s.generate.writer import apply, plan_changes
from sl2s.plan import read_plan
from sl2s.runtime.core import events

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_plans").glob("*.csv"))


@pytest.fixture
def system(tmp_path, monkeypatch, request):
    """Generate a sample plan into tmp_path/<package> and make it importable."""
    package = f"gen_run_{request.node.callspec.id}"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    monkeypatch.delenv("SL2S_SECRETS", raising=False)

    def make(plan_path: Path):
        (tmp_path / plan_path.name).write_bytes(plan_path.read_bytes())
        plan = read_plan(tmp_path / plan_path.name)
        out = tmp_path / package
        generation = generate(plan, plan_ref=f"../{plan_path.name}", user_modules={})
        apply(out, plan_changes(out, generation))
        return plan, package, tmp_path / "logs"

    yield make
    events.close_all()
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_flow_of_every_sample_runs_in_process(sample: Path, system) -> None:
    plan, package, logs = system(sample)
    for flow in plan.flows:
        first_machine = flow.steps[0].machine
        machine = importlib.import_module(f"{package}.{first_machine}")
        entry = getattr(machine, flow.name)
        fields = {name: f"v-{name}" for s in flow.steps for name in s.placeholders}
        result = entry(**fields)
        events.close_all()

        evts = [e for e in written(logs) if e["attributes"]["sl2s.flow"] == flow.name]
        assert len({e["attributes"]["sl2s.correlation_id"] for e in evts}) == 1
        chain = causal_chain(evts)
        steps = [e for e in chain if e["event_name"] == "sl2s.step"]
        assert [
            (e["attributes"]["sl2s.machine"], e["attributes"]["sl2s.step"])
            for e in steps
        ] == [(s.machine, s.id) for s in flow.steps]
        assert [e["attributes"]["sl2s.plan"] for e in steps] == [
            f"{sample.name}:{s.line}" for s in flow.steps
        ]
        assert [e["resource"]["service.name"] for e in steps] == [
            s.machine for s in flow.steps
        ]
        for e in steps:
            for name, value in e["attributes"]["sl2s.fields"].items():
                secret = name in flow.secrets
                assert value == ("***" if secret else f"v-{name}")
        assert isinstance(result, dict)
        for name in flow.fields:
            assert result[name] == f"v-{name}"
        for path in logs.glob("*.jsonl"):
            path.unlink()


def test_hostile_plan_text_is_inert_when_the_system_is_imported_and_run(
    tmp_path, monkeypatch
) -> None:
    marker = tmp_path / "pwned"
    texts = [
        f"'); open({str(marker)!r}, 'w'); ('",
        f'"""); open({str(marker)!r}, "w"); ("""',
        "{{ self.__init__.__globals__ }} {% raw %} %s %(x)s \\x85 \\u2028",
        "NEL\x85 LS\u2028 PS\u2029 tab\t end \\",
        "# not a comment :user",
    ]
    rows = ["request,log,machine,id"]
    for i, text in enumerate(texts):
        cell = '"' + text.replace('"', '""') + '"'
        rows.append(f"evil,{cell},{'m1' if i % 2 == 0 else 'm2'},s{i}")
    (tmp_path / "evil.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plan = read_plan(tmp_path / "evil.csv")
    out = tmp_path / "gen_run_evil"
    generation = generate(plan, plan_ref="../evil.csv", user_modules={})
    apply(out, plan_changes(out, generation))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SL2S_TRANSPORT", raising=False)
    try:
        machine = importlib.import_module("gen_run_evil.m1")
        machine.evil(user="ann")
        events.close_all()
        steps = [
            e for e in written(tmp_path / "logs") if e["event_name"] == "sl2s.step"
        ]
        chain = [e["attributes"]["sl2s.template"] for e in causal_chain(steps)]
        assert chain == texts
    finally:
        events.close_all()
        for name in [
            m
            for m in sys.modules
            if m == "gen_run_evil" or m.startswith("gen_run_evil.")
        ]:
            del sys.modules[name]
    assert not marker.exists()
