"""User-owned modules: steps found by decorator (libcst), stubs appended without touching a byte,
orphans kept, renamed functions and helpers keep working — including a hypothesis property.
"""

from __future__ import annotations

import ast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sl2s.diagnostics import Sl2sError
from sl2s.generate import FoundStep, UserCodeError, append_stubs, generate, scan_module
from sl2s.plan import parse_plan

MODULE = '''"""My login steps."""

import hashlib  # the user's import
from sl2s.runtime import step
from sl2s import runtime

SALT = "s"


def _hash(text):
    return hashlib.sha256((SALT + text).encode()).hexdigest()


# a comment before a renamed step
@step("login", "Testing password for :username")
def check_the_password(username, password=None, *rest, session=None, **extra):
    """Docstring of the user."""
    return {"ok": _hash(password or "") != ""}


@runtime.step(
    "login",
    "Setting " "session for :username",  # implicit concatenation
    id="set_session",
)
async def make_session(username, /, *, token):
    return None


@other("not a step")
def unrelated():
    pass


class Helper:
    @step("login", "a method is not a step")
    def method(self):
        pass
'''


def test_scan_finds_steps_by_decorator_not_by_name() -> None:
    found = scan_module(MODULE)
    assert scan_module("\ufeff" + MODULE) == found  # a BOM changes nothing
    assert found == [
        FoundStep(
            flow="login",
            id="testing_password_for_username",
            template="Testing password for :username",
            function="check_the_password",
            params=("username", "password", "session"),
            line=15,
        ),
        FoundStep(
            flow="login",
            id="set_session",
            template="Setting session for :username",
            function="make_session",
            params=("username", "token"),
            line=21,
        ),
    ]
    lines = MODULE.splitlines()
    assert lines[14].startswith('@step("login", "Testing password')
    assert lines[20].startswith("@runtime.step(")


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f(:\n", "cannot parse"),
        ('@step(FLOW, "x")\ndef f():\n    pass\n', "string literals"),
        (
            '@step("f", "x", id=ID)\ndef f():\n    pass\n',
            "id= must be a string literal",
        ),
        ('@step("f")\ndef f():\n    pass\n', "string literals"),
    ],
)
def test_scan_errors_name_the_line(source: str, message: str) -> None:
    with pytest.raises(UserCodeError) as caught:
        scan_module(source)
    assert message in caught.value.message
    assert caught.value.line >= 1


STUB = '@step("login", "New")\ndef new():\n    # Not implemented yet: this step does nothing.\n    return None\n'


@pytest.mark.parametrize(
    "source",
    [
        MODULE,
        MODULE + "# trailing comment\n",
        MODULE + "\n\n\n\n# far trailing comment\n\n\n\n",
        MODULE.rstrip("\n"),  # no final newline
        "",
        "# only a comment",
        '"""doc"""\n',
        "x = 1\r\ny = 2\r\n",
        "\ufeff# a file saved with a BOM\nx = 1\n",
        "if True:\n    def f():\n        pass\n    # indented trailing comment\n",
    ],
)
def test_append_keeps_every_byte_and_adds_the_stub_after_two_blank_lines(
    source: str,
) -> None:
    out = append_stubs(source, [STUB, STUB.replace("New", "Two").replace("new", "two")])
    kept = (
        source
        if source.endswith("\n") or not source
        else source + ("\r\n" if "\r\n" in source else "\n")
    )
    assert out.startswith(kept)
    added = out[len(kept) :]
    newline = "\r\n" if "\r\n" in source else "\n"
    assert added.replace(newline, "\n").lstrip("\n") == STUB + "\n\n" + STUB.replace(
        "New", "Two"
    ).replace("new", "two")
    assert "\n" not in added.replace(newline, "")  # the file's own line endings
    first = out.index('@step("login", "New")')
    if source.strip():
        assert out[:first].endswith(newline * 3)  # two blank lines before the stub
    else:
        assert first == 0
    ast.parse(out.removeprefix("\ufeff"))
    assert [f.id for f in scan_module(out)][-2:] == ["new", "two"]


# --- through generate(): a user's life with their modules ---------------------------------------

PLAN = "login,Receive :user,server\nlogin,Check #password for :user,server\nlogin,Done,client\n"


def gen(plan: str, modules: dict[str, str]):
    return generate(
        parse_plan(plan.encode(), "plan.csv"),
        plan_ref="../plan.csv",
        user_modules=modules,
    )


def user_files(generation, modules: dict[str, str]) -> dict[str, str]:
    """The user modules after writing `generation` over `modules`."""
    out = dict(modules)
    out.update({f.path: f.content for f in generation.files if not f.generated})
    return out


def test_filled_stubs_renamed_functions_and_helpers_survive_plan_changes() -> None:
    first = user_files(gen(PLAN, {}), {})
    server = first["server/login.py"]
    # the user fills in bodies, renames a function, adds imports, helpers and comments
    server = server.replace(
        "from sl2s.api import step\n",
        "import os  # mine\nfrom sl2s.api import step\n\nLIMIT = 3  # mine\n",
    )
    server = server.replace(
        "def receive_user(user: object) -> None:",
        "def on_receive(user: object) -> None:  # renamed",
    )
    server = server.replace(
        "    # Not implemented yet: this step does nothing.\n    return None\n",
        "    return {'seen': os.getpid() > 0}  # a real body\n",
        1,
    )
    server += "\n\ndef helper():\n    # the user's helper\n    return LIMIT\n"
    modules = {**first, "server/login.py": server}

    # same plan: nothing to do for user modules; the renamed function is found by its decorator
    again = gen(PLAN, modules)
    assert [f.path for f in again.files if not f.generated] == []
    lock = {f.path: f.content for f in again.files}["sl2s.lock.json"]
    assert '"function": "on_receive"' in lock

    # add a step in the middle, remove one, regenerate
    changed = (
        "login,Receive :user,server\nlogin,Audit :user,server\nlogin,Done,client\n"
    )
    result = gen(changed, modules)
    after = user_files(result, modules)
    assert after["server/login.py"].startswith(
        server
    )  # every byte of user code still there
    assert (
        after["server/login.py"][len(server) :]
        .lstrip("\n")
        .startswith(
            '@step("login", "Audit :user")\ndef audit_user(user: object) -> None:'
        )
    )
    assert after["client/login.py"] == modules["client/login.py"]
    assert [(o.function, o.id) for o in result.orphans] == [
        ("check_password_for_user", "check_password_for_user")
    ]
    wiring = {f.path: f.content for f in result.files}["server/_wiring.py"]
    assert 'run.step("audit_user")' in wiring and "check_password" not in wiring
    assert "on_receive" not in wiring  # the wiring never depends on user function names


def test_secret_parameter_added_by_the_user_routes_the_secret() -> None:
    plan = "login,Ask #password,client\nlogin,Check,server\n"
    modules = user_files(gen(plan, {}), {})
    before = {f.path: f.content for f in gen(plan, modules).files}["client/_wiring.py"]
    assert "secrets=" not in before
    modules["server/login.py"] = modules["server/login.py"].replace(
        "def check() -> None:", "def check(password: object) -> None:"
    )
    after = {f.path: f.content for f in gen(plan, modules).files}["client/_wiring.py"]
    assert 'secrets=("password",)' in after


def test_stub_appended_to_a_module_without_the_step_import_brings_it() -> None:
    modules = user_files(gen("login,One,m\n", {}), {})
    mine = '"""No imports left here."""\n\nX = 1\n'
    modules["m/login.py"] = mine
    after = user_files(gen("login,One,m\n", modules), modules)["m/login.py"]
    assert after.startswith(mine)
    assert after[len(mine) :] == (
        "\n\nfrom sl2s.api import step\n\n\n"
        '@step("login", "One")\ndef one() -> None:\n'
        "    # Not implemented yet: this step does nothing.\n    return None\n"
    )
    namespace: dict = {}
    exec(
        compile(
            after.replace(
                "from sl2s.api import step", "step = lambda *a: (lambda f: f)"
            ),
            "m",
            "exec",
        ),
        namespace,
    )
    assert callable(namespace["one"])


def test_step_defined_twice_on_one_machine_is_an_error() -> None:
    modules = user_files(gen(PLAN, {}), {})
    stub = '\n\n@step("login", "Receive :user")\ndef again(user):\n    return None\n'
    modules["server/login.py"] += stub
    with pytest.raises(Sl2sError) as caught:
        gen(PLAN, modules)
    assert "defined twice" in str(caught.value)
    assert str(caught.value).startswith("server/login.py:")


def test_step_moved_by_the_user_to_another_flow_module_of_the_machine_is_found() -> (
    None
):
    plan = "a,One,m\nb,Two,m\n"
    modules = user_files(gen(plan, {}), {})
    # the user moves b's step into a.py (an imported module of the same machine)
    b_step = (
        modules["m/b.py"].split("\n\n\n", 1)[1].split("from sl2s.api import step\n")[-1]
    )
    modules["m/a.py"] += (
        "\n\n" + modules["m/b.py"][modules["m/b.py"].index('@step("b"') :]
    )
    modules["m/b.py"] = (
        modules["m/b.py"][: modules["m/b.py"].index('@step("b"')].rstrip() + "\n"
    )
    assert b_step
    result = gen(plan, modules)
    assert [f.path for f in result.files if not f.generated] == []
    assert result.orphans == ()


# --- property: whatever the plan and the user's edits, nothing is lost --------------------------

FLOWS = st.sampled_from(["login", "feed", "pay"])
MACHINES = st.sampled_from(["client", "server", "db"])
WORDS = st.sampled_from(["Check", "Load", "Send", "Store", "Show"])
FIELDS = st.sampled_from(["", " :user", " :item", " #token", " :user and :item"])


@st.composite
def plans(draw):
    rows = draw(
        st.lists(
            st.tuples(FLOWS, WORDS, st.integers(0, 3), FIELDS, MACHINES),
            min_size=1,
            max_size=8,
        )
    )
    seen = set()
    lines = []
    for flow, word, n, fields, machine in rows:
        text = f"{word} {n}{fields}"
        if (flow, text) in seen:
            continue
        seen.add((flow, text))
        lines.append(f"{flow},{text},{machine}")
    return "\n".join(lines) + "\n"


EDITS = st.lists(
    st.sampled_from(
        [
            "\n# a user comment\n",
            "\nimport json  # user import\n",
            "\n\ndef _helper(x):\n    return x  # user helper\n",
            "\nCONSTANT = {'a': 1}\n",
        ]
    ),
    max_size=3,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), plans(), EDITS, st.booleans())
def test_property_user_code_never_lost_and_generation_deterministic(
    first, second, edits, rename
) -> None:
    try:
        one = gen(first, {})
    except Sl2sError:
        return  # e.g. a secret that cannot reach its machine: a plan error, nothing generated
    modules = user_files(one, {})
    for path in sorted(modules):
        text = modules[path] + "".join(edits)
        if rename:
            text = text.replace("def ", "def renamed_", 1)
        modules[path] = text
    try:
        two = gen(second, modules)
    except Sl2sError:
        return
    again = gen(second, modules)
    assert two.files == again.files  # deterministic
    after = user_files(two, modules)
    for path, text in modules.items():
        assert after[path].startswith(text)  # every byte of user code still there
    for f in two.files:
        if f.path.endswith(".py"):
            compile(f.content, f.path, "exec")
    # every step of the plan is found exactly once on its machine afterwards
    plan = parse_plan(second.encode(), "plan.csv")
    for s in plan.steps:
        hits = [
            fs
            for path, text in after.items()
            if path.startswith(s.machine + "/")
            for fs in scan_module(text)
            if (fs.flow, fs.id) == (s.flow, s.id)
        ]
        assert len(hits) == 1, (s.flow, s.id, s.machine)
