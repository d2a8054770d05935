"""A module's text as a list of segments: top-level statement chunks and the gaps between them.

Pure text bookkeeping, no semantics. A **chunk** is one top-level statement (several when they share
a line via `;`) with its decorators, the comment lines directly above it (no blank line between) and
indented comment lines that trail it. A **gap** is everything else between chunks: blank lines and
free-standing comments. Concatenating the segments gives back the source byte for byte.

Moving a chunk takes it together with the run of blank lines directly above it (its separator), so
that removing it leaves the neighbours separated as before and inserting it back restores the text.
"""

from __future__ import annotations

import ast
import io
from dataclasses import dataclass, field


def split_lines(text: str) -> list[str]:
    """Lines with their endings, split exactly where Python's tokenizer counts lines."""
    return io.StringIO(text, newline="").readlines()


def is_blank(line: str) -> bool:
    return not line.strip()


def is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


@dataclass(eq=False)
class Chunk:
    stmts: list[ast.stmt]
    lines: list[str]
    first_line: (
        int  # 1-based line of the chunk's first line (comments included) in its source
    )
    stmt_line: int  # 1-based line of the first decorator / the statement itself

    @property
    def node(self) -> ast.stmt:
        return self.stmts[0]

    @property
    def text(self) -> str:
        return "".join(self.lines)


@dataclass(eq=False)
class Gap:
    lines: list[str] = field(default_factory=list)


Segment = Chunk | Gap


def segments(source: str, tree: ast.Module) -> list[Segment]:
    """Cut `source` (whose parse is `tree`) into chunks and gaps."""
    lines = split_lines(source)
    spans: list[tuple[int, int, list[ast.stmt]]] = (
        []
    )  # 0-based [start, end) of statement lines
    for stmt in tree.body:
        start = (
            min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", ())])
            - 1
        )
        end = stmt.end_lineno or stmt.lineno
        if spans and start < spans[-1][1]:  # `a = 1; b = 2` on one line
            s, e, group = spans[-1]
            spans[-1] = (s, max(e, end), group + [stmt])
        else:
            spans.append((start, end, [stmt]))
    out: list[Segment] = []
    pos = 0
    for i, (start, end, group) in enumerate(spans):
        stmt_start = start
        # comment lines directly above belong to the statement
        while start > pos and is_comment(lines[start - 1]):
            start -= 1
        # indented comments after the body (blank lines allowed in between) belong to it too
        limit = spans[i + 1][0] if i + 1 < len(spans) else len(lines)
        probe, last = end, end
        while probe < limit and (is_blank(lines[probe]) or lines[probe][:1] in " \t"):
            if not is_blank(lines[probe]):
                if not is_comment(lines[probe]):
                    break
                last = probe + 1
            probe += 1
        end = last
        if start > pos:
            out.append(Gap(lines[pos:start]))
        out.append(Chunk(group, lines[start:end], start + 1, stmt_start + 1))
        pos = end
    if pos < len(lines):
        out.append(Gap(lines[pos:]))
    return out


def render(segs: list[Segment]) -> str:
    return "".join("".join(s.lines) for s in segs)


def blank_run_before(segs: list[Segment], index: int) -> list[str]:
    """The blank lines directly above segment `index` (the tail of the gap before it)."""
    if index == 0 or not isinstance(segs[index - 1], Gap):
        return []
    gap = segs[index - 1].lines
    n = 0
    while n < len(gap) and is_blank(gap[len(gap) - 1 - n]):
        n += 1
    return gap[len(gap) - n :]


def blank_run_after(segs: list[Segment], index: int) -> list[str]:
    if index + 1 >= len(segs) or not isinstance(segs[index + 1], Gap):
        return []
    gap = segs[index + 1].lines
    n = 0
    while n < len(gap) and is_blank(gap[n]):
        n += 1
    return gap[:n]


def _trim_gap_end(segs: list[Segment], gap_index: int, count: int) -> None:
    gap = segs[gap_index]
    assert isinstance(gap, Gap)
    if count:
        del gap.lines[len(gap.lines) - count :]


def _trim_gap_start(segs: list[Segment], gap_index: int, count: int) -> None:
    gap = segs[gap_index]
    assert isinstance(gap, Gap)
    del gap.lines[:count]


def drop_empty_gaps(segs: list[Segment]) -> None:
    segs[:] = [s for s in segs if not (isinstance(s, Gap) and not s.lines)]
    merged: list[Segment] = []
    for s in segs:
        if isinstance(s, Gap) and merged and isinstance(merged[-1], Gap):
            merged[-1].lines.extend(s.lines)
        else:
            merged.append(s)
    segs[:] = merged


def remove_chunk(
    segs: list[Segment], chunk: Chunk, *, take_following: bool = False
) -> list[str]:
    """Remove `chunk` with its separator; return the separator (blank lines) it took.

    The separator is the blank run above the chunk, or the one below it when `take_following` is
    set or when nothing but the file start is above it.
    """
    index = next(i for i, s in enumerate(segs) if s is chunk)
    before = blank_run_before(segs, index)
    after = blank_run_after(segs, index)
    at_start = index == 0 or (index == 1 and len(before) == len(segs[0].lines))
    if take_following or at_start:
        if after:
            _trim_gap_start(segs, index + 1, len(after))
        taken = after
    else:
        if before:
            _trim_gap_end(segs, index - 1, len(before))
        taken = before
    del segs[index]
    drop_empty_gaps(segs)
    return list(taken)


def _ensure_newline(lines: list[str]) -> list[str]:
    if lines and not lines[-1].endswith(("\n", "\r")):
        return lines[:-1] + [lines[-1] + "\n"]
    return lines


def insert_before(
    segs: list[Segment], anchor: Chunk | None, items: list[tuple[list[str], Chunk]]
) -> None:
    """Insert `(separator, chunk)` pairs, in order, directly above `anchor` (None: at the end).

    Above the anchor the pairs go between the anchor's blank run and whatever precedes it, so the
    anchor keeps its separator below the inserted block.
    """
    new: list[Segment] = []
    for sep, chunk in items:
        if sep:
            new.append(Gap(list(sep)))
        chunk.lines = _ensure_newline(chunk.lines)
        new.append(chunk)
    if anchor is None:
        if segs:
            last = segs[-1]
            last.lines = _ensure_newline(last.lines)
        segs.extend(new)
    else:
        index = next(i for i, s in enumerate(segs) if s is anchor)
        run = blank_run_before(segs, index)
        if run:
            _trim_gap_end(segs, index - 1, len(run))
            new.append(Gap(list(run)))
        segs[index:index] = new
    drop_empty_gaps(segs)


def replace_lines(chunk: Chunk, first: int, last: int, text: str) -> None:
    """Replace source lines [first, last] (1-based, inclusive, in the chunk's original
    numbering)."""
    lo = first - chunk.first_line
    hi = last - chunk.first_line + 1
    chunk.lines[lo:hi] = split_lines(text)


def is_def(seg: Segment) -> bool:
    return (
        isinstance(seg, Chunk)
        and len(seg.stmts) == 1
        and isinstance(seg.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    )


def neighbours(segs: list[Segment], chunk: Chunk) -> list[Chunk]:
    """The chunks directly above and below `chunk`."""
    index = next(i for i, s in enumerate(segs) if s is chunk)
    out: list[Chunk] = []
    for rng in (range(index - 1, -1, -1), range(index + 1, len(segs))):
        for j in rng:
            seg = segs[j]
            if isinstance(seg, Chunk):
                out.append(seg)
                break
    return out


def _is_import(seg: Segment) -> bool:
    return isinstance(seg, Chunk) and all(
        isinstance(n, (ast.Import, ast.ImportFrom)) for n in seg.stmts
    )


def _is_docstring(seg: Segment) -> bool:
    node = seg.node if isinstance(seg, Chunk) else None
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _required_blanks(prev: Chunk, seg: Chunk | None, first: bool) -> int | None:
    """Blank lines black insists on between two top-level chunks, or None (the user's choice).
    `seg` None: a free-standing comment."""
    if is_def(prev) or (seg is not None and is_def(seg)):
        return 2
    if _is_import(prev) and (seg is None or not _is_import(seg)):
        return 1
    if first and _is_docstring(prev):
        return 1
    return None


def fix_blank_lines(segs: list[Segment], touched: list[Chunk]) -> None:
    """Black's blank lines between top-level chunks, only next to `touched` chunks: two around
    defs and classes, one after the imports and after the module docstring.

    In a separator holding free-standing comments only the blank lines above the first comment
    change (black counts those).
    """
    ids = {id(c) for c in touched}
    out: list[Segment] = []
    prev: Chunk | None = None
    prev_first = False
    pending: list[Gap] = []
    for seg in segs:
        if isinstance(seg, Gap):
            pending.append(seg)
            continue
        if prev is not None and (id(seg) in ids or id(prev) in ids):
            lines = [ln for g in pending for ln in g.lines]
            if all(is_blank(ln) for ln in lines):
                want = _required_blanks(prev, seg, prev_first)
                if want is not None and len(lines) != want:
                    pending = [Gap(["\n"] * want)] if want else []
            else:  # free-standing comments: black spaces them like a statement of their own
                lead = 0
                while is_blank(lines[lead]):
                    lead += 1
                tail = 0
                while is_blank(lines[len(lines) - 1 - tail]):
                    tail += 1
                middle = lines[lead : len(lines) - tail]
                want_lead = _required_blanks(prev, None, prev_first)
                want_tail = 2 if is_def(seg) else None
                new_lead = lead if want_lead is None else want_lead
                new_tail = tail if want_tail is None else want_tail
                if (new_lead, new_tail) != (lead, tail):
                    pending = [Gap(["\n"] * new_lead + middle + ["\n"] * new_tail)]
        out.extend(pending)
        pending = []
        out.append(seg)
        prev_first = prev is None
        prev = seg
    if prev is not None and id(prev) in ids and pending:  # the end of the file
        lines = [ln for g in pending for ln in g.lines]
        lead = 0
        while lead < len(lines) and is_blank(lines[lead]):
            lead += 1
        tail = 0
        while tail < len(lines) - lead and is_blank(lines[len(lines) - 1 - tail]):
            tail += 1
        middle = lines[lead : len(lines) - tail]
        if not middle:
            pending = []  # black drops blank lines at the end of a file
        else:
            want = _required_blanks(prev, None, prev_first)
            pending = [Gap(["\n"] * (lead if want is None else want) + middle)]
    out.extend(pending)
    segs[:] = out
