"""Parsing of server messages and of the authorize configuration; client message shapes."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from custom_components.layercode.client.audio import FRAME_BYTES
from custom_components.layercode.client.config import SessionConfig, TurnTrigger, VadConfig
from custom_components.layercode.client.messages import (
    InvalidMessageError,
    ResponseAudio,
    ResponseData,
    ResponseEnd,
    ResponseText,
    ResponseTextDelta,
    TurnEnd,
    TurnStart,
    UserTranscript,
    UserTranscriptDelta,
    UserTranscriptInterimDelta,
    client_audio,
    client_audio_frame,
    client_ready,
    encode_client_message,
    parse_server_message,
    replay_finished,
    response_data,
    response_text,
    turn_trigger,
    vad_event,
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "turn.start", "role": "user", "turn_id": "t1"}, TurnStart("user", "t1")),
        ({"type": "turn.start", "role": "assistant"}, TurnStart("assistant", None)),
        ({"type": "turn.end", "role": "assistant", "turn_id": 7}, TurnEnd("assistant", "7")),
        (
            {"type": "user.transcript.interim_delta", "content": "he", "delta_counter": 0},
            UserTranscriptInterimDelta("he", None, 0),
        ),
        (
            {
                "type": "user.transcript.delta",
                "content": "hello",
                "turn_id": "u",
                "delta_counter": 1,
            },
            UserTranscriptDelta("hello", "u", 1),
        ),
        (
            {"type": "user.transcript", "content": "hello", "turn_id": "u"},
            UserTranscript("hello", "u"),
        ),
        ({"type": "response.text", "content": "Hi.", "turn_id": "a"}, ResponseText("Hi.", "a")),
        ({"type": "response.text.delta", "content": "H"}, ResponseTextDelta("H", None)),
        (
            {"type": "response.data", "content": {"x": [1]}, "turn_id": "a"},
            ResponseData({"x": [1]}, "a"),
        ),
        ({"type": "response.end", "turn_id": "a"}, ResponseEnd("a")),
        ({"type": "response.end"}, ResponseEnd(None)),
    ],
)
def test_server_messages_parse(frame: dict[str, object], expected: object) -> None:
    """Every server message type of PROTOCOL.md, with and without turn ids."""
    assert parse_server_message(json.dumps(frame)) == expected


def test_response_audio_decodes_base64() -> None:
    """Audio is decoded; an odd trailing byte is dropped; empty content is empty audio."""
    pcm = bytes(range(7))
    frame = {"type": "response.audio", "content": base64.b64encode(pcm).decode(), "delta_id": 3}
    message = parse_server_message(json.dumps(frame))
    assert message == ResponseAudio(pcm[:6], None, 3)
    empty = parse_server_message('{"type": "response.audio", "content": ""}')
    assert isinstance(empty, ResponseAudio)
    assert empty.pcm == b""


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\xff\xfe",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": 5}',
        '{"type": "response.text"}',
        '{"type": "response.text", "content": 3}',
        '{"type": "turn.start"}',
        '{"type": "response.audio", "content": "***"}',
        '{"type": "response.audio", "content": 12}',
        '{"type": "response.end", "turn_id": {"a": 1}}',
    ],
)
def test_bad_frames_raise_invalid_message(raw: str | bytes) -> None:
    """Garbage and missing or mistyped fields are errors the session logs and survives."""
    with pytest.raises(InvalidMessageError):
        parse_server_message(raw)


@pytest.mark.parametrize("kind", ["speech_send_tracking", "speech_end_tracking", "something.new"])
def test_unknown_types_are_none(kind: str) -> None:
    """Unknown message types seen in the wild are ignored, not errors."""
    assert parse_server_message(json.dumps({"type": kind, "x": 1})) is None


def test_client_messages_match_the_browser_sdk() -> None:
    """Field for field what @layercode/js-sdk 2.8.10 sends."""
    assert client_audio(b"\x01\x02") == {"type": "client.audio", "content": "AQI="}
    assert vad_event("vad_start") == {"type": "vad_events", "event": "vad_start"}
    assert turn_trigger(start=True) == {"type": "trigger.turn.start", "role": "user"}
    assert turn_trigger(start=False) == {"type": "trigger.turn.end", "role": "user"}
    assert replay_finished() == {
        "type": "trigger.response.audio.replay_finished",
        "reason": "completed",
    }
    assert response_text("hi") == {"type": "client.response.text", "content": "hi"}
    assert response_data({"a": 1}) == {"type": "client.response.data", "data": {"a": 1}}


def compact(message: dict[str, object]) -> str:
    """How the browser SDK's JSON.stringify writes a message (and the session did)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def test_client_audio_frame_is_the_compact_json() -> None:
    """The directly built `client.audio` text is byte for byte json.dumps of the message."""
    rng = np.random.default_rng(3)
    sizes = [0, 1, 2, 3, 4, 5, 1791, FRAME_BYTES, *rng.integers(0, 4000, 200).tolist()]
    for size in sizes:
        pcm = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        frame = client_audio_frame(pcm)
        assert frame == compact(client_audio(pcm))
        assert frame.encode() == compact(client_audio(pcm)).encode("utf-8")
        assert json.loads(frame) == client_audio(pcm)
    assert client_audio_frame(bytes(range(256)) * 3) == compact(client_audio(bytes(range(256)) * 3))


def test_encoded_client_messages_are_compact_utf8_json() -> None:
    """Every client message goes out as compact JSON with text not escaped."""
    for message in (
        client_ready(),
        client_audio(b"\x01\x02"),
        vad_event("vad_end"),
        turn_trigger(start=True),
        replay_finished(),
        response_text('Grüße, "Welt" \\ 👋\n'),
        response_data({"ä": [1, 2.5, None, True], "nested": {"x": "ü"}}),
    ):
        assert encode_client_message(message) == compact(message)
    assert (
        encode_client_message(response_text("é")) == '{"type":"client.response.text","content":"é"}'
    )


def test_missing_config_means_automatic_defaults() -> None:
    """No config: automatic turn-taking, interruption on, the VAD defaults of PROTOCOL.md."""
    config = SessionConfig.from_json(None)
    assert config.trigger is TurnTrigger.AUTOMATIC
    assert config.can_interrupt is True
    assert config.vad == VadConfig()
    assert config.vad.buffer_frames == 10
    assert config.vad.positive_speech_threshold == 0.15


def test_config_is_parsed_and_bad_values_fall_back() -> None:
    """Known fields are read; mistyped ones and unknown triggers take the defaults."""
    config = SessionConfig.from_json(
        {
            "transcription": {"trigger": "push_to_talk", "can_interrupt": False},
            "vad": {"buffer_frames": 4, "gate_audio": "yes", "negative_speech_threshold": 1},
        }
    )
    assert config.trigger is TurnTrigger.PUSH_TO_TALK
    assert config.can_interrupt is False
    assert config.vad.buffer_frames == 4
    assert config.vad.gate_audio is True
    assert config.vad.negative_speech_threshold == 1.0
    odd = SessionConfig.from_json({"transcription": {"trigger": "telepathy"}, "vad": []})
    assert odd.trigger is TurnTrigger.AUTOMATIC
    assert odd.vad == VadConfig()
    assert SessionConfig.from_json(config.to_json()) == config


def test_trigger_override() -> None:
    """The integration's turn-taking option overrides the agent's own, None keeps it."""
    config = SessionConfig()
    assert config.with_trigger(None) is config
    assert config.with_trigger(TurnTrigger.PUSH_TO_TALK).trigger is TurnTrigger.PUSH_TO_TALK
