"""PLAN.md through the real Mermaid renderer (@mermaid-js/mermaid-cli on Debian's chromium, both
installed by .ci/ensure-mermaid): every diagram of every sample plan and of the hostile corpus
(tests/data/mermaid/hostile.csv, and text the plan reader refuses but the renderer must still
survive) renders, one diagram per flow, and each step's note shows the log text as written —
emoji joiner sequences and every script included — with nothing injected."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sl2s import show
from sl2s.model import Flow, Plan, Step
from sl2s.plan import read_plan
from sl2s.projection import Projection, project

ROOT = Path(__file__).resolve().parent.parent
MERMAID_DIR = Path(
    os.environ.get("SL2S_MERMAID_DIR", Path.home() / ".cache" / "sl2s" / "mermaid")
)
MMDC = MERMAID_DIR / "node_modules" / ".bin" / "mmdc"
PLANS = [
    *sorted((ROOT / "sample_plans").glob("*.csv")),
    ROOT / "tests" / "data" / "mermaid" / "hostile.csv",
]

# What the plan reader refuses (bidi controls) or cannot hold (newlines), built directly: the
# renderer must still show it inert.
UNREADABLE = [
    "\u202eabc\u200b\u2066x\u2069",
    "line\nNote over m_a: pwned; a->>b: x",
    "",
    "end",
]


def render(markdown: str, tmp: Path) -> list[str]:
    """Render `markdown` with mmdc: the text content of each diagram's SVG, in order."""
    assert MMDC.exists(), f"{MMDC} is missing: run .ci/ensure-mermaid"
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run .ci/ensure-mermaid"
    config = tmp / "puppeteer.json"
    config.write_text(
        json.dumps(
            {"executablePath": chromium, "args": ["--no-sandbox", "--disable-gpu"]}
        )
    )
    source = tmp / "PLAN.md"
    source.write_text(markdown, encoding="utf-8")
    done = subprocess.run(
        [
            str(MMDC),
            "-q",
            "-p",
            str(config),
            "-i",
            str(source),
            "-o",
            str(tmp / "out.md"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    count = markdown.count("```mermaid")
    svgs = [
        (tmp / f"out-{n}.svg").read_text(encoding="utf-8") for n in range(1, count + 1)
    ]
    assert not (tmp / f"out-{count + 1}.svg").exists()
    for svg in svgs:  # plan text stays text: no element of its own
        assert "<script" not in svg and "<br" not in svg and "<a " not in svg
    return [_text(svg) for svg in svgs]


def _text(svg: str) -> str:
    """The text an SVG shows, whitespace collapsed (style and script bodies left out)."""
    svg = re.sub(r"<(style|script)\b.*?</\1>", "", svg, flags=re.S)
    parts = re.findall(r">([^<]+)<", svg)
    return " ".join(" ".join(html.unescape(p).split()) for p in parts)


def shown(template: str) -> str:
    """A log text as its note shows it: visible escapes, whitespace collapsed."""
    return " ".join(show.visible(template).split())


def check(projection: Projection, tmp: Path) -> None:
    texts = render(show.markdown(projection), tmp)
    assert len(texts) == len(projection.flows)  # one diagram per flow
    plan = projection.plan
    for fp, text in zip(projection.flows, texts):
        flow = plan.flow(fp.flow)
        for step in flow.steps:
            assert shown(step.template) in text, (fp.flow, step.template, text)
        others = {s.machine for f in plan.flows for s in f.steps} - {
            s.machine for s in flow.steps
        }
        for machine in others:  # only the flow's own machines take part
            assert f" {machine} " not in f" {text} ", (fp.flow, machine)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_plan_md_renders_with_the_real_renderer(plan: Path, tmp_path: Path) -> None:
    check(project(read_plan(plan)), tmp_path)


def test_text_the_reader_refuses_still_renders_inert(tmp_path: Path) -> None:
    steps = tuple(
        Step("f", f"s{n}", template, (template,), "a" if n % 2 else "b", n)
        for n, template in enumerate(UNREADABLE, start=1)
    )
    check(project(Plan("hostile.csv", (Flow("f", "f", steps),), "0" * 64)), tmp_path)


def test_joiner_sequences_reach_the_rendered_diagram_as_written(tmp_path: Path) -> None:
    family = "\U0001f469\u200d\U0001f469\u200d\U0001f467"
    text = render(show.markdown(project(read_plan(PLANS[-1]))), tmp_path)[1]
    assert f"Family {family} and flag" in text
    assert "\\u200d" not in text
