"""sl2s.show: text / Mermaid / Markdown renderings of a projection, and their escaping."""

from __future__ import annotations

import difflib
import re
import unicodedata

import pytest
from conftest import SAMPLE_PLANS
from hypothesis import given, settings
from hypothesis import strategies as st

from sl2s import show
from sl2s.model import Flow, Plan, Step
from sl2s.plan import parse_plan
from sl2s.projection import project

SAMPLES = sorted(SAMPLE_PLANS.glob("*.csv"))


def read_sample(name: str):
    """A sample plan, named as from the repository root whatever the working directory."""
    return parse_plan((SAMPLE_PLANS / name).read_bytes(), f"sample_plans/{name}")


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_mermaid_golden_for_every_sample_plan(path, golden):
    projection = project(read_sample(path.name))
    golden(f"show/{path.stem}.mmd", show.mermaid(projection))


def test_text_and_markdown_goldens_for_login(golden):
    projection = project(read_sample("login.csv"))
    golden("show/login.txt", show.text(projection))
    golden("show/login.md", show.markdown(projection))


def test_mermaid_structure_for_login():
    lines = show.mermaid(project(read_sample("login.csv"))).splitlines()
    assert lines[:3] == [
        "sequenceDiagram",
        "    participant m_client as client",
        "    participant m_server as server",
    ]
    arrows = [line.strip() for line in lines if ">>" in line]
    assert arrows == [
        "m_client->>+m_server: username",
        "m_server-->>-m_client: username",
        "m_client->>+m_server: (no fields)",
        "m_server-->>-m_client: (no fields)",
    ]
    assert (
        "    Note over m_client: User attempted login as #58;username and #35;password"
        in lines
    )
    assert (
        sum(
            line.strip().startswith("Note over m_client,m_server: flow ")
            for line in lines
        )
        == 2
    )


def test_secrets_are_labelled_by_name_on_arrows():
    data = b"request,log,machine\nf,Typed #pin,a\nf,Checking #pin,b\n"
    mermaid = show.mermaid(project(parse_plan(data, "p.csv")))
    assert "m_a->>+m_b: #35;pin" in mermaid  # renders as "#pin"


HOSTILE = [
    'Evil "x"; end',
    "#y <br/> <script>alert(1)</script>",
    '%%{init: {"theme":"dark"}}%%',
    "\u202eabc\u200b\u2066x\u2069",
    "line\nNote over m_a: pwned; a->>b: x",
    "$$x^2$$ ``` &amp; #35; style x:#fff; classDef q:#f00;",
    "|pipe| `tick` \\|",
    "",
]

_SAFE_MERMAID_LINE = re.compile(
    r"(?:[A-Za-z0-9 _.,()/?!'+\-=*@~\[\]^|]|#\d+;|[^\x00-\x7f])*\Z"
)


def hostile_projection():
    steps = []
    for n, template in enumerate(HOSTILE, start=1):
        machine = "a" if n % 2 else "end"
        steps.append(Step("f", f"s{n}", template, (template,), machine, n))
    return project(Plan("hostile.csv", (Flow("f", "f", tuple(steps)),), "0" * 64))


def test_a_hostile_plan_cannot_break_the_mermaid_diagram():
    lines = show.mermaid(hostile_projection()).splitlines()
    # one line per participant, flow note, step note and hop: nothing was split or swallowed
    notes = [line for line in lines if line.startswith("    Note over ")]
    arrows = [line for line in lines if ">>" in line]
    assert len(notes) == 1 + len(HOSTILE)
    assert len(arrows) == len(hostile_projection().flow("f").hops)
    for line in notes:
        text = line.split(": ", 1)[1]
        assert _SAFE_MERMAID_LINE.match(text), text
        assert "%%" not in text and ";" not in re.sub(r"#\d+;", "", text)
    assert all(unicodedata.category(ch) not in {"Cc", "Cf"} for ch in "".join(lines))
    assert "participant m_end as end" in lines[2]


def _decode_entities(text: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_mermaid_text_is_safe_and_keeps_the_visible_text(text):
    out = show.mermaid_text(text)
    assert _SAFE_MERMAID_LINE.match(out)
    assert not any(unicodedata.category(ch) in {"Cc", "Zl", "Zp"} for ch in out)
    # no format character that reorders or hides text; joiners only between visible characters
    assert not any(ord(ch) in show._BIDI_AND_HIDING for ch in out)
    for n, ch in enumerate(out):
        if ch in "\u200c\u200d":
            assert 0 < n < len(out) - 1 and show._shown(out[n - 1]), repr(out)
            assert show._shown(out[n + 1]), repr(out)
    expected = show.visible(text).strip() or "\u00a0"
    assert _decode_entities(out) == expected


def _cells(row: str) -> list[str]:
    """Split a GFM table row on unescaped pipes."""
    return [cell for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_markdown_table_survives_pipes_backticks_and_newlines():
    md = show.markdown(hostile_projection())
    rows = [line for line in md.splitlines() if line.startswith("| `f`")]
    assert len(rows) == len(HOSTILE)
    for row, template in zip(rows, HOSTILE):
        cells = _cells(row)
        assert len(cells) == 4, row
        if template:
            assert cells[3].strip().startswith("`") and cells[3].strip().endswith("`")
    assert md.count("```mermaid") == 1
    mermaid_block = md.split("```mermaid\n", 1)[1].split("\n```\n", 1)[0]
    assert "`" not in mermaid_block


def test_text_is_kept_as_written_emoji_sequences_and_scripts_included():
    family = "\U0001f469\u200d\U0001f469\u200d\U0001f467"  # 👩‍👩‍👧, one glyph
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # a ZWNJ inside a word
    heart = "\u2764\ufe0f"  # with its emoji variation selector
    for text in (
        family,
        scotland,
        persian,
        heart,
        "caf\u00e9 \u6f22\u5b57 \u0928\u092e\u0938\u094d\u0924\u0947",
    ):
        assert show.visible(text) == text
        assert show.mermaid_text(text) == text
        assert show.markdown_code(text) == f"`{text}`"
    data = f"request,log,machine\nf,Hello {family} from {scotland},a\nf,Done,b\n"
    md = show.markdown(project(parse_plan(data.encode(), "p.csv")))
    assert f"Note over m_a: Hello {family} from {scotland}" in md
    # what hides or reorders text is still shown as an escape, joiners included when alone
    assert (
        show.visible("\u200dx\u202ey\u200bz\u2066") == "\\u200dx\\u202ey\\u200bz\\u2066"
    )
    assert show.visible("x\u200d\u202e") == "x\\u200d\\u202e"


def test_one_diagram_per_flow_with_only_its_machines():
    rows = ["request,log,machine"]
    for m in range(40):  # 40 machines; each flow visits three of them
        for step in range(3):
            rows.append(f"flow{m},Step {step} of flow {m},m{(m + step) % 40}")
    projection = project(parse_plan(("\n".join(rows) + "\n").encode(), "big.csv"))
    md = show.markdown(projection)
    blocks = md.split("```mermaid\n")[1:]
    assert len(blocks) == 40
    for m, block in enumerate(blocks):
        diagram = block.split("\n```\n", 1)[0]
        participants = [ln for ln in diagram.splitlines() if "participant" in ln]
        assert [p.split(" as ")[1] for p in participants] == sorted(
            {f"m{(m + s) % 40}" for s in range(3)}, key=lambda n: int(n[1:])
        )
    assert (
        md.index("## Flow `flow0`") < md.index("## Flow `flow1`") < md.index("## Steps")
    )


def test_markdown_has_no_line_numbers_so_inserting_a_row_changes_only_its_lines():
    before = b"request,log,machine\nf,Start :x,a\nf,Work on :x,b\nf,Done,a\ng,Other,a\n"
    after = b"request,log,machine\nf,Start :x,a\nf,Prepare :x,a\nf,Work on :x,b\nf,Done,a\ng,Other,a\n"
    old = show.markdown(project(parse_plan(before, "p.csv"))).splitlines()
    new = show.markdown(project(parse_plan(after, "p.csv"))).splitlines()
    changed = [
        line
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed == [
        "+    Note over m_a: Prepare #58;x",
        "+| `f` | `prepare_x` | `a` | `Prepare :x` |",
    ]


def test_text_shows_lines_segments_and_hops():
    out = show.text(project(read_sample("index.csv")))
    assert out.splitlines()[:4] == [
        "plan sample_plans/index.csv",
        "",
        "flow index: server -> emailservice -> server",
        "  [server]",
    ]
    assert (
        "  server -> emailservice: call at sending_welcome_email_to_email, resume at "
        "rendering_index_page_for_email; carries email" in out
    )
    assert (
        "    line 1  received_request_for_the_index_page_from_email: "
        "Received request for the index page from :email" in out
    )


def test_render_dispatches_and_rejects_unknown_formats():
    projection = project(read_sample("index.csv"))
    assert show.render(projection, "mermaid") == show.mermaid(projection)
    assert show.render(projection, "markdown") == show.markdown(projection)
    with pytest.raises(ValueError):
        show.render(projection, "svg")
