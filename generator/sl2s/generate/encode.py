"""The one way plan text reaches generated code: as a Python literal (repr), in black's quote style.

Plan-derived strings (log templates, flow/machine/step identifiers, the plan's path) are never
quoted by hand. In code they appear only as `lit(text)`; in comments only as `inner(text)`
(`repr(text)[1:-1]`, which escapes newlines, U+0085, U+2028, bidi controls and every other
non-printable character, so nothing can end the comment or hide in it).

`bracket()` lays out a call or signature the way black does: on one line when it fits in 88
columns, else the items on one line of their own, else one item per line with a magic trailing
comma. blackcheck.py verifies the result.
"""

from __future__ import annotations

from functools import lru_cache

from black.strings import normalize_string_quotes, str_width

LINE_LENGTH = 88
INDENT = "    "


@lru_cache(maxsize=65536)
def lit(text: str) -> str:
    """`text` as a Python string literal: `repr`, quotes normalised as black normalises them."""
    if not isinstance(text, str):
        raise TypeError(f"lit() takes text, not {type(text).__name__}")
    encoded = repr(text)
    if encoded[0] == "'" and '"' not in encoded and "\\'" not in encoded:
        # The common case (no quote characters inside): black prefers double quotes.
        return '"' + encoded[1:-1] + '"'
    if encoded[0] == '"':
        return encoded  # repr chose double quotes because the text holds a ' and no "
    return normalize_string_quotes(encoded)


def inner(text: str) -> str:
    """`text` for a comment: `repr(text)[1:-1]` (every control or invisible character escaped)."""
    return repr(text)[1:-1]


def width(line: str) -> int:
    """Columns a line takes as black counts them (East Asian wide characters count two)."""
    return len(line) if line.isascii() else str_width(line)


def fits(line: str) -> bool:
    return width(line) <= LINE_LENGTH


def bracket(
    head: str, items: list[str] | tuple[str, ...], tail: str = "", indent: str = ""
) -> str:
    """`head(items...)tail` at `indent`, laid out as black lays it out.

    One line if it fits; else the items on one indented line between the brackets, if that fits
    (black's right-hand split); else one item per line with a magic trailing comma. A `def` with
    a single parameter gets the trailing comma (black adds it there). Returns the text without
    the final newline. `items` are code already (encoded literals, identifiers, template text).
    """
    items = list(items)
    one = f"{indent}{head}({', '.join(items)}){tail}"
    if not items or fits(one):
        return one
    inside = indent + INDENT
    middle = f"{inside}{', '.join(items)}"
    if fits(middle) and not (len(items) == 1 and head.startswith("def ")):
        return f"{indent}{head}(\n{middle}\n{indent}){tail}"
    body = "".join(f"{inside}{item},\n" for item in items)
    return f"{indent}{head}(\n{body}{indent}){tail}"
