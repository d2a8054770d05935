"""The hop server and client against real uvicorn servers on 127.0.0.1 (threads in this process).

The handlers here are plain functions standing in for `Machine.handle` (same signature), so each
test can count how often a hop really ran; test_http_system.py runs generated machines.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from sl2s.runtime.transport import HopRequest, HopResponse
from sl2s.runtime.transport.http import protocol as p
from sl2s.runtime.transport.http.client import HopClient, HopUnreachable
from sl2s.runtime.transport.http.server import IdempotencyStore, create_app

sys.path.insert(0, str(Path(__file__).parent / "data" / "http"))
from harness import ThreadServer, get, loopback_socket, raw_post  # noqa: E402

KEY = b"k" * 32
PATH = p.hop_path("login", "check")


def hop_dict(**over) -> dict:
    base = HopRequest(
        system="services",
        flow="login",
        source="client",
        target="server",
        at="check",
        resume_at="done",
        fields={"username": "ann"},
        secrets=["password"],
        correlation_id="c" * 32,
        causation_id="evt-before-hop",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        idempotency_key="k0000000000000000000001",
        stack=["client"],
    ).to_dict()
    base.update(over)
    return base


class Recorder:
    """A handler that records what it was asked and can be told to wait or fail."""

    def __init__(self) -> None:
        self.requests: list[HopRequest] = []
        self.gate: threading.Event | None = None
        self.error: dict | None = None
        self.crash = False

    def __call__(self, request: HopRequest) -> HopResponse:
        self.requests.append(request)
        if self.gate is not None:
            self.gate.wait(10)
        if self.crash:
            raise RuntimeError("handler bug")
        fields = {**request.fields, "seen": len(self.requests)}
        return HopResponse("done", fields, [], "evt-from-server", self.error)


@pytest.fixture
def served():
    handler = Recorder()
    with ThreadServer(
        create_app(handler, machine="server", keys=(KEY,), max_body=4096)
    ) as server:
        yield server, handler


def signed(
    body: bytes, ikey: str, now: float | None = None, key: bytes = KEY, path: str = PATH
) -> dict:
    return p.request_headers(
        keys=(key,),
        idempotency_key=ikey,
        path=path,
        body=body,
        now=time.time() if now is None else now,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        causation_id="evt-before-hop",
    )


def body_of(**over) -> bytes:
    return p.request_body(hop_dict(**over))


def test_health(served):
    server, _ = served
    status, data = get(server.url, p.HEALTH_PATH)
    assert status == 200 and orjson.loads(data) == {"status": "ok", "machine": "server"}


def test_a_signed_hop_runs_once_and_carries_trace_and_causation(served):
    server, handler = served
    body = body_of()
    status, headers, data = raw_post(
        server.url, PATH, body, signed(body, "key-aaaaaaaaaaaaaaaa")
    )
    assert status == 200 and headers[p.H_OUTCOME] == "returned"
    answer = orjson.loads(data)
    assert answer["fields"] == {"username": "ann", "seen": 1}
    assert answer["causation_id"] == "evt-from-server" and answer["resume_at"] == "done"
    (request,) = handler.requests
    assert request.causation_id == "evt-before-hop"
    assert request.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert request.idempotency_key == "key-aaaaaaaaaaaaaaaa"
    assert request.stack == ["client"] and request.secrets == ["password"]


def test_unsigned_forged_and_stale_hops_are_refused_without_running(served):
    server, handler = served
    body = body_of()
    unsigned = {
        "content-type": "application/json",
        p.H_IDEMPOTENCY_KEY: "key-bbbbbbbbbbbbbbbb",
    }
    forged = signed(body, "key-cccccccccccccccc", key=b"x" * 32)
    stale = signed(body, "key-dddddddddddddddd", now=time.time() - 301)
    tampered = signed(body, "key-eeeeeeeeeeeeeeee")
    for headers, sent, code in (
        (unsigned, body, "unsigned"),
        (forged, body, "bad_signature"),
        (stale, body, "stale"),
        (tampered, body.replace(b"ann", b"eve"), "bad_signature"),
    ):
        status, out_headers, data = raw_post(server.url, PATH, sent, headers)
        assert (status, orjson.loads(data)["code"]) == (401, code)
        assert out_headers[p.H_OUTCOME] == "rejected"
    assert handler.requests == []


def test_a_replayed_hop_is_refused_and_a_retry_gets_the_stored_answer(served):
    server, handler = served
    body = body_of()
    first = signed(body, "key-ffffffffffffffff")
    assert raw_post(server.url, PATH, body, first)[0] == 200
    status, _, data = raw_post(
        server.url, PATH, body, first
    )  # the very same bytes again
    assert (status, orjson.loads(data)["code"]) == (401, "replayed")
    time.sleep(0.002)
    retry = signed(
        body, "key-ffffffffffffffff"
    )  # the client's retry: same key, new signature
    status, headers, data = raw_post(server.url, PATH, body, retry)
    assert status == 200 and headers["sl2s-replayed"] == "true"
    assert orjson.loads(data)["fields"]["seen"] == 1
    assert len(handler.requests) == 1


def test_same_key_with_another_body_is_422(served):
    server, handler = served
    body = body_of()
    assert (
        raw_post(server.url, PATH, body, signed(body, "key-gggggggggggggggg"))[0] == 200
    )
    other = body_of(fields={"username": "eve"})
    status, _, data = raw_post(
        server.url, PATH, other, signed(other, "key-gggggggggggggggg")
    )
    assert (status, orjson.loads(data)["code"]) == (422, "key_reused")
    assert len(handler.requests) == 1


def test_a_retry_while_the_hop_runs_is_409_with_retry_after(served):
    server, handler = served
    handler.gate = threading.Event()
    body = body_of()
    results = []
    first = threading.Thread(
        target=lambda: results.append(
            raw_post(server.url, PATH, body, signed(body, "key-hhhhhhhhhhhhhhhh"))
        )
    )
    first.start()
    while not handler.requests:
        time.sleep(0.01)
    status, headers, data = raw_post(
        server.url, PATH, body, signed(body, "key-hhhhhhhhhhhhhhhh")
    )
    assert (status, orjson.loads(data)["code"], headers["retry-after"]) == (
        409,
        "in_progress",
        "1",
    )
    handler.gate.set()
    first.join(10)
    assert results[0][0] == 200 and len(handler.requests) == 1


def test_oversized_bodies_are_413_declared_or_streamed(served):
    server, handler = served
    big = b"x" * 5000
    status, _, data = raw_post(
        server.url, PATH, big, signed(big, "key-iiiiiiiiiiiiiiii")
    )
    assert (status, orjson.loads(data)["code"]) == (413, "too_large")
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "POST",
        PATH,
        body=iter([b"x" * 3000, b"x" * 3000]),
        headers=signed(big, "key-jjjjjjjjjjjjjjjj"),
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert (
        response.status == 413 and orjson.loads(response.read())["code"] == "too_large"
    )
    conn.close()
    assert handler.requests == []


def test_wrong_machine_path_and_method(served):
    server, handler = served
    body = body_of(target="other")
    status, _, data = raw_post(
        server.url, PATH, body, signed(body, "key-kkkkkkkkkkkkkkkk")
    )
    assert (status, orjson.loads(data)["code"]) == (421, "wrong_machine")
    body = body_of()
    status, _, _ = raw_post(
        server.url, "/sl2s/v1/hop/login", body, signed(body, "key-llllllllllllllll")
    )
    assert status == 404
    mismatch = p.hop_path("login", "elsewhere")
    status, _, data = raw_post(
        server.url, mismatch, body, signed(body, "key-mmmmmmmmmmmmmmmm", path=mismatch)
    )
    assert (status, orjson.loads(data)["code"]) == (400, "bad_envelope")
    assert get(server.url, PATH)[0] == 405
    assert handler.requests == []


def test_failures_inside_the_flow_come_back_as_500_failed_and_are_stored(served):
    server, handler = served
    handler.error = {
        "class": "StepFailed",
        "machine": "server",
        "step": "check",
        "message": "boom",
    }
    body = body_of()
    status, headers, data = raw_post(
        server.url, PATH, body, signed(body, "key-nnnnnnnnnnnnnnnn")
    )
    assert status == 500 and headers[p.H_OUTCOME] == "failed"
    assert orjson.loads(data)["error"]["step"] == "check"
    time.sleep(0.002)
    status, headers, _ = raw_post(
        server.url, PATH, body, signed(body, "key-nnnnnnnnnnnnnnnn")
    )
    assert (
        status == 500
        and headers["sl2s-replayed"] == "true"
        and len(handler.requests) == 1
    )


def test_a_crashing_handler_answers_500_internal(served):
    server, handler = served
    handler.crash = True
    body = body_of()
    status, headers, data = raw_post(
        server.url, PATH, body, signed(body, "key-oooooooooooooooo")
    )
    assert (status, headers[p.H_OUTCOME], orjson.loads(data)["code"]) == (
        500,
        "rejected",
        "internal",
    )


def test_without_a_key_unsigned_hops_are_accepted():
    handler = Recorder()
    with ThreadServer(create_app(handler, machine="server")) as server:
        body = body_of()
        headers = {
            "content-type": "application/json",
            p.H_IDEMPOTENCY_KEY: "key-pppppppppppppppp",
        }
        assert raw_post(server.url, PATH, body, headers)[0] == 200
        assert (
            raw_post(server.url, PATH, body, {"content-type": "application/json"})[0]
            == 400
        )


# -- the client --------------------------------------------------------------------------------


def post(client: HopClient, url: str, body: bytes, ikey: str, key: bytes = KEY):
    return client.post(
        target="server",
        base_url=url,
        path=PATH,
        body=body,
        idempotency_key=ikey,
        headers_for=lambda now: signed(body, ikey, now=now, key=key),
    )


def test_client_retries_connection_failures_then_names_target_url_and_key():
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there now
    sleeps: list[float] = []
    client = HopClient(attempts=3, timeout=2, sleep=sleeps.append, jitter=lambda: 1.0)
    with pytest.raises(HopUnreachable) as caught:
        post(client, url, body_of(), "key-qqqqqqqqqqqqqqqq")
    error = caught.value
    assert error.attempts == 3 and error.last == "connection refused"
    assert (
        url in str(error)
        and "key-qqqqqqqqqqqqqqqq" in str(error)
        and "'server'" in str(error)
    )
    assert sleeps == [0.05, 0.1]  # exponential backoff (jitter pinned to its maximum)


def test_client_retries_503_and_timeouts_and_the_hop_runs_once(served):
    server, handler = served
    # a timeout: the first attempt gives up while the hop runs; the retry sees 409, then the answer
    handler.gate = threading.Event()
    threading.Timer(0.6, handler.gate.set).start()
    client = HopClient(attempts=5, timeout=0.3, backoff_base=0.05)
    response = post(client, server.url, body_of(), "key-rrrrrrrrrrrrrrrr")
    assert response.status == 200 and response.attempts >= 2
    assert (
        orjson.loads(response.body)["fields"]["seen"] == 1
        and len(handler.requests) == 1
    )

    calls = []

    async def flaky(request):
        calls.append(1)
        return Response(b"{}", status_code=503 if len(calls) < 3 else 200)

    app = Starlette(routes=[Route(PATH, flaky, methods=["POST"])])
    with ThreadServer(app) as flaky_server:
        response = post(
            HopClient(attempts=4), flaky_server.url, b"{}", "key-ssssssssssssssss"
        )
        assert (response.status, response.attempts, len(calls)) == (200, 3, 3)


def test_client_does_not_retry_refusals(served):
    server, handler = served
    client = HopClient(attempts=4)
    response = post(
        client, server.url, body_of(), "key-tttttttttttttttt", key=b"w" * 32
    )
    assert (response.status, response.attempts) == (401, 1)


def test_client_survives_the_server_closing_idle_connections():
    handler = Recorder()
    app = create_app(handler, machine="server", keys=(KEY,))
    with ThreadServer(app, timeout_keep_alive=1) as server:
        # the client keeps connections longer than this server does: the reused connection is
        # dead, and the client must reconnect at once without losing the hop
        client = HopClient(idle_seconds=30)
        assert post(client, server.url, body_of(), "key-uuuuuuuuuuuuuuuu").status == 200
        time.sleep(1.6)
        response = post(client, server.url, body_of(), "key-vvvvvvvvvvvvvvvv")
        assert response.status == 200 and response.attempts == 1
        assert len(handler.requests) == 2


def test_store_keeps_keys_for_the_window_and_tombstones_evicted_answers():
    store = IdempotencyStore(retention=10, max_bytes=10)
    a = store.begin("a", "da", "n1", now=0)
    store.finish(a, 200, {}, b"123456")
    b = store.begin("b", "db", "n2", now=1)
    store.finish(b, 200, {}, b"123456")
    assert store.get("a", now=2).body is None  # evicted for space, key kept
    assert store.get("b", now=2).body == b"123456"
    assert store.get("a", now=10.5) is None and store.get("b", now=10.5) is not None
    assert len(store) == 1


def test_an_evicted_answer_is_410_not_a_second_run():
    handler = Recorder()
    store = IdempotencyStore(retention=660, max_bytes=1)
    with ThreadServer(
        create_app(handler, machine="server", keys=(KEY,), store=store)
    ) as server:
        one, two = body_of(), body_of(fields={"username": "bob"})
        assert (
            raw_post(server.url, PATH, one, signed(one, "key-wwwwwwwwwwwwwwww"))[0]
            == 200
        )
        assert (
            raw_post(server.url, PATH, two, signed(two, "key-xxxxxxxxxxxxxxxx"))[0]
            == 200
        )
        time.sleep(0.002)
        status, _, data = raw_post(
            server.url, PATH, one, signed(one, "key-wwwwwwwwwwwwwwww")
        )
        assert (status, orjson.loads(data)["code"]) == (410, "forgotten")
        assert len(handler.requests) == 2
