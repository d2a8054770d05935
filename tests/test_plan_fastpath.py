"""The fast paths of the plan reader, the template parser and sl2s.show give exactly what the
general (slow) code gives: property tests against the character-by-character versions.
"""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from sl2s import plan as planmod
from sl2s import show
from sl2s.diagnostics import Sl2sError
from sl2s.model import Placeholder
from sl2s.names import identifier_or_none
from sl2s.template import TemplateError, parse

# Text made of what matters to the tokenizer: delimiters, blanks, line ends, comment marks.
PLAN_CHARS = list("abc, ;\t\t\n\n\n\r#-x:é\u200b\u202e")
plan_text = st.text(alphabet=st.sampled_from(PLAN_CHARS), max_size=60)
crlf_text = plan_text.map(lambda t: t.replace("\r", "").replace("\n", "\r\n"))


@settings(max_examples=1000, deadline=None)
@given(st.one_of(plan_text, crlf_text), st.sampled_from(planmod.DELIMITERS))
def test_plain_records_equal_the_strict_tokenizer(text, delimiter):
    lines = planmod._plain_lines(text)
    if lines is None:
        assert '"' in text or text.count("\r") != text.count("\r\n")
        return
    assert planmod._records_plain(lines, delimiter) == planmod._records_slow(
        text, delimiter
    )


def test_quotes_and_bare_carriage_returns_take_the_slow_path():
    assert planmod._plain_lines('a,"b",c\n') is None
    assert planmod._plain_lines("a,b\rc\n") is None
    assert planmod._plain_lines("a,b,c\r") is None
    assert planmod._plain_lines("a,b,c\r\n") == ["a,b,c"]


def _outcome(data: bytes):
    try:
        return ("plan", planmod.parse_plan(data, "p.csv"))
    except Sl2sError as error:
        return ("error", str(error))


row_pieces = st.sampled_from(list("ab :#_1é\t;,") + ["Log", "id", "x", "#", "request"])


def cell(size: int):
    return st.lists(row_pieces, max_size=size).map("".join)


rows = st.lists(st.tuples(cell(4), cell(8), cell(4)), max_size=6)


@settings(max_examples=500, deadline=None)
@given(
    rows,
    st.sampled_from([",", ";", "\t"]),
    st.booleans(),
    st.sampled_from(["\n", "\r\n"]),
)
def test_parse_plan_same_with_and_without_fast_path(rows, delimiter, header, eol):
    lines = (["request,log,machine"] if header else []) + [
        delimiter.join(r) for r in rows
    ]
    data = eol.join(lines).encode("utf-8")
    fast = _outcome(data)
    original = planmod._plain_lines
    planmod._plain_lines = lambda text: None
    try:
        slow = _outcome(data)
    finally:
        planmod._plain_lines = original
    assert fast == slow


# --- template.parse against the original character loop ------------------------------------------

_NAME = re.compile(r"[^\W\d]\w*")
_WORD = re.compile(r"\w")


def _reference_parse(text: str):
    def at_position(i: int) -> bool:
        return i == 0 or (text[i - 1] not in ":#" and not _WORD.match(text[i - 1]))

    parts, literal, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if c in ":#" and at_position(i):
            j = i
            while j < n and text[j] == c:
                j += 1
            name = _NAME.match(text, j)
            if name is None:
                literal.append(text[i:j])
                i = j
                continue
            if j - i > 1:
                literal.append(text[i + 1 : name.end()])
                i = name.end()
                continue
            normalised = identifier_or_none(name.group())
            if normalised is None:
                raise TemplateError(text[i : name.end()])
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Placeholder(normalised, c == "#", text[i : name.end()]))
            i = name.end()
            continue
        literal.append(c)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _result(fn, text):
    try:
        return ("ok", fn(text))
    except TemplateError as error:
        return ("error", str(error))


template_text = st.one_of(
    st.text(alphabet=st.sampled_from(list(":#ab_1 é日²xY-/\u200b")), max_size=20),
    st.text(max_size=15),
)


@settings(max_examples=1000, deadline=None)
@given(template_text)
def test_template_parse_equals_the_character_loop(text):
    assert _result(parse.__wrapped__, text) == _result(_reference_parse, text)


# --- show: visible / mermaid_text / markdown_code --------------------------------------------------


def _reference_visible(text: str) -> str:
    """Every character on its own: invisible categories escaped, except the format characters
    kept as written (joiners inside emoji and words, flag tags, a script's own format letters such
    as Duployan's U+1BCA0; show._kept)."""
    out = []
    for index, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category in show._INVISIBLE and not (
            category == "Cf" and show._kept(text, index)
        ):
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


def _reference_mermaid(text: str) -> str:
    out = []
    for ch in _reference_visible(text):
        if ch in show._MERMAID_SAFE or ord(ch) > 0x7F:
            out.append(ch)
        else:
            out.append(f"#{ord(ch)};")
    return "".join(out).strip() or "#160;"


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=20))
def test_show_escapes_equal_the_character_loops(text):
    assert show.visible(text) == _reference_visible(text)
    assert show.mermaid_text(text) == _reference_mermaid(text)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(plan_text, crlf_text))
def test_choosing_the_delimiter_on_plain_lines_equals_the_general_choice(text):
    lines = planmod._plain_lines(text)
    if lines is None:
        return
    original = planmod._plain_lines
    planmod._plain_lines = lambda text: None
    try:
        slow = planmod._choose(text)
    finally:
        planmod._plain_lines = original
    assert planmod._choose_plain(text, lines) == slow


def test_a_scripts_own_format_letter_is_kept_and_a_hiding_one_escaped():
    # found by the property above: Duployan's U+1BCA0 (category Cf) is part of how that script
    # is written; a zero-width space hides
    assert show.visible("a\U0001bca0b") == "a\U0001bca0b"
    assert show.visible("a\u200bb") == "a\\u200bb"
