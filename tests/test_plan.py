"""sl2s.plan: reading plans — the sample plans, delimiters, headers, and every error message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.model import Placeholder
from sl2s.plan import parse_plan, read_plan

SAMPLES = Path(__file__).resolve().parent.parent / "sample_plans"


def errors(data: bytes | str, path: str = "plan.csv") -> list[str]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with pytest.raises(Sl2sError) as caught:
        parse_plan(data, path)
    return [str(d) for d in caught.value.diagnostics]


def plan(data: bytes | str, path: str = "plan.csv"):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return parse_plan(data, path)


def shape(p) -> list[tuple[str, str, str, int]]:
    return [(s.flow, s.id, s.machine, s.line) for s in p.steps]


# --- the sample plans -----------------------------------------------------------------------


def test_login_sample() -> None:
    path = str(SAMPLES / "login.csv")
    p = read_plan(path)
    assert p.path == path
    assert p.digest == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert [f.name for f in p.flows] == ["login", "feed"]
    assert p.machines == ("client", "server")
    login = p.flow("login")
    assert [s.id for s in login.steps] == [
        "user_attempted_login_as_username_and_password",
        "received_request_to_login_as_username",
        "testing_password_for_username",
        "setting_session_for_username",
        "finish_handling_user_login",
        "login_successful",
    ]
    assert [s.line for s in login.steps] == [2, 3, 4, 5, 6, 7]
    first = login.steps[0]
    assert first.template == "User attempted login as :username and #password"
    assert first.parts[1] == Placeholder("username", False, ":username")
    assert first.fields == ("username",) and first.secrets == ("password",)
    assert not first.explicit_id


def test_index_sample_has_no_header() -> None:
    p = read_plan(SAMPLES / "index.csv")
    assert p.path == str(SAMPLES / "index.csv")
    assert [f.name for f in p.flows] == ["index"]
    assert p.machines == ("server", "emailservice")
    assert [s.line for s in p.steps] == [1, 2, 3, 4, 5]
    assert p.flow("index").fields == ("email",)


def test_missing_file() -> None:
    with pytest.raises(Sl2sError) as caught:
        read_plan("does/not/exist.csv")
    assert [str(d) for d in caught.value.diagnostics] == [
        "does/not/exist.csv: no such file"
    ]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(Sl2sError) as caught:
        read_plan(tmp_path)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{tmp_path}: is a directory, not a plan file"
    ]


def test_shop_sample() -> None:
    p = read_plan(SAMPLES / "shop.csv")
    assert [f.name for f in p.flows] == [
        "add_to_cart",
        "checkout",
        "order_status",
        "refund",
    ]
    assert p.machines == ("browser", "web", "inventory", "payments", "mailer")
    add = p.flow("add_to_cart")
    # A1 B2 C3 A4 B5 A6: the flow comes back to machines already on the call stack.
    assert [s.machine for s in add.steps] == [
        "browser",
        "web",
        "inventory",
        "browser",
        "web",
        "browser",
    ]
    checkout = p.flow("checkout")
    assert checkout.secrets == ("card_number",)
    assert {s.machine for s in checkout.steps if s.secrets} == {"payments"}
    quoted = checkout.step("reserved_item_count_items_reservation_reservation_id")
    assert quoted.template == "Reserved :item_count items; reservation :reservation_id"
    assert quoted.line == 14
    assert all(not f.secrets for f in p.flows if f.name != "checkout")


# --- delimiters and headers -------------------------------------------------------------------

ROWS = [("login", "Hello :name", "client"), ("login", "Served :name", "server")]


@pytest.mark.parametrize("delimiter", ["\t", ",", ";"])
@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_every_delimiter_with_and_without_header(
    delimiter: str, header: bool, newline: str
) -> None:
    lines = [delimiter.join(r) for r in ROWS]
    if header:
        lines.insert(0, delimiter.join(["Request", "Log", "Machine"]))
    p = plan(newline.join(lines) + newline)
    first = 2 if header else 1
    assert shape(p) == [
        ("login", "hello_name", "client", first),
        ("login", "served_name", "server", first + 1),
    ]
    assert p.steps[0].template == "Hello :name"


def test_header_chooses_the_delimiter_even_when_cells_contain_others() -> None:
    p = plan("request;log;machine\nlogin;a, b, c;client\nlogin;d\te, f;server\n")
    assert [s.template for s in p.steps] == ["a, b, c", "d\te, f"]


def test_header_is_case_insensitive_any_order_and_trimmed() -> None:
    p = plan(" MACHINE , Log,request \nclient,Hello,login\n")
    assert shape(p) == [("login", "hello", "client", 2)]


def test_without_header_most_three_cell_rows_wins() -> None:
    # comma splits both rows into 3; semicolon only the second
    p = plan("a,x;y,m\nb,z,n;o\n")
    assert [s.template for s in p.steps] == ["x;y", "z"]
    assert p.machines == ("m", "n_o")


def test_without_header_ties_prefer_tab_then_comma() -> None:
    p = plan("a\tb,c,d\te\n")
    assert shape(p) == [("a", "b_c_d", "e", 1)]
    p = plan("a,b;c;d,e\n")
    assert shape(p) == [("a", "b_c_d", "e", 1)]


def test_bom_is_accepted() -> None:
    p = plan(b"\xef\xbb\xbfrequest,log,machine\nlogin,Hi,client\n")
    assert shape(p) == [("login", "hi", "client", 2)]


def test_no_trailing_newline() -> None:
    assert shape(plan("login,Hi,client")) == [("login", "hi", "client", 1)]


def test_blank_lines_and_comments_keep_physical_line_numbers() -> None:
    text = "# plan\n\nrequest,log,machine\n   \n  # indented comment\nlogin,Hi,client\r\n\r\nlogin,Bye,client\n"
    assert [s.line for s in plan(text).steps] == [6, 8]


def test_comment_may_contain_unbalanced_quotes_and_any_delimiters() -> None:
    p = plan("# don't \"quote; me, \tplease\nlogin,Hi,client\n")
    assert shape(p) == [("login", "hi", "client", 2)]


def test_quoted_cells() -> None:
    p = plan('login,"Say ""hi"", then, go",client\n"log in" , "x" ,"web"\n')
    assert [s.template for s in p.steps] == ['Say "hi", then, go', "x"]
    assert [(s.flow, s.machine) for s in p.steps] == [
        ("login", "client"),
        ("log_in", "web"),
    ]


def test_multi_line_cell_row_starts_at_its_first_line() -> None:
    p = plan('login,"first\nsecond",client\nlogin,next,client\n')
    assert [(s.template, s.line) for s in p.steps] == [
        ("first\nsecond", 1),
        ("next", 3),
    ]


def test_cells_are_trimmed() -> None:
    p = plan("  login ,  Hello :name  ,  client  \n")
    assert p.steps[0].template == "Hello :name"


def test_flows_in_order_of_first_appearance_rows_may_interleave() -> None:
    p = plan("b,one,m\na,two,m\nb,three,n\na,four,m\n")
    assert [f.name for f in p.flows] == ["b", "a"]
    assert [(s.id, s.line) for s in p.flow("b").steps] == [("one", 1), ("three", 3)]
    assert [(s.id, s.line) for s in p.flow("a").steps] == [("two", 2), ("four", 4)]


def test_spellings_are_kept() -> None:
    p = plan("Log In,Hi,Web Server\n")
    assert p.flows[0].spelling == "Log In" and p.flows[0].name == "log_in"
    assert p.machine_spellings == (("web_server", "Web Server"),)


def test_id_column() -> None:
    p = plan(
        "request,id,log,machine\nlogin,Check-PW,Checking,server\nlogin,,Checking again,server\n"
    )
    assert [(s.id, s.explicit_id) for s in p.steps] == [
        ("check_pw", True),
        ("checking_again", False),
    ]


def test_same_text_in_two_flows_is_fine() -> None:
    p = plan("a,Hi,m\nb,Hi,m\n")
    assert [s.id for s in p.steps] == ["hi", "hi"]


def test_field_and_secret_of_the_same_name_in_different_flows_are_fine() -> None:
    p = plan("a,Hi :pin,m\nb,Hi #pin,m\n")
    assert p.flow("a").fields == ("pin",) and p.flow("b").secrets == ("pin",)


def test_digest_is_of_the_bytes() -> None:
    data = b"login,Hi,client\n"
    assert plan(data).digest == hashlib.sha256(data).hexdigest()


# --- the error catalogue (docs/plan-format.md) --------------------------------------------------


def test_empty_file() -> None:
    assert errors(b"") == ["plan.csv: the file is empty"]


def test_only_blank_lines_and_comments() -> None:
    assert errors("\n# nothing\n  \n") == [
        "plan.csv: no steps: the file has only blank lines and comments"
    ]


def test_header_only() -> None:
    assert errors("\n# c\nrequest,log,machine\n\n") == [
        "plan.csv:3: no steps: the file has a header row but no rows after it"
    ]


def test_binary() -> None:
    assert errors(b"login,Hi,client\nab\x00cd\n") == [
        "plan.csv:2: binary file: NUL byte at byte offset 18"
    ]


def test_wrong_encoding() -> None:
    assert errors("login,Hi,client\nlogin,Café,client\n".encode("latin-1")) == [
        "plan.csv:2: not UTF-8: byte 0xE9 at byte offset 25 cannot be decoded;"
        " save the file as UTF-8"
    ]


def test_wrong_encoding_offset_counts_the_bom() -> None:
    assert errors(b"\xef\xbb\xbfa,\xff,c\n") == [
        "plan.csv:1: not UTF-8: byte 0xFF at byte offset 5 cannot be decoded;"
        " save the file as UTF-8"
    ]


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")],
)
def test_utf16_and_utf32(encoding: str, name: str) -> None:
    data = "request,log,machine\n".encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    assert errors(data) == [
        f"plan.csv:1: the file is {name} (byte-order mark); save it as UTF-8"
    ]


def test_ragged_rows() -> None:
    text = "request,log,machine\nlogin,Hi,client\nlogin,Hi, there,client\nlogin,Bye\n"
    assert errors(text) == [
        "plan.csv:3: row has 4 cells, expected 3 (request, log, machine) separated by commas;"
        " quote a cell that contains the separator",
        "plan.csv:4: row has 2 cells, expected 3 (request, log, machine) separated by commas;"
        " quote a cell that contains the separator",
    ]


def test_ragged_without_header() -> None:
    assert errors("a;b;c\nd;e\n") == [
        "plan.csv:2: row has 2 cells, expected 3 (request, log, machine) separated by"
        " semicolons; quote a cell that contains the separator"
    ]


def test_ragged_with_id_column_names_the_header() -> None:
    assert errors("Request\tLog\tMachine\tId\nlogin\tHi\tclient\n") == [
        "plan.csv:2: row has 3 cells, expected 4 (Request, Log, Machine, Id) separated by tabs;"
        " quote a cell that contains the separator"
    ]


def test_unterminated_quote() -> None:
    assert errors('login,Hi,client\nlogin,"Bye,client\nlogin,x,y\n') == [
        "plan.csv:2: unterminated quote: the quoted cell opened here never closes"
    ]


def test_text_after_closing_quote() -> None:
    assert errors('login,Hi,client\nlogin,"Bye" now,client\nlogin,x,y\n') == [
        "plan.csv:2: unexpected text after the closing quote of a cell; inside a quoted cell"
        ' write a quote as ""'
    ]


def test_bare_carriage_return() -> None:
    assert errors("login,Hi\rthere,client\nlogin,x,y\n") == [
        "plan.csv:1: carriage return (\\r) inside an unquoted cell; quote the cell if the \\r"
        " belongs to the text, or end lines with \\n or \\r\\n"
    ]


def test_quoted_carriage_return_is_text() -> None:
    assert plan('login,"Hi\rthere",client\n').steps[0].template == "Hi\rthere"


def test_unknown_and_duplicate_and_missing_columns() -> None:
    text = "request,log,Log,server,colour\nlogin,a,b,c,d\n"
    assert errors(text) == [
        "plan.csv:1: column 'log' appears twice",
        "plan.csv:1: missing column 'machine'",
        "plan.csv:1: unknown column 'colour' (the columns are request, log, machine and"
        " optionally id)",
        "plan.csv:1: unknown column 'server' (the columns are request, log, machine and"
        " optionally id)",
    ]


def test_unknown_column_still_checks_the_rows() -> None:
    assert errors("request,log,machine,note\nlogin,,client,x\n") == [
        "plan.csv:1: unknown column 'note' (the columns are request, log, machine and"
        " optionally id)",
        "plan.csv:2: empty log cell",
    ]


def test_empty_cells() -> None:
    assert errors("request,log,machine\n,Hi,client\nlogin, ,\n") == [
        "plan.csv:2: empty request cell",
        "plan.csv:3: empty log cell",
        "plan.csv:3: empty machine cell",
    ]


def test_identifiers_empty_after_normalisation() -> None:
    assert errors(
        "日本,Hi,client\nlogin,Hi,..\nlogin,Hello :名前,client\nlogin,!!!,client\n"
    ) == [
        "plan.csv:1: request '日本' has no letters or digits usable in an identifier",
        "plan.csv:2: machine '..' has no letters or digits usable in an identifier",
        "plan.csv:3: placeholder ':名前' has no letters or digits usable in an identifier",
        "plan.csv:4: the log text gives no usable step id (no letters or digits); add an 'id'"
        " column",
    ]


def test_empty_id_identifier() -> None:
    assert errors("request,log,machine,id\nlogin,Hi,client,--\n") == [
        "plan.csv:2: id '--' has no letters or digits usable in an identifier"
    ]


def test_two_spellings_of_a_machine() -> None:
    text = "login,a,Web\nlogin,b,web\nlogin,c,web-1\nlogin,d,web_1\nlogin,e,web\n"
    assert errors(text) == [
        "plan.csv:2: machine 'web' and 'Web' (line 1) are the same identifier 'web'; spell them"
        " the same way, or rename one",
        "plan.csv:4: machine 'web_1' and 'web-1' (line 3) are the same identifier 'web_1';"
        " spell them the same way, or rename one",
    ]


def test_two_spellings_of_a_flow() -> None:
    assert errors("Log-In,a,m\nlog_in,b,m\n") == [
        "plan.csv:2: request 'log_in' and 'Log-In' (line 1) are the same identifier 'log_in';"
        " spell them the same way, or rename one"
    ]


def test_two_spellings_of_a_field() -> None:
    assert errors("login,Hi :userName,m\nlogin,Bye :user_name,m\n") == [
        "plan.csv:2: field ':user_name' and ':userName' (line 1) are the same identifier"
        " 'user_name'; spell them the same way, or rename one"
    ]


def test_duplicate_step_ids() -> None:
    assert errors("login,Hi :name,m\nlogin,Hi :name!,n\n") == [
        "plan.csv:2: step id 'hi_name' is already used in request 'login' on line 1; give one"
        " of the rows its own value in an 'id' column"
    ]


def test_duplicate_explicit_ids() -> None:
    assert errors(
        "request,log,machine,id\nlogin,Hi,m,greet\nlogin,Hello,m,Greet\n"
    ) == [
        "plan.csv:3: step id 'greet' is already used in request 'login' on line 2; ids must be"
        " unique within a request"
    ]


def test_secret_shown_in_clear_names_both_lines() -> None:
    text = "login,Typed #password,client\nlogin,Checking :password,server\nlogin,ok,server\n"
    assert errors(text) == [
        "plan.csv:2: field ':password' would show 'password' in clear, but it is a secret in"
        " request 'login' ('#password', line 1); write '#password'"
    ]


def test_secret_rule_applies_before_the_secret_appears_too() -> None:
    assert errors("login,Typed :pin,client\nlogin,Check #pin,server\n") == [
        "plan.csv:1: field ':pin' would show 'pin' in clear, but it is a secret in request"
        " 'login' ('#pin', line 2); write '#pin'"
    ]


def test_all_problems_at_once_sorted_by_line() -> None:
    text = (
        "request,log,machine\n"
        "login,,client\n"
        "login,Hi,client,extra\n"
        'login,"Hi\rthere,client\n'
    )
    assert errors(text, "my plan.csv") == [
        "my plan.csv:2: empty log cell",
        "my plan.csv:3: row has 4 cells, expected 3 (request, log, machine) separated by"
        " commas; quote a cell that contains the separator",
        "my plan.csv:4: unterminated quote: the quoted cell opened here never closes",
    ]


def test_two_spellings_of_a_field_with_different_sigils() -> None:
    assert errors("login,Typed #Password,m\nlogin,Bye :password,m\n") == [
        "plan.csv:2: field ':password' and '#Password' (line 1) are the same identifier"
        " 'password'; spell them the same way, or rename one",
        "plan.csv:2: field ':password' would show 'password' in clear, but it is a secret in"
        " request 'login' ('#Password', line 1); write '#password'",
    ]


def test_header_with_empty_column_names() -> None:
    assert errors("request,log,machine,,\nlogin,Hi,m,,\n") == [
        "plan.csv:1: column 4 of the header has no name",
        "plan.csv:1: column 5 of the header has no name",
    ]


def test_header_names_are_compared_after_nfkc() -> None:
    p = plan("Ｒｅｑｕｅｓｔ,ＬＯＧ,Ｍａｃｈｉｎｅ\nlogin,Hi,client\n")
    assert shape(p) == [("login", "hi", "client", 2)]


def test_line_numbers_after_a_bad_multi_line_row() -> None:
    assert errors('login,"a\nb" x,client\nlogin,Hi,client,extra\n') == [
        "plan.csv:1: unexpected text after the closing quote of a cell; inside a quoted cell"
        ' write a quote as ""',
        "plan.csv:3: row has 4 cells, expected 3 (request, log, machine) separated by commas;"
        " quote a cell that contains the separator",
    ]


def test_crlf_inside_a_quoted_cell_reads_as_newline() -> None:
    p = plan('login,"first\r\nsecond",client\r\nlogin,"a\rb",client\r\n')
    assert [(s.template, s.line) for s in p.steps] == [
        ("first\nsecond", 1),
        ("a\rb", 3),
    ]
