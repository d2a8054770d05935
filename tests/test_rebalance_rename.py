"""Decorator updates in place when a log line is renamed (sl2s.rebalance.rename)."""

from __future__ import annotations

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.rebalance.rename import retemplate

BEFORE = (
    "from sl2s.runtime import step\n"
    "\n"
    "\n"
    '@step("login", "Testing password for :username")  # keep me\n'
    "def testing(username):\n"
    "    return None\n"
)


def test_template_replaced_and_trailing_comment_kept():
    after = retemplate(BEFORE, "m.py", "testing", "Checking #password of :username")
    assert after == BEFORE.replace(
        "Testing password for :username", "Checking #password of :username"
    )


def test_long_template_is_laid_out_like_a_stub():
    long = "Checking the password of :username against the stored hash, slowly and carefully"
    after = retemplate(
        BEFORE.replace("  # keep me", ""), "m.py", "testing", long, "check"
    )
    assert after == (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "@step(\n"
        '    "login",\n'
        f'    "{long}",\n'
        ")\n"
        "def testing(username):\n"
        "    return None\n"
    )


def test_id_keyword_is_updated_and_quotes_escaped():
    source = BEFORE.replace('")  # keep me', '", id="old")')
    after = retemplate(source, "m.py", "testing", 'Say "hi" to :username', "new_id")
    assert '@step("login", \'Say "hi" to :username\', id="new_id")\n' in after


def test_comment_inside_the_call_is_kept_by_splicing_only_the_literal():
    source = BEFORE.replace(
        '@step("login", "Testing password for :username")  # keep me\n',
        '@runtime.step(\n    "login",  # the flow\n    "Testing password for :username",\n)\n',
    )
    after = retemplate(source, "m.py", "testing", "Renamed :username")
    assert '    "login",  # the flow\n    "Renamed :username",\n' in after
    assert after.count("\n") == source.count("\n")


def test_unknown_function_is_an_error():
    with pytest.raises(Sl2sError, match="no @step function nope"):
        retemplate(BEFORE, "m.py", "nope", "x")
