"""Read and validate a plan file (docs/plan-format.md) into a model.Plan.

`parse_plan(data, path)` is pure: bytes in, Plan out, or Sl2sError carrying every problem found,
each as `FILE:LINE: message` where LINE is the physical line (split on `\\n`) where the row starts.
`read_plan(path)` is the thin I/O shell around it.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sl2s.diagnostics import Diagnostic, Sl2sError
from sl2s.model import Flow, Placeholder, Plan, Step, TemplatePart
from sl2s.names import identifier_or_none, step_slug_or_none
from sl2s.template import TemplateError, parse

REQUIRED = ("request", "log", "machine")
OPTIONAL = ("id",)
KNOWN = REQUIRED + OPTIONAL
DELIMITERS = ("\t", ",", ";")  # also the order that breaks ties
DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon"}

# Embedding, override and isolate controls: they make text display in another order than it is
# stored ("Trojan Source"). Plain direction marks (U+200E/U+200F/U+061C) are harmless and allowed.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_BLANK = " \t\r"  # what a blank line may contain


@dataclass(frozen=True)
class _Record:
    line: int  # physical line where the row starts
    cells: tuple[str, ...]  # as read, unstripped


@dataclass(frozen=True)
class _Bad:
    line: int
    message: str


# ---------------------------------------------------------------------------------------------
# Bytes -> text


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode(data: bytes, path: str) -> str:
    """The file's text (BOM removed), or Sl2sError for empty, binary or non-UTF-8 files."""
    if not data:
        raise Sl2sError(Diagnostic(path, 0, "the file is empty"))
    for bom, name in _OTHER_BOMS:
        if data.startswith(bom):
            raise Sl2sError(
                Diagnostic(
                    path, 1, f"the file is {name} (byte-order mark); save it as UTF-8"
                )
            )
    nul = data.find(b"\x00")
    if nul >= 0:
        message = f"binary file: NUL byte at byte offset {nul}"
        raise Sl2sError(Diagnostic(path, _line_at(data, nul), message))
    skip = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        message = (
            f"not UTF-8: byte 0x{data[offset]:02X} at byte offset {offset} cannot be decoded;"
            " save the file as UTF-8"
        )
        raise Sl2sError(Diagnostic(path, _line_at(data, offset), message)) from None


_BIDI_SEARCH = re.compile("[" + "".join(sorted(BIDI_CONTROLS)) + "]")


def _bidi_problems(text: str) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    if not _BIDI_SEARCH.search(text):
        return problems
    for number, line in enumerate(text.split("\n"), start=1):
        for c in sorted(set(line) & BIDI_CONTROLS):
            problems.append(
                (
                    number,
                    f"bidirectional control character U+{ord(c):04X}"
                    f" ({unicodedata.name(c)}) can make the plan display differently from what"
                    " it says; remove it",
                )
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Text -> records (strict CSV: a cell is quoted when its first non-blank character is `"`; inside,
# `""` is a quote; after the closing quote only blanks may come before the delimiter or line end;
# a `"` inside an unquoted cell is an ordinary character)


_UNTERMINATED = "unterminated quote: the quoted cell opened here never closes"
_AFTER_QUOTE = (
    "unexpected text after the closing quote of a cell; inside a quoted cell"
    ' write a quote as ""'
)
_BARE_CR = (
    "carriage return (\\r) inside an unquoted cell; quote the cell if the \\r belongs to the"
    " text, or end lines with \\n or \\r\\n"
)


def _next_line(text: str, i: int) -> int:
    """Index just after the end of the physical line that contains index i."""
    eol = text.find("\n", i)
    return len(text) if eol < 0 else eol + 1


def _skip(text: str, i: int, blanks: str) -> int:
    while i < len(text) and text[i] in blanks:
        i += 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int] | None:
    """The content of a quoted cell whose text starts at i, and the index after its closing
    quote."""
    pieces: list[str] = []
    while True:
        quote = text.find('"', i)
        if quote < 0:
            return None
        pieces.append(text[i:quote])
        if not text.startswith('"', quote + 1):
            return "".join(pieces), quote + 1
        pieces.append('"')
        i = quote + 2


def _record(text: str, i: int, delimiter: str) -> tuple[tuple[str, ...] | str, int]:
    """The cells of the record that starts at i (or an error message), and where the next starts."""
    n = len(text)
    blanks = " \t".replace(delimiter, "")
    cells: list[str] = []
    while True:
        j = _skip(text, i, blanks)
        if j < n and text[j] == '"':
            closed = _quoted(text, j + 1)
            if closed is None:
                return _UNTERMINATED, n
            cell, k = closed
            cell = cell.replace(
                "\r\n", "\n"
            )  # the meaning must not depend on line endings
            k = _skip(text, k, blanks)
            if text.startswith("\r\n", k) or (k == n - 1 and text[k] == "\r"):
                k += 1
            if k < n and text[k] not in (delimiter, "\n"):
                return _AFTER_QUOTE, _next_line(text, k)
        else:
            k = j
            while k < n and text[k] != delimiter and text[k] != "\n":
                k += 1
            cell = text[i:k]
            if cell.endswith("\r") and (k == n or text[k] == "\n"):
                cell = cell[:-1]
            if "\r" in cell:
                return _BARE_CR, _next_line(text, k)
        cells.append(cell)
        if k < n and text[k] == delimiter:
            i = k + 1
        else:
            return tuple(cells), k + 1


def _plain_lines(text: str) -> list[str] | None:
    """The physical lines of `text` (without line ends) when the strict tokenizer would read each
    as `line.split(delimiter)`: no quote anywhere, and a carriage return only right before a line
    feed. Else None (then only _records_slow reads it)."""
    if '"' in text:
        return None
    if "\r" in text:
        if text.count("\r") != text.count("\r\n"):
            return None
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text ends with a line end: no line after it
    return lines


def _content_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(line number, line) of the lines that are neither blank nor `#` comments."""
    return [
        (number, physical)
        for number, physical in enumerate(lines, start=1)
        if physical.strip(_BLANK) and not physical.lstrip(" \t").startswith("#")
    ]


def _records_plain(lines: list[str], delimiter: str) -> list[_Record | _Bad]:
    """_records_slow for text without quotes or bare carriage returns (see _plain_lines)."""
    return [
        _Record(number, tuple(physical.split(delimiter)))
        for number, physical in _content_lines(lines)
    ]


def _records_slow(text: str, delimiter: str) -> list[_Record | _Bad]:
    """Every row of the text split by `delimiter`, or what is wrong with it, skipping blank lines
    and comments; the strict tokenizer, character by character (any text). After an unterminated
    quote nothing more can be read."""
    out: list[_Record | _Bad] = []
    i, line = 0, 1
    while i < len(text):
        end = _next_line(text, i)
        physical = text[i:end].rstrip("\n")
        if not physical.strip(_BLANK) or physical.lstrip(" \t").startswith("#"):
            i, line = end, line + 1
            continue
        cells, after = _record(text, i, delimiter)
        out.append(
            _Bad(line, cells) if isinstance(cells, str) else _Record(line, cells)
        )
        line += text.count("\n", i, after)
        i = after
    return out


def _column_name(cell: str) -> str:
    return unicodedata.normalize("NFKC", cell).strip().casefold()


def _header_score(records: list[_Record | _Bad]) -> int:
    """How many known column names the first row has (0 unless it looks like a header)."""
    if not records or not isinstance(records[0], _Record):
        return 0
    cells = records[0].cells
    known = sum(1 for c in cells if _column_name(c) in KNOWN)
    return known if len(cells) >= 2 and known >= 2 else 0


def _threes(records: list[_Record | _Bad]) -> int:
    return sum(1 for r in records if isinstance(r, _Record) and len(r.cells) == 3)


def _choose(text: str) -> tuple[str, list[_Record | _Bad], bool]:
    """(delimiter, records, has_header) per the rules in docs/plan-format.md."""
    lines = _plain_lines(text)
    if lines is not None:
        return _choose_plain(text, lines)
    candidates = [(d, _records_slow(text, d)) for d in DELIMITERS]

    def best(
        score: Callable[[tuple[str, list[_Record | _Bad]]], int],
    ) -> tuple[str, list[_Record | _Bad]]:
        # the highest score; ties go to the earlier delimiter (tab, comma, semicolon)
        return max(enumerate(candidates), key=lambda ic: (score(ic[1]), -ic[0]))[1]

    delimiter, records = best(lambda c: _header_score(c[1]))
    if _header_score(records):
        return delimiter, records, True
    delimiter, records = best(lambda c: _threes(c[1]))
    if not _threes(records):  # no delimiter fits any row: the most frequent one
        delimiter, records = best(lambda c: text.count(c[0]))
    return delimiter, records, False


def _choose_plain(
    text: str, lines: list[str]
) -> tuple[str, list[_Record | _Bad], bool]:
    """_choose for text that _plain_lines splits: the same choice, scoring each delimiter on the
    lines themselves and building the records of the chosen delimiter only."""
    content = _content_lines(lines)

    def best(score: Callable[[str], int]) -> str:
        # the highest score; ties go to the earlier delimiter (tab, comma, semicolon)
        return max(enumerate(DELIMITERS), key=lambda id_: (score(id_[1]), -id_[0]))[1]

    def header_score(delimiter: str) -> int:
        if not content:
            return 0
        return _header_score(
            [_Record(content[0][0], tuple(content[0][1].split(delimiter)))]
        )

    def threes(delimiter: str) -> int:
        return sum(1 for _, physical in content if physical.count(delimiter) == 2)

    delimiter = best(header_score)
    has_header = bool(header_score(delimiter))
    if not has_header:
        delimiter = best(threes)
        if not threes(delimiter):  # no delimiter fits any row: the most frequent one
            delimiter = best(text.count)
    return delimiter, _records_plain(lines, delimiter), has_header


# ---------------------------------------------------------------------------------------------
# Records -> rows -> Plan


@dataclass(frozen=True)
class _Row:
    line: int
    request: str
    log: str
    machine: str
    id: str


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _columns(header: _Record, diags: list[tuple[int, str]]) -> dict[str, int] | None:
    columns: dict[str, int] = {}
    for index, raw in enumerate(header.cells):
        name = _column_name(raw)
        if not name:
            diags.append((header.line, f"column {index + 1} of the header has no name"))
        elif name not in KNOWN:
            diags.append(
                (
                    header.line,
                    f"unknown column {raw.strip()!r} (the columns are request, log, machine"
                    " and optionally id)",
                )
            )
        elif name in columns:
            diags.append((header.line, f"column {name!r} appears twice"))
        else:
            columns[name] = index
    missing = [c for c in REQUIRED if c not in columns]
    for name in missing:
        diags.append((header.line, f"missing column {name!r}"))
    return None if missing else columns


def _row(record: _Record, columns: dict[str, int]) -> _Row:
    cells = record.cells
    id_column = columns.get("id")
    return _Row(
        record.line,
        cells[columns["request"]].strip(),
        cells[columns["log"]].strip(),
        cells[columns["machine"]].strip(),
        "" if id_column is None else cells[id_column].strip(),
    )


def _rows(text: str, diags: list[tuple[int, str]]) -> tuple[list[_Row], int | None]:
    """Rows of the plan and the header's line (None without a header)."""
    delimiter, records, has_header = _choose(text)
    header_line = None
    width = 3
    columns: dict[str, int] | None = {"request": 0, "log": 1, "machine": 2}
    names = ", ".join(REQUIRED)
    if has_header:
        header, records = records[0], records[1:]
        assert isinstance(header, _Record)  # _header_score only accepts a _Record
        header_line = header.line
        width = len(header.cells)
        names = ", ".join(c.strip() for c in header.cells)
        columns = _columns(header, diags)
    rows: list[_Row] = []
    for record in records:
        if isinstance(record, _Bad):
            diags.append((record.line, record.message))
        elif len(record.cells) != width:
            diags.append(
                (
                    record.line,
                    f"row has {_plural(len(record.cells), 'cell')}, expected {width} ({names})"
                    f" separated by {DELIMITER_NAMES[delimiter]}s; quote a cell that contains"
                    " the separator",
                )
            )
        elif columns is not None:
            row = _row(record, columns)
            empty = [c for c in REQUIRED if not getattr(row, c)]
            for name in empty:
                diags.append((record.line, f"empty {name} cell"))
            if not empty:
                rows.append(row)
    return rows, header_line


class _Spellings:
    """Identifier -> (first spelling, its line); reports a second spelling of one identifier."""

    def __init__(self, kind: str, diags: list[tuple[int, str]]) -> None:
        self.kind = kind
        self.diags = diags
        self.seen: dict[str, tuple[str, int, str]] = {}
        self.reported: set[str] = set()
        self.names: dict[str, str] = (
            {}
        )  # spelling -> identifier, for spellings added before

    def add(self, spelling: str, line: int, shown: str | None = None) -> str | None:
        """The identifier of `spelling` (shown in messages as `shown`), or None when unusable."""
        if shown is None:
            name = self.names.get(spelling)
            if name is not None:
                # seen before: the identifier is known and any clash was reported the first time
                return name
        shown = spelling if shown is None else shown
        name = identifier_or_none(spelling)
        if name is None:
            self.diags.append(
                (
                    line,
                    f"{self.kind} {shown!r} has no letters or digits usable in an identifier",
                )
            )
            return None
        first_spelling, first_line, first_shown = self.seen.setdefault(
            name, (spelling, line, shown)
        )
        if first_spelling != spelling and spelling not in self.reported:
            self.reported.add(spelling)
            self.diags.append(
                (
                    line,
                    f"{self.kind} {shown!r} and {first_shown!r} (line {first_line}) are"
                    f" the same identifier {name!r}; spell them the same way, or rename one",
                )
            )
        self.names[spelling] = name
        return name


def _step_id(row: _Row, diags: list[tuple[int, str]]) -> str | None:
    if row.id:
        step_id = identifier_or_none(row.id)
        if step_id is None:
            message = f"id {row.id!r} has no letters or digits usable in an identifier"
            diags.append((row.line, message))
        return step_id
    step_id = step_slug_or_none(row.log)
    if step_id is None:
        message = "the log text gives no usable step id (no letters or digits); add an 'id' column"
        diags.append((row.line, message))
    return step_id


def _parts(row: _Row, diags: list[tuple[int, str]]) -> tuple[TemplatePart, ...] | None:
    try:
        return parse(row.log)
    except TemplateError as error:
        diags.append((row.line, str(error)))
        return None


def _steps(
    rows: list[_Row], diags: list[tuple[int, str]]
) -> tuple[dict[str, list[Step]], dict[str, str], dict[str, str]]:
    """Steps by flow, and the first spelling of each flow and machine."""
    flows = _Spellings("request", diags)
    machines = _Spellings("machine", diags)
    machine_spellings: dict[str, str] = {}
    flow_spellings: dict[str, str] = {}
    steps: dict[str, list[Step]] = {}
    for row in rows:
        flow = flows.add(row.request, row.line)
        machine = machines.add(row.machine, row.line)
        parts = _parts(row, diags)
        step_id = _step_id(row, diags)
        if flow is None or machine is None or parts is None or step_id is None:
            continue
        machine_spellings.setdefault(machine, row.machine)
        flow_spellings.setdefault(flow, row.request)
        steps.setdefault(flow, []).append(
            Step(
                flow=flow,
                id=step_id,
                template=row.log,
                parts=parts,
                machine=machine,
                line=row.line,
                explicit_id=bool(row.id),
            )
        )
    return steps, flow_spellings, machine_spellings


def _check_flow(
    flow: str, spelling: str, steps: list[Step], diags: list[tuple[int, str]]
) -> None:
    ids: dict[str, Step] = {}
    for step in steps:
        first = ids.setdefault(step.id, step)
        if first is not step:
            if step.explicit_id:
                hint = "ids must be unique within a request"
            else:
                hint = "give one of the rows its own value in an 'id' column"
            diags.append(
                (
                    step.line,
                    f"step id {step.id!r} is already used in request {spelling!r} on line"
                    f" {first.line}; {hint}",
                )
            )
    fields = _Spellings("field", diags)
    secret_at: dict[str, tuple[Placeholder, int]] = {}
    for step in steps:
        for part in step.parts:
            if isinstance(part, Placeholder):
                fields.add(part.spelling[1:], step.line, shown=part.spelling)
                if part.secret:
                    secret_at.setdefault(part.name, (part, step.line))
    for step in steps:
        shown: set[str] = set()
        for part in step.parts:
            if (
                isinstance(part, Placeholder)
                and not part.secret
                and part.name in secret_at
                and part.name not in shown
            ):
                shown.add(part.name)
                secret, line = secret_at[part.name]
                diags.append(
                    (
                        step.line,
                        f"field {part.spelling!r} would show {part.name!r} in clear, but it is a"
                        f" secret in request {spelling!r} ({secret.spelling!r}, line {line});"
                        f" write '#{part.spelling[1:]}'",
                    )
                )


def parse_plan(data: bytes, path: str) -> Plan:
    """The plan in `data` (read from `path`, which is only used in messages and Plan.path)."""
    text = _decode(data, path)
    diags: list[tuple[int, str]] = _bidi_problems(text)
    rows, header_line = _rows(text, diags)
    if not rows and not diags:
        if header_line is None:
            diags.append((0, "no steps: the file has only blank lines and comments"))
        else:
            diags.append(
                (
                    header_line,
                    "no steps: the file has a header row but no rows after it",
                )
            )
    steps, flow_spellings, machine_spellings = _steps(rows, diags)
    for flow, flow_steps in steps.items():
        _check_flow(flow, flow_spellings[flow], flow_steps, diags)
    if diags:
        raise Sl2sError(
            sorted({Diagnostic(path, line, message) for line, message in diags})
        )
    return Plan(
        path=path,
        flows=tuple(
            Flow(name=flow, spelling=flow_spellings[flow], steps=tuple(flow_steps))
            for flow, flow_steps in steps.items()
        ),
        digest=hashlib.sha256(data).hexdigest(),
        machine_spellings=tuple(machine_spellings.items()),
    )


def read_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and validate the plan file at `path`; Sl2sError (every problem) when it is not valid."""
    shown = os.fspath(path)
    try:
        data = Path(shown).read_bytes()
    except FileNotFoundError:
        raise Sl2sError(Diagnostic(shown, 0, "no such file")) from None
    except IsADirectoryError:
        raise Sl2sError(
            Diagnostic(shown, 0, "is a directory, not a plan file")
        ) from None
    except OSError as error:
        raise Sl2sError(
            Diagnostic(shown, 0, f"cannot read the file: {error.strerror}")
        ) from None
    return parse_plan(data, shown)
