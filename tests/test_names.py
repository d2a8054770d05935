"""sl2s.names: identifier normalisation and step slugs."""

from __future__ import annotations

import builtins
import hashlib
import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sl2s.names import (
    BUILTINS,
    IdentifierError,
    identifier,
    identifier_or_none,
    step_slug,
    step_slug_or_none,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login", "login"),
        ("Login", "login"),
        ("userName", "user_name"),
        ("UserName", "user_name"),
        ("HTTPServer", "http_server"),
        ("getHTTPResponse", "get_http_response"),
        ("web-1", "web_1"),
        ("web_1", "web_1"),
        ("Web", "web"),
        ("web 1", "web_1"),
        ("a/../x", "a_x"),
        ("  spaced  out  ", "spaced_out"),
        ("__init__", "init"),
        ("Ünïcödé", "unicode"),
        ("Straße", "strasse"),
        ("Ærø", "aero"),
        ("ｗｅｂ", "web"),  # fullwidth letters: NFKC twin of `web`
        ("ﬁle", "file"),  # ligature
        ("we\u200bb", "web"),  # zero-width space is dropped
        ("web\u202e", "web"),  # bidi override is dropped
        ("1st", "_1st"),
        ("１st", "_1st"),
        ("2fa-check", "_2fa_check"),
        ("a\u2028b", "a_b"),
        ("a\x85b", "a_b"),
        ("{{ x }}", "x"),
        ("%s{0}", "s_0"),
    ],
)
def test_identifier(text: str, expected: str) -> None:
    assert identifier(text) == expected


@pytest.mark.parametrize(
    "word",
    sorted(w for w in set(keyword.kwlist) | {"match", "case", "type"} if w.islower()),
)
def test_keywords_and_soft_keywords_get_a_suffix(word: str) -> None:
    assert identifier(word) == word + "_"


def test_capitalised_keywords_are_plain_names_once_lower_cased() -> None:
    assert [identifier(w) for w in ("True", "False", "None", "CLASS")] == [
        "true",
        "false",
        "none",
        "class_",
    ]


@pytest.mark.parametrize(
    "word", ["id", "list", "print", "input", "open", "type", "str", "exit"]
)
def test_builtins_get_a_suffix(word: str) -> None:
    assert identifier(word) == word + "_"


@pytest.mark.parametrize("word", ["con", "NUL", "Aux", "com1", "lpt9"])
def test_windows_device_names_get_a_suffix(word: str) -> None:
    assert identifier(word) == word.lower() + "_"


def test_frozen_builtins_cover_the_running_interpreter() -> None:
    current = {n for n in dir(builtins) if n == n.lower() and not n.startswith("_")}
    assert current <= BUILTINS


@pytest.mark.parametrize(
    "text", ["", "   ", "..", "/", "日本", "_", "__", "#", "\u200b", "🙂"]
)
def test_nothing_usable_is_none_or_error(text: str) -> None:
    assert identifier_or_none(text) is None
    with pytest.raises(IdentifierError):
        identifier(text)


def test_long_names_are_cut_with_a_hash_of_the_full_name() -> None:
    name = "a" * 300
    expected = "a" * 51 + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    assert identifier(name) == expected
    assert len(identifier(name)) == 60
    assert identifier("b" * 60) == "b" * 60
    assert identifier("a" * 299 + "b") != identifier("a" * 300)


def test_step_slug_uses_placeholder_names() -> None:
    assert (
        step_slug("Received request to login as :username")
        == "received_request_to_login_as_username"
    )
    assert (
        step_slug("Hello :userName and #passWord!") == "hello_user_name_and_pass_word"
    )
    assert step_slug("Time is 10:30") == "time_is_10_30"
    assert step_slug_or_none("!!! ...") is None
    with pytest.raises(IdentifierError):
        step_slug("::: ###")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_identifiers_are_safe_python_names_and_stable(text: str) -> None:
    name = identifier_or_none(text)
    if name is None:
        return
    assert name.isidentifier() and name.isascii()
    assert not keyword.iskeyword(name) and not keyword.issoftkeyword(name)
    assert name not in dir(builtins)
    assert len(name) <= 60
    assert identifier(name) == name  # a normalised identifier is its own normal form
