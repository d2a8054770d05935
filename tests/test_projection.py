"""sl2s.projection: the stack rule of DESIGN §2, hop contents, secret routing, machine views."""

from __future__ import annotations

import pytest

from sl2s.diagnostics import Sl2sError
from sl2s.model import Plan
from sl2s.plan import parse_plan
from sl2s.projection import Call, Return, RunStep, project, summary


def make_plan(text: str, path: str = "plan.csv") -> Plan:
    """A plan from `flow|log text|machine` rows, one per line, read by the real plan reader.

    Rows get ids `s1`, `s2`, … in order so that tests can name steps; a header row comes first, so
    row n is on line n + 1 of the file.
    """
    lines = ["request\tlog\tmachine\tid"]
    for number, row in enumerate(text.strip("\n").splitlines(), start=1):
        flow, template, machine = (cell.strip() for cell in row.split("|"))
        lines.append(f"{flow}\t{template}\t{machine}\ts{number}")
    return parse_plan(("\n".join(lines) + "\n").encode(), path)


def letters(machines: str, flow: str = "f") -> Plan:
    """`"A B C A"` → one flow whose step on line n runs on the n-th machine (lower-cased)."""
    return make_plan(
        "\n".join(f"{flow}|Step {m}|{m.lower()}" for m in machines.split())
    )


def hop_tuples(projection, flow: str = "f"):
    return [
        (h.kind, h.source, h.target, h.after, h.at, h.resume_at)
        for h in projection.flow(flow).hops
    ]


def test_worked_example_from_the_design():
    p = project(letters("A B C A B A"))
    assert hop_tuples(p) == [
        ("call", "a", "b", "s1", "s2", "s4"),
        ("call", "b", "c", "s2", "s3", "s4"),
        ("return", "c", "b", "s3", None, "s4"),
        ("return", "b", "a", "s3", None, "s4"),
        ("call", "a", "b", "s4", "s5", "s6"),
        ("return", "b", "a", "s5", None, "s6"),
    ]
    acts = [(a.machine, a.at) for a in p.flow("f").activations]
    assert acts == [("a", None), ("b", "s2"), ("c", "s3"), ("b", "s5")]
    a, b1, c, b2 = p.flow("f").activations

    def ops(act):
        out = []
        for op in act.ops:
            if isinstance(op, RunStep):
                out.append(op.step.id)
            elif isinstance(op, Call):
                out.append(("call", op.target, op.at, op.resume_at))
            else:
                out.append(("return", op.target, op.resume_at))
        return out

    assert ops(a) == [
        "s1",
        ("call", "b", "s2", "s4"),
        "s4",
        ("call", "b", "s5", "s6"),
        "s6",
    ]
    assert ops(b1) == ["s2", ("call", "c", "s3", "s4"), ("return", "a", "s4")]
    assert ops(c) == ["s3", ("return", "b", "s4")]
    assert ops(b2) == ["s5", ("return", "a", "s6")]
    assert [(s.machine, [x.id for x in s.steps]) for s in p.flow("f").segments] == [
        ("a", ["s1"]),
        ("b", ["s2"]),
        ("c", ["s3"]),
        ("a", ["s4"]),
        ("b", ["s5"]),
        ("a", ["s6"]),
    ]


LOGIN = """
login|User attempted login as :username and #password|client
login|Received request to login as :username|server
login|Testing password for :username|server
login|Setting session for :username|server
login|Finish handling user login|server
login|Login successful|client
feed|Fetching feed information|client
feed|Retrieving feed information|server
"""


def test_login_hops_fields_and_machine_views():
    p = project(make_plan(LOGIN, "login.csv"))
    assert hop_tuples(p, "login") == [
        ("call", "client", "server", "s1", "s2", "s6"),
        ("return", "server", "client", "s5", None, "s6"),
    ]
    assert hop_tuples(p, "feed") == [
        ("call", "client", "server", "s7", "s8", None),
        ("return", "server", "client", "s8", None, None),
    ]
    call, back = p.flow("login").hops
    assert call.fields == ("username",) and back.fields == ("username",)
    # the server's steps never show #password: it stays on the client
    assert call.secrets == () and back.secrets == ()
    client, server = p.machines
    assert (client.name, client.inbound, client.flows) == (
        "client",
        False,
        ("login", "feed"),
    )
    assert (server.name, server.inbound, server.flows) == (
        "server",
        True,
        ("login", "feed"),
    )
    assert [(a.flow, a.at) for a in client.entries] == [("login", None), ("feed", None)]
    assert [(a.flow, a.at) for a in server.entries] == [("login", "s2"), ("feed", "s8")]
    assert str(summary(p)) == "login.csv: 2 flows, 8 steps, 2 machines, 4 hops"


def test_uses_sends_a_secret_to_a_machine_whose_code_asks_for_it():
    p = project(make_plan(LOGIN), uses={("login", "server"): ["password", "username"]})
    call, back = p.flow("login").hops
    assert call.secrets == ("password",)
    assert back.secrets == ("password",)  # the server holds it and the client uses it
    entry = p.flow("login").entry
    assert entry.ops[1] == Call("server", "s2", "s6", ("username",), ("password",))
    # uses for another flow changes nothing here
    q = project(make_plan(LOGIN), uses={("feed", "server"): ["password"]})
    assert q.flow("login").hops[0].secrets == ()


def test_index_plan_server_calls_emailservice_and_is_never_called():
    p = project(make_plan("""
index|Received request for the index page from :email|server
index|Queueing welcome email to :email|server
index|Sending welcome email to :email|emailservice
index|Welcome email delivered to :email|emailservice
index|Rendering index page for :email|server
"""))
    assert hop_tuples(p, "index") == [
        ("call", "server", "emailservice", "s2", "s3", "s5"),
        ("return", "emailservice", "server", "s4", None, "s5"),
    ]
    assert [m.inbound for m in p.machines] == [False, True]
    assert str(summary(p)) == "plan.csv: 1 flow, 5 steps, 2 machines, 2 hops"


def test_one_machine_plan_has_no_hops():
    p = project(letters("A A A"))
    assert p.flow("f").hops == ()
    assert [len(s.steps) for s in p.flow("f").segments] == [3]
    (entry,) = p.flow("f").activations
    assert all(isinstance(op, RunStep) for op in entry.ops)
    assert p.machines[0].inbound is False


def test_return_to_an_earlier_machine_unwinds_every_machine_above_it():
    p = project(letters("A B C D B"))
    assert hop_tuples(p) == [
        ("call", "a", "b", "s1", "s2", None),
        ("call", "b", "c", "s2", "s3", "s5"),
        ("call", "c", "d", "s3", "s4", "s5"),
        ("return", "d", "c", "s4", None, "s5"),
        ("return", "c", "b", "s4", None, "s5"),
        ("return", "b", "a", "s5", None, None),
    ]


def test_fields_travel_from_the_first_step_that_shows_them():
    p = project(make_plan("f|Got :x|a\nf|Saw :y|b\nf|Done with :x and :z|a"))
    call, back = p.flow("f").hops
    assert call.fields == ("x",)
    assert back.fields == ("x", "y")


def test_secret_goes_only_to_machines_that_show_it():
    p = project(
        make_plan(
            "f|Typed #pin|a\nf|Relaying|b\nf|Checking #pin|a\nf|Hashing #pin|c\nf|Done|a"
        )
    )
    assert [(h.kind, h.target, h.secrets) for h in p.flow("f").hops] == [
        ("call", "b", ()),
        ("return", "a", ()),
        ("call", "c", ("pin",)),
        ("return", "a", ("pin",)),
    ]


def test_secret_produced_deep_in_a_call_chain_comes_back_through_users():
    p = project(
        make_plan(
            "f|Start|a\nf|Asking|b\nf|Issued #token|c\nf|Stored #token|b\nf|Got #token|a"
        )
    )
    assert [(h.kind, h.target, h.secrets) for h in p.flow("f").hops] == [
        ("call", "b", ()),  # not known yet: c produces it
        ("call", "c", ()),
        ("return", "b", ("token",)),
        ("return", "a", ("token",)),
    ]


def test_secret_only_reachable_through_a_machine_that_does_not_use_it_is_an_error():
    with pytest.raises(Sl2sError) as caught:
        project(make_plan("f|Typed #pin|a\nf|Relaying|b\nf|Checking #pin|c"))
    messages = [str(d) for d in caught.value.diagnostics]
    assert [d.line for d in caught.value.diagnostics] == [2, 4]
    assert messages[0].startswith(
        "plan.csv:2: secret #pin of flow 'f' is known here on 'a'"
    )
    assert "machine 'c' (line 4) through 'b'" in messages[0]
    assert messages[1].startswith("plan.csv:4: secret #pin is needed by machine 'c'")
    assert "through machine 'b', which does not use it" in messages[1]


def test_secret_returned_through_a_non_user_is_an_error_at_both_lines():
    with pytest.raises(Sl2sError) as caught:
        project(make_plan("f|Start|a\nf|Asking|b\nf|Issued #token|c\nf|Got #token|a"))
    assert [d.line for d in caught.value.diagnostics] == [4, 5]
    assert "'b', which does not use it" in str(caught.value)


def test_uses_can_make_a_relay_machine_legal_and_its_absence_an_error():
    plan = make_plan("f|Typed #pin|a\nf|Relaying|b\nf|Checking #pin|c")
    p = project(plan, uses={("f", "b"): {"pin"}})
    assert [h.secrets for h in p.flow("f").hops] == [
        ("pin",),
        ("pin",),
        ("pin",),
        ("pin",),
    ]
    # a machine asking (by uses) for a secret it cannot get is reported too
    with pytest.raises(Sl2sError) as caught:
        project(
            make_plan("f|Typed #pin|a\nf|Relaying|b\nf|Working|c"),
            uses={("f", "c"): {"pin"}},
        )
    assert [d.line for d in caught.value.diagnostics] == [2, 4]


def test_all_flows_problems_are_reported_together():
    text = "f|Typed #pin|a\nf|Relaying|b\nf|Checking #pin|c\ng|Typed #key|a\ng|Relaying|b\ng|Checking #key|c"
    with pytest.raises(Sl2sError) as caught:
        project(make_plan(text))
    assert sorted({d.line for d in caught.value.diagnostics}) == [2, 4, 5, 7]


def test_call_resume_matches_the_return_that_ends_the_callee():
    p = project(letters("A B A C A B"))
    for act in p.flow("f").activations:
        for op in act.ops:
            assert isinstance(op, (RunStep, Call, Return))
    calls = [h for h in p.flow("f").hops if h.kind == "call"]
    assert [(c.target, c.at, c.resume_at) for c in calls] == [
        ("b", "s2", "s3"),
        ("c", "s4", "s5"),
        ("b", "s6", None),
    ]
