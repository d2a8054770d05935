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
    assert [str(d) for d in caught.value.diagnostics] == ["does/not/exist.csv: no such file"]


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(Sl2sError) as caught:
        read_plan(tmp_path)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{tmp_path}: is a directory, not a plan file"
    ]


def test_shop_sample() -> None:
    p = read_plan(SAMPLES / "shop.csv")
    assert [f.name for f in p.flows] == ["add_to_cart", "checkout", "order_status", "refund"]
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
