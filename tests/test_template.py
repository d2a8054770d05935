"""sl2s.template: the placeholder grammar."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sl2s.model import Placeholder
from sl2s.names import identifier_or_none
from sl2s.template import TemplateError, parse, render, show_value, unparse


def field(name: str, spelling: str | None = None) -> Placeholder:
    return Placeholder(name=name, secret=False, spelling=spelling or ":" + name)


def secret(name: str, spelling: str | None = None) -> Placeholder:
    return Placeholder(name=name, secret=True, spelling=spelling or "#" + name)


def test_fields_and_secrets() -> None:
    assert parse("User attempted login as :username and #password") == (
        "User attempted login as ",
        field("username"),
        " and ",
        secret("password"),
    )


def test_names_are_normalised_and_keep_their_spelling() -> None:
    assert parse(":userName!") == (field("user_name", ":userName"), "!")
    assert parse("(#Class)") == ("(", secret("class_", "#Class"), ")")


@pytest.mark.parametrize(
    "text",
    [
        "http://x",
        "10:30",
        "a:b",
        "C#",
        "#1",
        ":1st",
        "key::value",
        "ratio 1:2",
        "a#b",
        "::",
        "#",
        ":",
        ": x",
        ":-)",
        "{{ x }} {% if %} {0} %s %(x)s",
        "'''\"\"\" \\",
    ],
)
def test_literal_text(text: str) -> None:
    assert parse(text) == (text,)
    assert render(text, {}) == text


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("::name", ":name"),
        ("##name", "#name"),
        (":::name", "::name"),
        ("say ::hi and ##tag", "say :hi and #tag"),
        ("(::x)", "(:x)"),
    ],
)
def test_doubled_sigils_are_escapes(text: str, literal: str) -> None:
    assert parse(text) == (literal,)


def test_placeholder_positions() -> None:
    assert parse("a :x, :y.") == ("a ", field("x"), ", ", field("y"), ".")
    assert parse(":x:y") == (field("x"), ":y")
    assert parse("{:x}") == ("{", field("x"), "}")
    assert parse(":x's") == (field("x"), "'s")
    assert parse("\u2028:x\x85") == ("\u2028", field("x"), "\x85")


def test_unicode_names() -> None:
    assert parse(":ｕｓｅｒ") == (field("user", ":ｕｓｅｒ"),)
    assert parse(":éclair") == (field("eclair", ":éclair"),)
    with pytest.raises(TemplateError, match="':日本' has no letters or digits"):
        parse("x :日本")


def test_render_fields_secrets_and_missing() -> None:
    text = "Login :username with #password (:attempt)"
    values = {"username": "ann", "password": "hunter2"}
    assert render(text, values) == "Login ann with *** (<unset:attempt>)"
    assert (
        render(text, values, redact=False) == "Login ann with hunter2 (<unset:attempt>)"
    )
    assert render(text, values, unset="?{name}?") == "Login ann with *** (?attempt?)"
    assert render(parse(text), {**values, "attempt": 3}) == "Login ann with *** (3)"


def test_missing_secret_is_shown_unset_not_redacted() -> None:
    assert render("#pin", {}) == "<unset:pin>"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("text", "text"),
        ("{0} %s", "{0} %s"),
        (3, "3"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        (["a", 1], '["a", 1]'),
        (("a", 1), '["a", 1]'),
        ({"b": 1, "a": "é"}, '{"a": "é", "b": 1}'),
    ],
)
def test_values_render_like_their_json_round_trip(value: object, shown: str) -> None:
    assert show_value(value) == shown
    assert render(":v", {"v": value}) == shown


def test_field_values_are_not_templates() -> None:
    assert render(":a", {"a": ":b #c {x}"}) == ":b #c {x}"


def test_unparse_escapes_and_rejects_ambiguity() -> None:
    assert unparse((":name ", field("x"), " ##y")) == "::name :x ###y"
    with pytest.raises(ValueError):
        unparse((field("x"), "y"))
    with pytest.raises(ValueError):
        unparse(("a", field("x")))


NAMES = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True).filter(
    lambda n: identifier_or_none(n) == n
)
PLACEHOLDERS = st.builds(
    lambda name, is_secret: Placeholder(
        name, is_secret, ("#" if is_secret else ":") + name
    ),
    NAMES,
    st.booleans(),
)
LITERALS = st.text(
    alphabet=st.sampled_from(list("ab1 :#_-.'\"{}%\\\r\n\x85\u2028é")), min_size=1
)


@st.composite
def template_parts(draw):
    parts = draw(st.lists(st.one_of(LITERALS, PLACEHOLDERS), max_size=8))
    fixed: list = []
    for part in parts:
        if isinstance(part, Placeholder):
            if fixed and isinstance(fixed[-1], Placeholder):
                fixed.append(" ")
            elif fixed and (fixed[-1][-1].isalnum() or fixed[-1][-1] in ":#_é"):
                fixed[-1] += " "
        elif fixed and isinstance(fixed[-1], Placeholder) and part[0] in "ab1_é":
            part = " " + part
        if isinstance(part, str) and fixed and isinstance(fixed[-1], str):
            fixed[-1] += part
        else:
            fixed.append(part)
    return tuple(fixed)


@settings(max_examples=300, deadline=None)
@given(template_parts(), st.data())
def test_round_trip(parts, data) -> None:
    text = unparse(parts)
    parsed = parse(text)
    assert [
        (p.name, p.secret) if isinstance(p, Placeholder) else p for p in parsed
    ] == [(p.name, p.secret) if isinstance(p, Placeholder) else p for p in parts]
    names = {p.name for p in parts if isinstance(p, Placeholder)}
    values = {n: data.draw(st.text(max_size=5)) for n in names}
    expected = "".join(
        p if isinstance(p, str) else ("***" if p.secret else values[p.name])
        for p in parts
    )
    assert render(text, values) == expected


def _shape(parts):
    return [(p.name, p.secret) if isinstance(p, Placeholder) else p for p in parts]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_of_any_text_unparses_to_an_equivalent_template(text: str) -> None:
    try:
        parts = parse(text)
    except TemplateError:
        return
    for p in parts:
        if isinstance(p, Placeholder):
            assert p.spelling in text and p.name.isidentifier()
    assert _shape(parse(unparse(parts))) == _shape(parts)
