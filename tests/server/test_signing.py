"""Webhook signatures: PROTOCOL.md's test vector, and what must not verify."""

from __future__ import annotations

from local_agent_server import encode_body, sign, verify

SECRET = "whsec_test_secret"
TIMESTAMP = 1700000000
BODY = (
    '{"type":"message","session_id":"sess_abc123","conversation_id":"conv_xyz789",'
    '"turn_id":"turn_xyz123","text":"Héllo, how are you?"}'
).encode()
HEADER = "t=1700000000,v1=f8c62f49e4bd412841117462b4c68e3632d6f52b2d17a854e9629d778d241f5e"


def test_test_vector() -> None:
    assert sign(SECRET, BODY, TIMESTAMP) == HEADER


def test_body_encoding_is_compact_and_keeps_non_ascii() -> None:
    payload = {
        "type": "message",
        "session_id": "sess_abc123",
        "conversation_id": "conv_xyz789",
        "turn_id": "turn_xyz123",
        "text": "Héllo, how are you?",
    }
    assert encode_body(payload) == BODY


def test_whole_number_floats_are_written_as_javascript_does() -> None:
    """JSON.stringify(JSON.parse(body)) gives the same bytes: 1.0 is `1` there.

    session.end carries durations in seconds that are often whole (0.0 with no voice turn).
    """
    payload = {"a": 1.0, "b": 0.0, "c": 2.5, "d": [3.0, {"e": -0.0, "f": 0.125}], "g": True}
    assert encode_body(payload) == b'{"a":1,"b":0,"c":2.5,"d":[3,{"e":0,"f":0.125}],"g":true}'


def test_verify_accepts_the_vector() -> None:
    assert verify(SECRET, BODY, HEADER, now=TIMESTAMP + 299)
    assert verify(SECRET, BODY, HEADER.replace(",", ", "), now=TIMESTAMP)


def test_verify_rejects() -> None:
    assert not verify(SECRET, BODY.replace(b"are", b"were"), HEADER, now=TIMESTAMP)
    assert not verify("whsec_other", BODY, HEADER, now=TIMESTAMP)
    assert not verify(SECRET, BODY, HEADER, now=TIMESTAMP + 301)
    assert not verify(SECRET, BODY, HEADER, now=TIMESTAMP - 301)
    assert not verify(SECRET, BODY, None, now=TIMESTAMP)
    assert not verify(SECRET, BODY, "", now=TIMESTAMP)
    assert not verify(SECRET, BODY, "v1=abc", now=TIMESTAMP)
    assert not verify(SECRET, BODY, "t=soon,v1=abc", now=TIMESTAMP)
    assert not verify(SECRET, BODY, "t=1700000000", now=TIMESTAMP)
