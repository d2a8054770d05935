"""sl2s.plan against hostile input: odd quotes, injection syntax, invisible and look-alike
characters, reserved and path-like names, huge names, and arbitrary bytes."""

from __future__ import annotations

import keyword
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sl2s.diagnostics import Sl2sError
from sl2s.model import Placeholder
from sl2s.names import identifier
from sl2s.plan import parse_plan, read_plan
from sl2s.template import render


def plan(text: str):
    return parse_plan(text.encode("utf-8"), "plan.csv")


def errors(text: str) -> list[str]:
    with pytest.raises(Sl2sError) as caught:
        parse_plan(text.encode("utf-8"), "plan.csv")
    return [str(d) for d in caught.value.diagnostics]


@pytest.mark.parametrize(
    "log",
    [
        "It's ok",
        'He said "hi"',
        "“curly” ‘quotes’ «guillemets» „low“ `backticks`",
        "'''triple single'''",
        'Triple """double""" quotes',
        "ends with a backslash \\",
        "\\n is not a newline, \\x00 is not NUL",
        "Jinja {{ user }} {% if x %}{% endif %} {# c #}",
        "format {0} {name} {{}} %s %(name)s %d",
        "f-string {user!r:>10}",
        "${HOME} $(rm -rf /) `id`",
        "<script>alert(1)</script>",
        "NEL\x85inside and LS\u2028and PS\u2029here",
        "zero\u200bwidth\u200djoiner\ufeffbom",
        "right\u200fto left mark",
    ],
)
def test_log_text_is_kept_verbatim_in_every_delimiter(log: str) -> None:
    quoted = '"' + log.replace('"', '""') + '"'
    for delimiter in "\t,;":
        cells = (
            [quoted] if delimiter in log else [quoted, log]
        )  # unquoted too when possible
        for cell in cells:
            text = delimiter.join(["request", "log", "machine"]) + "\n"
            text += delimiter.join(["login", cell, "client"]) + "\n"
            text += delimiter.join(["login", "next", "client"]) + "\n"
            p = plan(text)
            assert [s.template for s in p.steps] == [log, "next"]
            assert [s.line for s in p.steps] == [2, 3]
            assert render(p.steps[0].parts, {}) == log


def test_unquoted_quotes_inside_a_cell_are_text() -> None:
    p = plan("login,He said \"hi\" and 'bye',client\n")
    assert p.steps[0].template == "He said \"hi\" and 'bye'"


def test_separator_and_line_characters_other_than_newline_do_not_split_rows() -> None:
    p = plan("login,a\x85b\u2028c\u2029d\x0be\x0cf\x1cg,client\nlogin,next,client\n")
    assert [s.line for s in p.steps] == [1, 2]
    assert p.steps[0].template == "a\x85b\u2028c\u2029d\x0be\x0cf\x1cg"


def test_placeholder_after_a_line_separator_is_a_placeholder() -> None:
    p = plan("login,x\u2028:name,client\n")
    assert p.steps[0].fields == ("name",)


@pytest.mark.parametrize("char", ["\u202e", "\u202a", "\u2066", "\u2069"])
def test_bidi_controls_are_errors(char: str) -> None:
    import unicodedata

    name = unicodedata.name(char)
    assert errors(f"login,ok,client\nlogin,admin{char}txt.exe,client\n") == [
        f"plan.csv:2: bidirectional control character U+{ord(char):04X} ({name}) can make the"
        " plan display differently from what it says; remove it"
    ]


def test_bidi_control_in_a_comment_is_an_error_too() -> None:
    assert errors("# \u202e\nlogin,ok,client\n") == [
        "plan.csv:1: bidirectional control character U+202E (RIGHT-TO-LEFT OVERRIDE) can make"
        " the plan display differently from what it says; remove it"
    ]


def test_zero_width_characters_in_names_are_dropped_so_twins_collide() -> None:
    # the message shows the invisible character escaped
    assert errors("login,a,web\nlogin,b,w\u200beb\n") == [
        "plan.csv:2: machine 'w\\u200beb' and 'web' (line 1) are the same identifier 'web';"
        " spell them the same way, or rename one"
    ]


def test_fullwidth_twins_collide() -> None:
    assert errors("login,a,web\nlogin,b,ｗｅｂ\n") == [
        "plan.csv:2: machine 'ｗｅｂ' and 'web' (line 1) are the same identifier 'web'; spell"
        " them the same way, or rename one"
    ]


def test_fullwidth_field_twins_collide() -> None:
    assert errors("login,a :user,m\nlogin,b :ｕｓｅｒ,m\n") == [
        "plan.csv:2: field ':ｕｓｅｒ' and ':user' (line 1) are the same identifier 'user';"
        " spell them the same way, or rename one"
    ]


def test_keywords_and_builtins_as_names() -> None:
    p = plan("class,Got :id and :type and #lambda,import\nclass,x :print,None\n")
    assert [f.name for f in p.flows] == ["class_"]
    assert p.machines == ("import_", "none")
    assert p.steps[0].fields == ("id_", "type_") and p.steps[0].secrets == ("lambda_",)
    assert p.steps[0].id == "got_id_and_type_and_lambda"
    assert p.steps[1].fields == ("print_",)
    for name in (*p.machines, *(f.name for f in p.flows), *p.flows[0].fields):
        assert name.isidentifier() and not keyword.iskeyword(name)


def test_long_names() -> None:
    long_a = "a" * 299 + "x"
    long_b = "a" * 299 + "y"
    text = f"{long_a},Hi :{long_a},{long_a}\n{long_b},Hi,{long_b}\n"
    p = plan(text)
    assert [len(f.name) for f in p.flows] == [60, 60]
    assert p.flows[0].name != p.flows[1].name
    assert p.machines == (identifier(long_a), identifier(long_b))
    assert p.steps[0].fields == (identifier(long_a),)
    assert len(p.steps[0].id) == 60


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("a/../x", "a_x"),
        ("../../etc/passwd", "etc_passwd"),
        ("C:\\Windows", "c_windows"),
        (".hidden", "hidden"),
        ("con", "con_"),
        ("nul.txt", "nul_txt"),
        ("__pycache__", "pycache"),
    ],
)
def test_path_like_machine_names_become_plain_names(
    machine: str, expected: str
) -> None:
    assert plan(f'login,Hi,"{machine}"\n').machines == (expected,)


@pytest.mark.parametrize("machine", ["..", ".", "/", "\\", "-", "日本"])
def test_machine_names_without_letters_are_errors(machine: str) -> None:
    assert errors(f"login,Hi,{machine}\n") == [
        f"plan.csv:1: machine {machine!r} has no letters or digits usable in an identifier"
    ]


def test_web_web1_variants() -> None:
    assert errors("f,a,Web\nf,b,web\nf,c,web-1\nf,d,web_1\nf,e,WEB 1\n") == [
        "plan.csv:2: machine 'web' and 'Web' (line 1) are the same identifier 'web'; spell"
        " them the same way, or rename one",
        "plan.csv:4: machine 'web_1' and 'web-1' (line 3) are the same identifier 'web_1';"
        " spell them the same way, or rename one",
        "plan.csv:5: machine 'WEB 1' and 'web-1' (line 3) are the same identifier 'web_1';"
        " spell them the same way, or rename one",
    ]


def test_injection_syntax_in_names_is_neutralised() -> None:
    p = plan('"{{ flow }}","Hi",\'%s{0}\'\n')
    assert [f.name for f in p.flows] == ["flow"]
    assert p.machines == ("s_0",)


def test_placeholder_spelling_is_kept_for_the_decorator() -> None:
    step = plan("login,Hi :userName,m\n").steps[0]
    assert step.template == "Hi :userName"
    assert step.parts[1] == Placeholder("user_name", False, ":userName")


def test_crlf_and_lone_cr_at_end_of_file() -> None:
    assert [s.template for s in plan("login,Hi,m\r\nlogin,Bye,m\r").steps] == [
        "Hi",
        "Bye",
    ]


def test_huge_row_count_is_fine() -> None:
    text = "".join(f"f,Step {i},m{i % 7}\n" for i in range(2000))
    p = plan(text)
    assert len(p.steps) == 2000 and p.steps[-1].line == 2000


# --- properties ------------------------------------------------------------------------------

TRICKY = list("ab:#_ ,;\t\"'\\\r\n\x00\x85\u2028\u202e\u200b\ufeffé日ｗ{}%1-.") + [
    "request",
    "log",
    "machine",
    "id",
    "Request",
    "\r\n",
    '""',
    "#x",
    ":x",
    "::x",
]


def _check(p) -> None:
    for flow in p.flows:
        assert flow.name.isidentifier()
        ids = [s.id for s in flow.steps]
        assert len(ids) == len(set(ids))
        assert not set(flow.fields) & set(flow.secrets)
        for s in flow.steps:
            assert s.flow == flow.name and s.machine.isidentifier() and s.line >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_plan_or_sl2s_error(data: bytes) -> None:
    try:
        _check(parse_plan(data, "p.csv"))
    except Sl2sError as error:
        assert error.diagnostics
        assert all(str(d).startswith("p.csv") for d in error.diagnostics)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TRICKY), max_size=60))
def test_tricky_text_gives_a_plan_or_sl2s_error(pieces: list[str]) -> None:
    data = "".join(pieces).encode("utf-8")
    try:
        _check(parse_plan(data, "p.csv"))
    except Sl2sError as error:
        lines = data.count(b"\n") + 1
        for d in error.diagnostics:
            assert 0 <= d.line <= lines, d


def test_read_plan_on_a_hostile_file(tmp_path: Path) -> None:
    path = tmp_path / "evil.csv"
    path.write_bytes(b'\xef\xbb\xbf"\x85\r\n\x00')
    with pytest.raises(Sl2sError) as caught:
        read_plan(path)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{path}:2: binary file: NUL byte at byte offset 7"
    ]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=200))
def test_read_plan_raises_only_sl2s_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "plan.csv"
    path.write_bytes(data)
    try:
        p = read_plan(path)
    except Sl2sError as error:
        assert all(d.path == str(path) for d in error.diagnostics)
    else:
        _check(p)
        assert p.path == str(path)
