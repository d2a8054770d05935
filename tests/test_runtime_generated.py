"""The runtime on what `sl2s generate` really writes: every flow of every sample plan runs in one
process, and its events follow the plan (lock file order) on the right machines."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from eventlog import causal_chain, written
from typer.testing import CliRunner

from sl2s.cli import app
from sl2s.runtime.core import events
from sl2s.runtime.launch import load_entry

ROOT = Path(__file__).resolve().parent.parent
PLANS = [
    "login",
    "shop",
]  # shop: five machines, returns up the stack, a payments-only secret


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("runtime_generated")
    for plan in PLANS:
        shutil.copy(ROOT / "sample_plans" / f"{plan}.csv", base / f"{plan}.csv")
        out = base / f"rtgen_{plan}"
        result = CliRunner().invoke(
            app, ["generate", str(base / f"{plan}.csv"), "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
    sys.path.insert(0, str(base))
    yield base
    sys.path.remove(str(base))
    events.close_all()


def flows_of(system: Path) -> dict[str, list[tuple[int, str, str]]]:
    lock = json.loads((system / "sl2s.lock.json").read_text())
    return {
        flow: sorted(
            (lock["plan_lines"][flow][step_id], step_id, entry["machine"])
            for step_id, entry in steps.items()
        )
        for flow, steps in lock["steps"].items()
    }


@pytest.mark.parametrize("plan", PLANS)
def test_every_flow_of_a_generated_sample_runs_in_plan_order(
    generated, plan, monkeypatch, tmp_path
):
    system = generated / f"rtgen_{plan}"
    logs = tmp_path / "logs"
    monkeypatch.setenv("SL2S_LOG_DIR", str(logs))
    for flow, rows in flows_of(system).items():
        entry = load_entry(str(system), flow)
        values = {name: f"value-of-{name}" for name in entry.fields}
        result = entry.function(**values)
        assert result == values  # the stubs set nothing; every field comes back
        run = [e for e in written(logs) if e["attributes"]["sl2s.flow"] == flow]
        chain = causal_chain(run)
        assert [
            (
                int(e["attributes"]["sl2s.plan"].rsplit(":", 1)[1]),
                e["attributes"]["sl2s.step"],
                e["attributes"]["sl2s.machine"],
            )
            for e in chain
        ] == rows
        assert all(
            e["attributes"]["sl2s.plan"].startswith(f"{plan}.csv:") for e in chain
        )
        raw = b"".join(p.read_bytes() for p in logs.glob("*.jsonl"))
        for name in ("password", "card_number"):
            assert f"value-of-{name}".encode() not in raw
