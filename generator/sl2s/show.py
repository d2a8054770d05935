"""Render a projection for people: plain text, a Mermaid sequence diagram, or Markdown (pure).

`markdown(projection)` is also what the generator writes as PLAN.md, so it carries no plan line
numbers (inserting a row must not change every later line of it).

Everything that comes from the plan is escaped for its target: in Mermaid every ASCII character
that the diagram syntax could read (`#`, `;`, `:`, `<`, quotes, `%`, braces, …) becomes an entity
code such as `#35;`; in Markdown, log text is put in code spans (no formatting, no mentions, no
HTML) with `|` escaped for tables. In every format, control and format characters — newlines,
bidirectional overrides, zero-width characters — are shown as visible escapes like `\\u202e`.
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


def visible(text: str) -> str:
    """Replace control, format and separator characters (newlines, bidi controls, zero-width
    characters) with visible backslash escapes, so that text cannot hide or reorder itself.
    """
    if text.isprintable():
        # str.isprintable is false exactly for the categories Other (Cc, Cf, Cs, Co, Cn) and
        # Separator (Zl, Zp, Zs) except the ASCII space: then nothing here is invisible.
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in _INVISIBLE:
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
    """A Mermaid `sequenceDiagram`: one participant per machine, a note per step, an arrow per hop
    (solid: call, dotted: return) labelled with the fields it carries; activations show the stack.
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
        after = _hops_after(fp)
        lines.append(f"    Note over {span}: flow {mermaid_text(fp.flow)}")
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
    return "\n".join(lines) + "\n"


# --- markdown ----------------------------------------------------------------------------------


def markdown(projection: Projection, title: str | None = None) -> str:
    """Heading, the Mermaid diagram, and a table of steps (flow, step id, machine, log text)."""
    plan = projection.plan
    if title is None:
        title = f"Plan {markdown_code(PurePath(plan.path).name)}"
    lines = [
        f"# {title}",
        "",
        "```mermaid",
        mermaid(projection).rstrip("\n"),
        "```",
        "",
    ]
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
