"""Render a projection for people: plain text, a Mermaid sequence diagram, or Markdown (pure).

`markdown(projection)` is also what the generator writes as PLAN.md, so it carries no plan line
numbers (inserting a row must not change every later line of it).

Everything that comes from the plan is escaped for its target: in Mermaid every ASCII character
that the diagram syntax could read (`#`, `;`, `:`, `<`, quotes, `%`, braces, …) becomes an entity
code such as `#35;`; in Markdown, log text is put in code spans (no formatting, no mentions, no
HTML) with `|` escaped for tables. In every format, control characters (newlines) and format
characters that reorder or hide text (bidirectional overrides, zero-width spaces) are shown as
visible escapes like `\\u202e`; everything else is kept as written (emoji joiner sequences,
variation selectors, any script).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import PurePath

from sl2s.projection import FlowProjection, Hop, Projection

FORMATS = ("text", "mermaid", "markdown")

_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_MERMAID_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,()/?!'+-=*@~[]^|"
)
# ASCII characters outside _MERMAID_SAFE -> their entity code (str.translate table).
_MERMAID_ENTITIES = {
    code: f"#{code};" for code in range(0x80) if chr(code) not in _MERMAID_SAFE
}
_SAFE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# Format characters that reorder text or hide in it: always shown as escapes. The other format
# characters are part of how a script or an emoji is written and are kept (see _kept).
_BIDI_AND_HIDING = frozenset(
    [0x00AD, 0x061C, 0x180E, 0x200B, 0x200E, 0x200F, 0xFEFF]
    + list(range(0x202A, 0x202F))  # embeddings and overrides
    + list(
        range(0x2060, 0x2070)
    )  # word joiner, invisible operators, isolates, deprecated
    + list(range(0xFFF9, 0xFFFC))  # interlinear annotation
)
_JOINERS = ("\u200c", "\u200d")  # ZWNJ, ZWJ: kept between two visible characters
_BLACK_FLAG = "\U0001f3f4"  # tag characters are kept after it (subdivision flags)


def _kept(text: str, index: int) -> bool:
    """Whether the format character at `index` is kept as written."""
    ch = text[index]
    code = ord(ch)
    if code in _BIDI_AND_HIDING:
        return False
    if ch in _JOINERS:
        return (
            0 < index < len(text) - 1
            and _shown(text[index - 1])
            and _shown(text[index + 1])
        )
    if 0xE0020 <= code <= 0xE007F:
        before = index - 1
        while before >= 0 and 0xE0020 <= ord(text[before]) <= 0xE007F:
            before -= 1
        return before >= 0 and text[before] == _BLACK_FLAG
    return True


def _shown(ch: str) -> bool:
    return not ch.isspace() and unicodedata.category(ch) not in _INVISIBLE


def visible(text: str) -> str:
    """Replace control and separator characters (newlines), and format characters that reorder
    text or hide in it (bidi controls, zero-width spaces), with visible backslash escapes, so
    that text cannot hide or reorder itself. Everything else stays as written: joiners inside
    emoji and words (`👩‍👩‍👧`), variation selectors, flag tags, any script.
    """
    if text.isprintable():
        # str.isprintable is false exactly for the categories Other (Cc, Cf, Cs, Co, Cn) and
        # Separator (Zl, Zp, Zs) except the ASCII space: then nothing here is invisible.
        return text
    out = []
    for index, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category in _INVISIBLE and not (category == "Cf" and _kept(text, index)):
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def mermaid_text(text: str) -> str:
    """Plan-derived text made safe inside a Mermaid sequence diagram line (after the `:`)."""
    return visible(text).translate(_MERMAID_ENTITIES).strip() or "#160;"


@lru_cache(maxsize=65536)
def markdown_code(text: str) -> str:
    """Text as a Markdown code span that is safe inside a table cell."""
    body = visible(text).replace("|", "\\|")
    if not body:
        return ""
    longest = (
        max((len(run) for run in re.findall(r"`+", body)), default=0)
        if "`" in body
        else 0
    )
    fence = "`" * (longest + 1)
    if body[0] == "`" or body[-1] == "`" or (body[0] == " " and body[-1] == " "):
        body = f" {body} "
    return f"{fence}{body}{fence}"


def _label(hop: Hop) -> str:
    names = list(hop.fields) + [f"#{s}" for s in hop.secrets]
    return ", ".join(names) if names else "(no fields)"


def _hops_after(fp: FlowProjection) -> dict[str, list[Hop]]:
    after: dict[str, list[Hop]] = {}
    for hop in fp.hops:
        after.setdefault(hop.after, []).append(hop)
    return after


# --- text --------------------------------------------------------------------------------------


def text(projection: Projection) -> str:
    """Per flow: its segments (steps with their plan lines) and the hops between them."""
    plan = projection.plan
    lines = [f"plan {visible(plan.path)}"]
    for fp in projection.flows:
        flow = plan.flow(fp.flow)
        route = " -> ".join(seg.machine for seg in fp.segments)
        lines.append("")
        lines.append(f"flow {fp.flow}: {route}")
        after = _hops_after(fp)
        width = max((len(str(s.line)) for s in flow.steps), default=1)
        for segment in fp.segments:
            lines.append(f"  [{segment.machine}]")
            for step in segment.steps:
                lines.append(
                    f"    line {step.line:>{width}}  {step.id}: {visible(step.template)}"
                )
            for hop in after.get(segment.steps[-1].id, []):
                if hop.kind == "call":
                    where = f"call at {hop.at}, resume at {hop.resume_at or '(end)'}"
                else:
                    where = f"return, resume at {hop.resume_at or '(end)'}"
                lines.append(
                    f"  {hop.source} -> {hop.target}: {where}; carries {_label(hop)}"
                )
    return "\n".join(lines) + "\n"


# --- mermaid -----------------------------------------------------------------------------------


def _participant_ids(machines: tuple[str, ...]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for number, name in enumerate(machines, start=1):
        ids[name] = f"m_{name}" if _SAFE_ID.match(name) else f"m{number}"
    return ids


def mermaid(projection: Projection) -> str:
    """A Mermaid `sequenceDiagram` of the whole plan: one participant per machine, a note per
    step, an arrow per hop (solid: call, dotted: return) labelled with the fields it carries;
    activations show the stack. (PLAN.md has one diagram per flow: `mermaid_flow`.)
    """
    plan = projection.plan
    machines = plan.machines  # computed on each access
    ids = _participant_ids(machines)
    lines = ["sequenceDiagram"]
    for name in machines:
        lines.append(f"    participant {ids[name]} as {mermaid_text(name)}")
    span = ids[machines[0]] if machines else ""
    if len(machines) > 1:
        span = f"{ids[machines[0]]},{ids[machines[-1]]}"
    for fp in projection.flows:
        lines.append(f"    Note over {span}: flow {mermaid_text(fp.flow)}")
        lines += _flow_lines(fp, ids)
    return "\n".join(lines) + "\n"


def mermaid_flow(
    projection: Projection, flow: str | FlowProjection, machines: tuple[str, ...] = ()
) -> str:
    """The Mermaid `sequenceDiagram` of one flow: only the machines it runs on, in plan order.
    `machines`: the plan's machines, when the caller has them (`plan.machines` reads every
    step)."""
    fp = projection.flow(flow) if isinstance(flow, str) else flow
    machines = machines or projection.plan.machines
    used = {segment.machine for segment in fp.segments}
    ids = _participant_ids(machines)
    lines = ["sequenceDiagram"]
    for name in machines:
        if name in used:
            lines.append(f"    participant {ids[name]} as {mermaid_text(name)}")
    lines += _flow_lines(fp, ids)
    return "\n".join(lines) + "\n"


def _flow_lines(fp: FlowProjection, ids: dict[str, str]) -> list[str]:
    lines = []
    after = _hops_after(fp)
    for segment in fp.segments:
        for step in segment.steps:
            lines.append(
                f"    Note over {ids[segment.machine]}: {mermaid_text(step.template)}"
            )
        for hop in after.get(segment.steps[-1].id, []):
            arrow = "->>+" if hop.kind == "call" else "-->>-"
            lines.append(
                f"    {ids[hop.source]}{arrow}{ids[hop.target]}: {mermaid_text(_label(hop))}"
            )
    return lines


# --- markdown ----------------------------------------------------------------------------------


def markdown(projection: Projection, title: str | None = None) -> str:
    """Heading; per flow a heading and its Mermaid diagram (one diagram per flow, so a plan of
    many machines stays readable); then a table of steps (flow, step id, machine, log text).
    """
    plan = projection.plan
    if title is None:
        title = f"Plan {markdown_code(PurePath(plan.path).name)}"
    lines = [f"# {title}", ""]
    machines = plan.machines  # computed on each access
    for fp in projection.flows:
        lines += [
            f"## Flow {markdown_code(fp.flow)}",
            "",
            "```mermaid",
            mermaid_flow(projection, fp, machines).rstrip("\n"),
            "```",
            "",
        ]
    lines += ["## Steps", ""]
    lines.append("| Flow | Step | Machine | Log |")
    lines.append("| --- | --- | --- | --- |")
    for flow in plan.flows:
        for step in flow.steps:
            lines.append(
                f"| {markdown_code(flow.name)} | {markdown_code(step.id)} | "
                f"{markdown_code(step.machine)} | {markdown_code(step.template)} |"
            )
    return "\n".join(lines) + "\n"


def render(projection: Projection, format: str) -> str:
    """`format` is one of FORMATS."""
    if format == "text":
        return text(projection)
    if format == "mermaid":
        return mermaid(projection)
    if format == "markdown":
        return markdown(projection)
    raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
