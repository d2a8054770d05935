"""The hop protocol's pure parts: signature, freshness, trace context, baggage, envelope, keys."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sl2s.runtime.transport.http import protocol as p

KEY = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"
NOW = 1_800_000_000.0
PATH = "/sl2s/v1/hop/login/received_request"
BODY = b'{"v":1,"flow":"login"}'
IKEY = "c39362336551f52d0000000000000010"


def headers(now=NOW, key=KEY, ikey=IKEY, path=PATH, body=BODY, **extra):
    h = p.request_headers(
        keys=(key,),
        idempotency_key=ikey,
        path=path,
        body=body,
        now=now,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        causation_id="evt-1",
    )
    h.update(extra)
    return h


def test_signature_is_hmac_sha256_over_the_documented_string():
    h = headers()
    stamp = h[p.H_TIMESTAMP]
    assert stamp == "1800000000000"  # integer milliseconds
    text = "\n".join(
        ["v1", stamp, IKEY, "POST", PATH, hashlib.sha256(BODY).hexdigest()]
    )
    expected = hmac.new(KEY, text.encode(), "sha256").hexdigest()
    assert h[p.H_SIGNATURE] == "v1=" + expected


def test_a_signed_hop_verifies_and_returns_its_nonce():
    h = headers()
    assert p.verify((KEY,), h, "POST", PATH, BODY, NOW + 1) == h[p.H_SIGNATURE]


@pytest.mark.parametrize(
    "change",
    [
        dict(body=BODY + b" "),
        dict(path=PATH + "x"),
        dict(method="PUT"),
        dict(ikey="another-key-0123456789"),
        dict(keys=(OTHER,)),
    ],
)
def test_changing_any_signed_part_breaks_the_signature(change):
    h = headers()
    if "ikey" in change:
        h[p.H_IDEMPOTENCY_KEY] = change["ikey"]
    with pytest.raises(p.Rejection) as caught:
        p.verify(
            change.get("keys", (KEY,)),
            h,
            change.get("method", "POST"),
            change.get("path", PATH),
            change.get("body", BODY),
            NOW,
        )
    assert caught.value.status == 401 and caught.value.code == "bad_signature"


def test_a_changed_timestamp_breaks_the_signature():
    h = headers()
    h[p.H_TIMESTAMP] = str(int(h[p.H_TIMESTAMP]) + 1)
    with pytest.raises(p.Rejection, match="bad_signature"):
        p.verify((KEY,), h, "POST", PATH, BODY, NOW)


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_stale_or_future_timestamps_are_refused(skew):
    h = headers(now=NOW + skew)
    with pytest.raises(p.Rejection) as caught:
        p.verify((KEY,), h, "POST", PATH, BODY, NOW)
    assert (caught.value.status, caught.value.code) == (401, "stale")


@pytest.mark.parametrize("skew", [-299, 0, 299])
def test_timestamps_within_the_window_pass(skew):
    p.verify((KEY,), headers(now=NOW + skew), "POST", PATH, BODY, NOW)


def test_unsigned_and_malformed():
    h = headers()
    for missing in (p.H_SIGNATURE, p.H_TIMESTAMP):
        partial = {k: v for k, v in h.items() if k != missing}
        with pytest.raises(p.Rejection) as caught:
            p.verify((KEY,), partial, "POST", PATH, BODY, NOW)
        assert caught.value.code == "unsigned"
    with pytest.raises(p.Rejection, match="bad_timestamp"):
        p.verify((KEY,), {**h, p.H_TIMESTAMP: "12.5"}, "POST", PATH, BODY, NOW)
    with pytest.raises(p.Rejection, match="no_idempotency_key"):
        p.verify(
            (KEY,),
            {k: v for k, v in h.items() if k != p.H_IDEMPOTENCY_KEY},
            "POST",
            PATH,
            BODY,
            NOW,
        )
    with pytest.raises(p.Rejection, match="bad_idempotency_key"):
        p.verify((KEY,), {**h, p.H_IDEMPOTENCY_KEY: "short"}, "POST", PATH, BODY, NOW)
    with pytest.raises(p.Rejection, match="bad_signature"):
        p.verify((KEY,), {**h, p.H_SIGNATURE: "v1=zz\u00e9"}, "POST", PATH, BODY, NOW)


def test_key_rotation_accepts_the_previous_key_and_signs_with_the_first():
    assert p.parse_keys(f"{OTHER.decode()},{KEY.decode()}") == (OTHER, KEY)
    p.verify((OTHER, KEY), headers(key=KEY), "POST", PATH, BODY, NOW)
    assert p.parse_keys("") == () and p.parse_keys(None) == ()
    with pytest.raises(ValueError, match="at least 16"):
        p.parse_keys("short")


def test_unsigned_mode_sends_no_signature():
    h = p.request_headers(
        keys=(),
        idempotency_key=IKEY,
        path=PATH,
        body=BODY,
        now=NOW,
        traceparent=None,
        causation_id=None,
    )
    assert h == {"content-type": "application/json", p.H_IDEMPOTENCY_KEY: IKEY}


def test_traceparent_parsing_follows_w3c():
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert p.parse_traceparent(good) == p.TraceParent("a" * 32, "b" * 16, "01")
    assert p.parse_traceparent(good).header() == good
    for bad in (
        None,
        "",
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",  # all-zero trace id
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",  # all-zero span id
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",  # forbidden version
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",  # upper case
        "00-" + "a" * 31 + "-" + "b" * 16 + "-01",
        good + "-extra",  # version 00 has exactly four parts
    ):
        assert p.parse_traceparent(bad) is None
    # a future version may add parts
    assert p.parse_traceparent("01-" + "a" * 32 + "-" + "b" * 16 + "-01-zz") is not None


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.]{0,15}", fullmatch=True), st.text(max_size=30)
    )
)
def test_baggage_round_trips_any_value(entries):
    assert p.parse_baggage(p.format_baggage(entries)) == entries


def test_baggage_ignores_properties_and_junk():
    assert p.parse_baggage("a=1;prop=x, junk ,b=%2C%3D") == {"a": "1", "b": ",="}


def envelope(**over):
    base = {
        "v": 1,
        "system": "services",
        "flow": "login",
        "source": "client",
        "target": "server",
        "at": "received_request",
        "resume_at": "done",
        "fields": {"username": "ann"},
        "secrets": ["password"],
        "correlation_id": "c" * 32,
        "stack": ["client"],
    }
    base.update(over)
    return base


def test_request_body_moves_header_members_out():
    hop = {
        **envelope(),
        "idempotency_key": IKEY,
        "traceparent": "x",
        "causation_id": "e",
    }
    del hop["v"]
    data = p.decode_object(p.request_body(hop), "hop body")
    assert data == envelope()
    p.check_request(data, "login", "received_request")


@pytest.mark.parametrize(
    "bad, message",
    [
        (envelope(v=2), "version"),
        ({k: v for k, v in envelope().items() if k != "fields"}, "lacks fields"),
        (envelope(flow="other"), "posted to"),
        (envelope(fields=[1]), "'fields'"),
        (envelope(stack="x"), "'stack'"),
        (envelope(source=3), "'source'"),
        (envelope(resume_at=3), "'resume_at'"),
    ],
)
def test_bad_envelopes_are_400(bad, message):
    with pytest.raises(p.Rejection, match=message) as caught:
        p.check_request(bad, "login", "received_request")
    assert caught.value.status == 400


def test_decode_object_rejects_non_objects():
    with pytest.raises(p.Rejection, match="bad_json"):
        p.decode_object(b"{", "hop body")
    with pytest.raises(p.Rejection, match="bad_envelope"):
        p.decode_object(b"[]", "hop body")


def test_hop_paths():
    assert p.hop_path("login", "at_step") == "/sl2s/v1/hop/login/at_step"
    assert p.parse_hop_path("/sl2s/v1/hop/login/at_step") == ("login", "at_step")
    for bad in (
        "/sl2s/v1/hop/login",
        "/sl2s/v1/hop/a/b/c",
        "/sl2s/v1/hop/lo-gin/x",
        "/other",
    ):
        with pytest.raises(p.Rejection) as caught:
            p.parse_hop_path(bad)
        assert caught.value.status == 404
    with pytest.raises(ValueError):
        p.hop_path("../x", "y")


def test_the_transport_body_is_the_documented_envelope():
    from sl2s.runtime.transport import HopRequest
    from sl2s.runtime.transport.http.sender import _body

    hop = {
        **envelope(),
        "idempotency_key": IKEY,
        "traceparent": "00-x",
        "causation_id": "e",
        "deadline": 1_700_000_000_123,  # epoch ms
        "version": "0123456789abcdef",  # the flow's projection digest
    }
    del hop["v"]
    request = HopRequest.from_dict(hop)
    assert (request.deadline, request.version) == (
        1_700_000_000_123,
        "0123456789abcdef",
    )
    assert _body(request, request.deadline, request.version) == p.request_body(
        request.to_dict()
    )


@pytest.mark.parametrize(
    "over, message",
    [
        (envelope(secrets=[{}]), "'secrets' item 0 is an object"),
        (envelope(stack=[{}]), "'stack' item 0 is an object"),
        (envelope(stack=[]), "'stack' must end with the calling machine"),
        (envelope(stack=["server"]), "'stack' must end with the calling machine"),
        (envelope(v=True), "version"),
        (envelope(v=1.0), "version"),
        (envelope(target="server\n"), "'target' is not an identifier"),
        (envelope(correlation_id=""), "'correlation_id'"),
        (envelope(resume_at="not an identifier"), "'resume_at'"),
        ({k: v for k, v in envelope().items() if k != "stack"}, "lacks stack"),
        ({k: v for k, v in envelope().items() if k != "v"}, "no version member 'v'"),
    ],
)
def test_every_member_is_checked_with_a_reason_that_does_not_echo_it(over, message):
    with pytest.raises(p.Rejection, match=message) as caught:
        p.check_request(over, "login", "received_request")
    assert (caught.value.status, caught.value.code) == (400, "bad_envelope")


def test_headers_are_checked_before_the_body_and_name_what_is_wrong():
    now = 1_800_000_000.0
    good = {
        p.H_IDEMPOTENCY_KEY: IKEY,
        p.H_TIMESTAMP: p.timestamp_ms(now),
        p.H_SIGNATURE: "v1=" + "a" * 64,
    }
    assert p.check_signed_headers(good, now) == (
        IKEY,
        good[p.H_TIMESTAMP],
        "v1=" + "a" * 64,
    )
    for change, code in (
        ({p.H_IDEMPOTENCY_KEY: "short"}, "bad_idempotency_key"),
        ({p.H_TIMESTAMP: ""}, "unsigned"),
        ({p.H_TIMESTAMP: "\u00b2" * 3}, "bad_timestamp"),  # '²'.isdigit() is True
        ({p.H_TIMESTAMP: "\u0661" * 13}, "bad_timestamp"),  # Arabic-Indic digits
        ({p.H_SIGNATURE: "v1=" + "A" * 64}, "bad_signature"),
        ({p.H_SIGNATURE: "v1=" + "a" * 63}, "bad_signature"),
    ):
        with pytest.raises(p.Rejection) as caught:
            p.check_signed_headers({**good, **change}, now)
        assert caught.value.code == code, change


def test_a_stale_timestamp_gives_its_offset_with_the_right_sign():
    now = 1_800_000_000.0
    headers = {p.H_IDEMPOTENCY_KEY: IKEY, p.H_SIGNATURE: "v1=" + "a" * 64}
    with pytest.raises(p.Rejection) as past:
        p.check_signed_headers(
            {**headers, p.H_TIMESTAMP: p.timestamp_ms(now - 301)}, now
        )
    with pytest.raises(p.Rejection) as future:
        p.check_signed_headers(
            {**headers, p.H_TIMESTAMP: p.timestamp_ms(now + 301)}, now
        )
    assert "-301 s" in past.value.message and "in the past" in past.value.message
    assert "+301 s" in future.value.message and "in the future" in future.value.message


def test_verify_is_the_header_check_then_the_mac():
    now = 1_800_000_000.0
    key = b"k" * 32
    path = p.hop_path("login", "received_request")
    headers = p.request_headers(
        keys=(key,), idempotency_key=IKEY, path=path, body=b"{}", now=now,
        traceparent=None, causation_id=None,
    )  # fmt: skip
    assert p.verify((key,), headers, "POST", path, b"{}", now) == headers[p.H_SIGNATURE]
    with pytest.raises(p.Rejection, match="bad_signature"):
        p.verify((key,), headers, "POST", path + "?x=1", b"{}", now)
