"""A run as a sequence diagram, server-rendered SVG in the visual language of PLAN.md's Mermaid
diagrams: a participant box per machine (top and bottom) with its lifeline, a note over the
machine for each step, a solid arrow for a call and a dashed one for a return, a note across all
machines naming the flow. No script: each note links to its event's row on the page."""

from __future__ import annotations

from markupsafe import Markup, escape

COLUMN = 210
NOTE_WIDTH = 190
ROW = 38
TOP = 62
MARGIN = 20
CHARS = 25  # characters of a note before it is cut (the full text is the note's title)


def _cut(text: str, size: int = CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= size else text[: size - 1] + "…"


def sequence_svg(flow: str, machines: list[str], items: list[dict]) -> Markup:
    """SVG markup of one run: `items` as the run page has them (events and hops, causal order)."""
    machines = list(machines) or ["?"]
    x = {m: MARGIN + COLUMN // 2 + i * COLUMN for i, m in enumerate(machines)}
    width = MARGIN * 2 + COLUMN * len(machines)
    rows = sum(1 for _ in items) + 1
    height = TOP + rows * ROW + 60
    out: list[str] = [
        f'<svg class="seq" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="sequence diagram of flow {escape(flow)}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="seq-head"/></marker></defs>'
    ]
    bottom = height - 48
    for m in machines:
        cx = x[m]
        out.append(
            f'<line class="seq-life" x1="{cx}" y1="{TOP - 10}" x2="{cx}" y2="{bottom}"/>'
        )
        for y in (10, bottom):
            out.append(
                f'<rect class="seq-actor" x="{cx - 80}" y="{y}" width="160" height="38" rx="3"/>'
                f'<text class="seq-actor-text" x="{cx}" y="{y + 24}">{escape(_cut(m, 22))}</text>'
            )
    y = TOP + 4
    left, right = min(x.values()) - NOTE_WIDTH // 2, max(x.values()) + NOTE_WIDTH // 2
    out.append(
        f'<rect class="seq-note" x="{left}" y="{y}" width="{right - left}" height="26"/>'
        f'<text class="seq-note-text" x="{(left + right) // 2}" y="{y + 17}">'
        f"flow {escape(flow)}</text>"
    )
    for item in items:
        y += ROW
        if item["kind"] == "hop":
            a, b = x.get(item["source"]), x.get(item["target"])
            if a is None or b is None:
                continue
            dashed = " seq-return" if item["hop"] == "return" else ""
            end = b - 6 if b > a else b + 6
            out.append(
                f'<line class="seq-msg{dashed}" x1="{a}" y1="{y + 14}" x2="{end}" y2="{y + 14}" '
                'marker-end="url(#arrow)"/>'
                f'<text class="seq-msg-text" x="{(a + b) // 2}" y="{y + 8}">'
                f'{escape(item["hop"])}</text>'
            )
            continue
        cx = x.get(item["machine"], x[machines[0]])
        classes = "seq-note"
        if item.get("failed"):
            classes += " seq-failed"
        if item.get("highlight"):
            classes += " seq-highlight"
        text = item.get("body") or item.get("step") or ""
        out.append(
            f'<a href="#e-{escape(item["id"])}" class="seq-link">'
            f"<title>{escape(item['step'])}: {escape(text)}</title>"
            f'<rect class="{classes}" x="{cx - NOTE_WIDTH // 2}" y="{y}" '
            f'width="{NOTE_WIDTH}" height="28"/>'
            f'<text class="seq-note-text" x="{cx}" y="{y + 18}">{escape(_cut(text))}</text></a>'
        )
    out.append("</svg>")
    return Markup("".join(out))
