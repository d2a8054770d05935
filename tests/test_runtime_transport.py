"""The transport plug-in point: hop requests as JSON data, SL2S_TRANSPORT selection, hop failures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eventlog import written

from sl2s.runtime import HopFailed, HopRequest, HopResponse, WiringError
from sl2s.runtime.core import events
from sl2s.runtime.transport import register_transport, select_transport
from sl2s.runtime.transport.local import LocalTransport

TREE = Path(__file__).resolve().parent / "data" / "runtime_tree"


@pytest.fixture
def logs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TREE))
    monkeypatch.setenv("SL2S_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SL2S_SECRETS", raising=False)
    yield tmp_path / "logs"
    events.close_all()


class Recording:
    """Delivers through the local transport and keeps every request and response as JSON text."""

    def __init__(self) -> None:
        self.hops: list[list[dict]] = (
            []
        )  # [request, response] in the order hops are sent
        self.inner = LocalTransport()

    def call(self, request: HopRequest) -> HopResponse:
        hop = [json.loads(json.dumps(request.to_dict()))]
        self.hops.append(hop)
        response = self.inner.call(request)
        hop.append(json.loads(json.dumps(response.to_dict())))
        return response


class Unreachable:
    def call(self, request: HopRequest) -> HopResponse:
        raise HopFailed(
            "connection refused",
            source=request.source,
            target=request.target,
            flow=request.flow,
            at=request.at,
        )


def test_a_registered_transport_is_selected_by_env_and_sees_plain_json_hops(
    logs, monkeypatch
):
    import rt_abc.a

    register_transport("recording", Recording)
    monkeypatch.setenv("SL2S_TRANSPORT", "recording")
    recording = select_transport()
    assert isinstance(recording, Recording) and select_transport() is recording

    rt_abc.a.abc(x=1, key="sekrit", mode="ok")

    requests = [sent for sent, _ in recording.hops]
    assert [(r["source"], r["target"], r["at"], r["resume_at"]) for r in requests] == [
        ("a", "b", "b2", "a4"),
        ("b", "c", "c3", "a4"),
        ("a", "b", "b5", "a6"),
    ]
    assert [r["stack"] for r in requests] == [["a"], ["a", "b"], ["a"]]
    assert len({r["correlation_id"] for r in requests}) == 1
    assert len({r["idempotency_key"] for r in requests}) == 3
    assert all(
        re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", r["traceparent"])
        for r in requests
    )
    # secrets travel only where the wiring lists them; every hop knows which names are secret
    assert (
        requests[0]["fields"]["key"] == "sekrit" and "key" not in requests[1]["fields"]
    )
    assert all("key" in r["secrets"] for r in requests)
    # each hop is caused by the caller's last event; the answer names the callee's last event
    by_id = {e["attributes"]["sl2s.event_id"]: e for e in written(logs)}
    assert by_id[requests[0]["causation_id"]]["attributes"]["sl2s.step"] == "a1"
    assert by_id[requests[1]["causation_id"]]["attributes"]["sl2s.step"] == "b2"
    responses = [answer for _, answer in recording.hops]
    assert [by_id[r["causation_id"]]["attributes"]["sl2s.step"] for r in responses] == [
        "c3",
        "c3",
        "b5",
    ]
    assert [r["resume_at"] for r in responses] == ["a4", "a4", "a6"]
    assert all(r["error"] is None for r in responses)
    assert HopRequest.from_dict(requests[0]).to_dict() == requests[0]


def test_an_unknown_transport_name_is_a_clear_error(logs, monkeypatch):
    import rt_abc.a

    monkeypatch.setenv("SL2S_TRANSPORT", "carrier_pigeon")
    with pytest.raises(
        WiringError,
        match=r"unknown transport 'carrier_pigeon' \(SL2S_TRANSPORT\); known: .*local",
    ):
        rt_abc.a.abc(x=1, key="k", mode="ok")


def test_a_hop_that_cannot_be_delivered_ends_the_flow_with_hop_failed_and_an_event(
    logs, monkeypatch
):
    import rt_abc.a

    register_transport("unreachable", Unreachable)
    monkeypatch.setenv("SL2S_TRANSPORT", "unreachable")
    with pytest.raises(HopFailed) as failed:
        rt_abc.a.abc(x=1, key="k", mode="ok")
    assert (
        str(failed.value)
        == "sl2s: hop a -> b (flow 'abc', at 'b2'): connection refused"
    )
    evts = written(logs)
    assert [e["event_name"] for e in evts] == ["sl2s.step", "sl2s.hop_failed"]
    assert evts[1]["severity_text"] == "ERROR"
    assert (
        evts[1]["attributes"]["sl2s.causation_id"]
        == evts[0]["attributes"]["sl2s.event_id"]
    )


class Misrouting:
    """Delivers, then claims control resumes somewhere else (a machine generated from another plan)."""

    def call(self, request: HopRequest) -> HopResponse:
        response = LocalTransport().call(request)
        response.resume_at = "a6"
        return response


def test_control_coming_back_at_an_unexpected_step_is_a_wiring_error(logs, monkeypatch):
    import rt_abc.a

    register_transport("misrouting", Misrouting)
    monkeypatch.setenv("SL2S_TRANSPORT", "misrouting")
    with pytest.raises(WiringError) as failed:
        rt_abc.a.abc(x=1, key="k", mode="ok")
    # the first hop that notices is c's answer to b (b expects 'a4')
    assert str(failed.value) == (
        "abc.csv:4: machine 'c' handed control back to 'b' at step 'a6', but the wiring of 'b' "
        "expects 'a4' (machines generated from different plans: regenerate)"
    )
    wiring = [e for e in written(logs) if e["event_name"] == "sl2s.wiring_error"]
    assert [e["attributes"]["sl2s.machine"] for e in wiring] == [
        "b"
    ]  # reported once, where seen


def test_a_machine_whose_code_fails_to_import_ends_the_flow_with_hop_failed(
    logs, tmp_path, monkeypatch
):
    import shutil

    shutil.copytree(TREE / "rt_login", tmp_path / "rt_login_broken")
    user = tmp_path / "rt_login_broken" / "server" / "login.py"
    user.write_text(
        user.read_text() + "\nraise ImportError('no such database driver')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import rt_login_broken.client

    with pytest.raises(HopFailed) as failed:
        rt_login_broken.client.login(username="ann", password="pw")
    assert str(failed.value) == (
        "sl2s: hop client -> server (flow 'login', at 'received_request_to_login_as_username'): "
        "machine 'server' could not be loaded: ImportError: no such database driver"
    )
    assert isinstance(failed.value.__cause__, ImportError)
    assert [e["event_name"] for e in written(logs)] == ["sl2s.step", "sl2s.hop_failed"]
