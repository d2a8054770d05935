"""The pure move engine, codemod style: source before, source after."""

from __future__ import annotations

import black
import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.rebalance.move import Module, move

A_NAME, A_PATH = "services.server.login", "services/server/login.py"
B_NAME, B_PATH = "services.auth.login", "services/auth/login.py"

HEAD_A = '"""Steps of flow \'login\' that run on machine \'server\'."""\n\n'
HEAD_B = '"""Steps of flow \'login\' that run on machine \'auth\'."""\n\n'


def run(a: str, b: str | None, functions, *, before=None, new_module_text=""):
    return move(
        Module(A_NAME, A_PATH, a),
        Module(B_NAME, B_PATH, b),
        functions,
        before=before,
        new_module_text=new_module_text,
    )


def check(a, b, functions, a_after, b_after, *, before=None, new_module_text=""):
    result = run(a, b, functions, before=before, new_module_text=new_module_text)
    assert result.source == a_after
    assert result.dest == b_after
    for text in (result.source, result.dest):
        assert (
            black.format_str(text, mode=black.Mode()) == text
        )  # still black-formatted
    return result


def refused(a, b, functions, *fragments):
    with pytest.raises(Sl2sError) as caught:
        run(a, b, functions)
    text = str(caught.value)
    for fragment in fragments:
        assert fragment in text, text
    return text


def test_moves_function_with_decorator_comments_and_the_imports_it_uses():
    a = HEAD_A + (
        "import re\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Received request to login as :username")\n'
        "def received(username):\n"
        "    return None\n"
        "\n"
        "\n"
        "# Validate the name first.\n"
        "# (two comment lines)\n"
        '@step("login", "Testing password for :username")\n'
        "def testing(username):\n"
        '    if not re.match(r"\\w+", username):  # trailing comment\n'
        "        return None\n"
        '    return {"ok": True}\n'
        "    # indented comment after the body\n"
        "\n"
        "\n"
        "# a free comment that belongs to nobody\n"
        "\n"
        "\n"
        '@step("login", "Setting session for :username")\n'
        "def setting(username):\n"
        "    return None\n"
    )
    b = HEAD_B + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Finish handling user login")\n'
        "def finish():\n"
        "    return None\n"
    )
    a_after = HEAD_A + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Received request to login as :username")\n'
        "def received(username):\n"
        "    return None\n"
        "\n"
        "\n"
        "# a free comment that belongs to nobody\n"
        "\n"
        "\n"
        '@step("login", "Setting session for :username")\n'
        "def setting(username):\n"
        "    return None\n"
    )
    b_after = HEAD_B + (
        "import re\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "# Validate the name first.\n"
        "# (two comment lines)\n"
        '@step("login", "Testing password for :username")\n'
        "def testing(username):\n"
        '    if not re.match(r"\\w+", username):  # trailing comment\n'
        "        return None\n"
        '    return {"ok": True}\n'
        "    # indented comment after the body\n"
        "\n"
        "\n"
        '@step("login", "Finish handling user login")\n'
        "def finish():\n"
        "    return None\n"
    )
    result = check(a, b, ["testing"], a_after, b_after, before="finish")
    assert result.report.carried_imports == ("import re",)
    assert result.report.removed_imports == ("re",)
    assert result.report.cross_imports == ()
    # and back again: B byte for byte; in A the free comment now sits above the returning function
    back = move(
        Module(B_NAME, B_PATH, b_after),
        Module(A_NAME, A_PATH, a_after),
        ["testing"],
        before="setting",
    )
    assert back.source == b
    free = "# a free comment that belongs to nobody\n\n\n"
    moved_back = a.replace(free, "").replace("# Validate", free + "# Validate")
    assert back.dest == moved_back


def test_round_trip_restores_both_files_byte_for_byte():
    a = HEAD_A + (
        "import hashlib\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "def shared(x):\n"
        "    return x.strip()\n"
        "\n"
        "\n"
        'SALT = "pepper"\n'
        "\n"
        "\n"
        "def _hash(pw):\n"
        "    return hashlib.sha256((SALT + pw).encode()).hexdigest()\n"
        "\n"
        "\n"
        '@step("login", "Testing password for :username")\n'
        "def testing(username, password):\n"
        '    return {"ok": _hash(password) == shared(username)}\n'
        "\n"
        "\n"
        '@step("login", "Setting session for :username")\n'
        "def setting(username):\n"
        '    return {"session": shared(username)}\n'
    )
    b = HEAD_B + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Finish handling user login")\n'
        "def finish():\n"
        "    return None\n"
    )
    b_after = HEAD_B + (
        "import hashlib\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "from ..server.login import shared\n"
        "\n"
        "\n"
        '@step("login", "Finish handling user login")\n'
        "def finish():\n"
        "    return None\n"
        "\n"
        "\n"
        'SALT = "pepper"\n'
        "\n"
        "\n"
        "def _hash(pw):\n"
        "    return hashlib.sha256((SALT + pw).encode()).hexdigest()\n"
        "\n"
        "\n"
        '@step("login", "Testing password for :username")\n'
        "def testing(username, password):\n"
        '    return {"ok": _hash(password) == shared(username)}\n'
    )
    a_after = HEAD_A + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "def shared(x):\n"
        "    return x.strip()\n"
        "\n"
        "\n"
        '@step("login", "Setting session for :username")\n'
        "def setting(username):\n"
        '    return {"session": shared(username)}\n'
    )
    result = check(a, b, ["testing"], a_after, b_after)
    assert result.report.helpers == ("SALT", "_hash")
    assert result.report.cross_imports == ("from ..server.login import shared",)
    back = move(
        Module(B_NAME, B_PATH, b_after),
        Module(A_NAME, A_PATH, a_after),
        ["testing"],
        before="setting",
    )
    assert back.source == b
    assert back.dest == a


def test_new_module_gets_the_imports_and_function():
    a = HEAD_A + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Login successful")\n'
        "def done():\n"
        "    return None\n"
        "\n"
        "\n"
        '@step("login", "Other")\n'
        "def other():\n"
        "    return None\n"
    )
    a_after = HEAD_A + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Other")\n'
        "def other():\n"
        "    return None\n"
    )
    b_after = HEAD_B + (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Login successful")\n'
        "def done():\n"
        "    return None\n"
    )
    check(a, None, ["done"], a_after, b_after, new_module_text=HEAD_B[:-1])


def test_relative_imports_are_re_rooted_and_from_imports_merged_and_split():
    a = HEAD_A + (
        "from os.path import join, sep\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "from .util import normalise\n"
        "\n"
        "\n"
        '@step("login", "One")\n'
        "def one(username):\n"
        '    return {"p": join(normalise(username), sep)}\n'
        "\n"
        "\n"
        '@step("login", "Two")\n'
        "def two(username):\n"
        '    return {"p": join(username, "x")}\n'
    )
    b = HEAD_B + (
        "from os.path import basename\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Three")\n'
        "def three(p):\n"
        '    return {"b": basename(p)}\n'
    )
    a_after = HEAD_A + (
        "from os.path import join\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        '@step("login", "Two")\n'
        "def two(username):\n"
        '    return {"p": join(username, "x")}\n'
    )
    b_after = HEAD_B + (
        "from os.path import basename, join, sep\n"
        "\n"
        "from sl2s.runtime import step\n"
        "\n"
        "from ..server.util import normalise\n"
        "\n"
        "\n"
        '@step("login", "One")\n'
        "def one(username):\n"
        '    return {"p": join(normalise(username), sep)}\n'
        "\n"
        "\n"
        '@step("login", "Three")\n'
        "def three(p):\n"
        '    return {"b": basename(p)}\n'
    )
    result = check(a, b, ["one"], a_after, b_after, before="three")
    assert result.report.carried_imports == (
        "from os.path import join",
        "from os.path import sep",
        "from ..server.util import normalise",
    )
    assert result.report.removed_imports == ("sep", "normalise")


def test_helpers_used_transitively_move_in_order_and_classes_too():
    a = (
        "from sl2s.runtime import step\n"
        "\n"
        "LIMIT = 3\n"
        "\n"
        "\n"
        "class Counter:\n"
        "    def bump(self, n):\n"
        "        return min(n + 1, LIMIT)\n"
        "\n"
        "\n"
        "def _count(n):\n"
        "    return Counter().bump(n)\n"
        "\n"
        "\n"
        '@step("f", "Count")\n'
        "async def count(n):\n"
        '    return {"n": _count(n)}\n'
    )
    result = run(a, "", ["count"])
    assert (
        result.source == "from sl2s.runtime import step\n"
    )  # the user-module import stays
    assert result.report.helpers == ("LIMIT", "Counter", "_count")
    assert result.dest == (
        "from sl2s.runtime import step\n"
        "\n"
        "LIMIT = 3\n"
        "\n"
        "\n"
        "class Counter:\n"
        "    def bump(self, n):\n"
        "        return min(n + 1, LIMIT)\n"
        "\n"
        "\n"
        "def _count(n):\n"
        "    return Counter().bump(n)\n"
        "\n"
        "\n"
        '@step("f", "Count")\n'
        "async def count(n):\n"
        '    return {"n": _count(n)}\n'
    )


def test_local_names_that_shadow_module_names_are_not_dependencies():
    a = (
        "from sl2s.runtime import step\n"
        "\n"
        "value = 1\n"
        "\n"
        "\n"
        '@step("f", "One")\n'
        "def one():\n"
        "    value = 2\n"
        '    return {"v": [value for value in range(value)]}\n'
        "\n"
        "\n"
        '@step("f", "Two")\n'
        "def two():\n"
        '    return {"v": value}\n'
    )
    result = run(a, "from sl2s.runtime import step\n", ["one"])
    assert result.report.cross_imports == ()
    assert "value = 1" in result.source and "value = 1" not in result.dest


def test_sequential_moves_turn_a_cross_import_back_into_the_helper():
    a = (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "def shared():\n"
        "    return 1\n"
        "\n"
        "\n"
        '@step("f", "One")\n'
        "def one():\n"
        '    return {"v": shared()}\n'
        "\n"
        "\n"
        '@step("f", "Two")\n'
        "def two():\n"
        '    return {"v": shared()}\n'
    )
    first = run(a, "from sl2s.runtime import step\n", ["one"])
    assert "from ..server.login import shared" in first.dest
    second = run(first.source, first.dest, ["two"])
    assert second.source == "from sl2s.runtime import step\n"
    assert "import shared" not in second.dest
    assert second.dest.count("def shared():") == 1
    compile(second.dest, B_PATH, "exec")


def test_collision_names_both_definitions_and_nothing_changes():
    a = (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "def fmt(x):\n"
        "    return str(x)\n"
        "\n"
        "\n"
        '@step("f", "One")\n'
        "def one(x):\n"
        '    return {"v": fmt(x)}\n'
    )
    b = (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "def fmt(x):\n"
        "    return repr(x)\n"
    )
    refused(a, b, ["one"], f"{A_PATH}:4", f"{B_PATH}:4", "'fmt'")


def test_collision_of_an_import_with_a_different_target():
    a = "import json as codec\n\n\ndef one():\n    return codec.dumps(1)\n"
    b = "import pickle as codec\n"
    refused(a, b, ["one"], f"{A_PATH}:1", f"{B_PATH}:1", "'codec'")


def test_builtin_redefined_in_destination_is_a_collision():
    a = "def one(x):\n    return len(x)\n"
    b = "def len(x):\n    return 0\n"
    refused(a, b, ["one"], "'len'", f"{B_PATH}:1")


def test_function_name_taken_in_destination():
    a = "def one():\n    return 1\n"
    b = "X = 1\n\n\ndef one():\n    return 2\n"
    refused(a, b, ["one"], f"{A_PATH}:1", f"{B_PATH}:4")


@pytest.mark.parametrize(
    ("a", "fragment", "line"),
    [
        ("N = 0\n\n\ndef one():\n    global N\n    N += 1\n", "global N", 5),
        (
            "try:\n    import ujson as js\nexcept ImportError:\n    import json as js\n\n\ndef one():\n    return js.dumps(1)\n",
            "`try`",
            1,
        ),
        (
            "import sys\n\nif sys.version_info > (3,):\n    def h():\n        return 1\n\n\ndef one():\n    return h()\n",
            "`if`",
            3,
        ),
        (
            "from os.path import *\n\n\ndef one():\n    return join('a')\n",
            "star import",
            1,
        ),
        ("def one():\n    return globals()['h']()\n", "`globals`", 2),
        ("def one():\n    return eval('1')\n", "`eval`", 2),
        (
            "import sys\n\n\ndef one():\n    return getattr(sys.modules[__name__], 'h')\n",
            "sys.modules",
            5,
        ),
        ("def one():\n    return __import__('os')\n", "`__import__`", 2),
        (
            "def one():\n    return 1\n\n\nX = one()\n",
            "still used by code that stays",
            1,
        ),
        ("X = 1\nX = 2\n\n\ndef one():\n    return X\n", "bound more than once", 1),
        ("__all__ = ['one']\n\n\ndef one():\n    return 1\n", "__all__", 4),
        (
            "def one():\n    return 1\n\n\ndef two(n):\n    return globals()[n]()\n",
            "code that stays",
            6,
        ),
    ],
)
def test_unsafe_moves_need_a_manual_move(a, fragment, line):
    text = refused(a, "", ["one"], "needs a manual move", fragment)
    assert f"{A_PATH}:{line}:" in text


def test_star_import_in_destination_is_refused():
    refused(
        "def one():\n    return 1\n",
        "from os import *\n",
        ["one"],
        f"{B_PATH}:1",
        "star import",
    )


def test_import_cycle_is_refused():
    a = (
        "from ..auth.login import other\n"
        "\n"
        "\n"
        "def shared():\n"
        "    return other()\n"
        "\n"
        "\n"
        "def one():\n"
        "    return shared()\n"
        "\n"
        "\n"
        "def two():\n"
        "    return shared()\n"
    )
    refused(a, "def other():\n    return 1\n", ["one"], "import cycle")


def test_unknown_function_is_an_error():
    refused("def one():\n    return 1\n", "", ["nope"], "no top-level function 'nope'")


def test_import_with_attached_comment_is_kept_in_source():
    a = "# json for the wire\nimport json\n\n\ndef one():\n    return json.dumps(1)\n"
    result = run(a, "", ["one"])
    assert result.source == "# json for the wire\nimport json\n"
    assert result.report.kept_imports == ("json",)
    assert result.dest == "import json\n\n\ndef one():\n    return json.dumps(1)\n"


def test_import_still_used_in_source_stays_there_too():
    a = "import json\n\n\ndef one():\n    return json.dumps(1)\n\n\ndef two():\n    return json.dumps(2)\n"
    result = run(a, "", ["one"])
    assert result.source == "import json\n\n\ndef two():\n    return json.dumps(2)\n"
    assert result.dest == "import json\n\n\ndef one():\n    return json.dumps(1)\n"
    assert result.report.removed_imports == ()


def test_exploded_import_keeps_its_shape():
    a = (
        "from os.path import (\n"
        "    basename,\n"
        "    join,\n"
        ")\n"
        "\n"
        "\n"
        "def one():\n"
        "    return join('a')\n"
        "\n"
        "\n"
        "def two():\n"
        "    return basename('a')\n"
    )
    result = run(a, "", ["one"])
    assert result.source.startswith("from os.path import (\n    basename,\n)\n")
    assert result.dest.startswith("from os.path import join\n")


def test_names_other_modules_import_stay_and_are_imported():
    a = (
        "from sl2s.runtime import step\n"
        "\n"
        "\n"
        "def shared():\n"
        "    return 1\n"
        "\n"
        "\n"
        '@step("f", "One")\n'
        "def one():\n"
        '    return {"v": shared()}\n'
    )
    result = move(
        Module(A_NAME, A_PATH, a),
        Module(B_NAME, B_PATH, "from sl2s.runtime import step\n"),
        ["one"],
        pinned={"shared": "services/client/login.py:3"},
    )
    assert "def shared" in result.source
    assert "from ..server.login import shared" in result.dest
    with pytest.raises(
        Sl2sError,
        match="'one' is imported from this module at services/client/login.py:3",
    ):
        move(
            Module(A_NAME, A_PATH, a),
            Module(B_NAME, B_PATH, ""),
            ["one"],
            pinned={"one": "services/client/login.py:3"},
        )
    with pytest.raises(Sl2sError, match="imported from this module at x.py:1"):
        move(
            Module(A_NAME, A_PATH, a),
            Module(B_NAME, B_PATH, ""),
            ["one"],
            pinned={"*": "x.py:1"},
        )


def test_importers_finds_names_imported_from_a_module():
    from sl2s.rebalance.core import importers

    modules = {
        "client/login.py": "from ..server.login import shared, other as o\n",
        "server/feed.py": "from . import login\n",
        "auth/login.py": "import json\n",
        "server/login.py": "def shared():\n    pass\n",
    }
    assert importers(
        modules, "services.server.login", "services", skip={"server/login.py"}
    ) == {
        "shared": "client/login.py:1",
        "other": "client/login.py:1",
        "*": "server/feed.py:1",
    }


def test_crlf_modules_stay_crlf():
    a = "import json\r\n\r\n\r\ndef one():\r\n    return json.dumps(1)\r\n\r\n\r\ndef two():\r\n    return 2\r\n"
    b = "from sl2s.runtime import step\r\n"
    result = run(a, b, ["one"])
    assert result.source == "def two():\r\n    return 2\r\n"
    assert result.dest == (
        "import json\r\n\r\nfrom sl2s.runtime import step\r\n\r\n\r\ndef one():\r\n    return json.dumps(1)\r\n"
    )


def test_safety_net_refuses_a_result_that_lost_a_line(monkeypatch):
    from sl2s.rebalance import move as engine

    monkeypatch.setattr(engine, "render", lambda segs: "")
    with pytest.raises(Sl2sError, match="would not keep every line; nothing written"):
        run("def one():\n    return 1\n", "", ["one"])


def test_all_naming_only_staying_names_does_not_block_a_move():
    a = "__all__ = ['two']\n\n\ndef one():\n    return 1\n\n\ndef two():\n    return 2\n"
    result = run(a, "", ["one"])
    assert result.source == "__all__ = ['two']\n\n\ndef two():\n    return 2\n"
