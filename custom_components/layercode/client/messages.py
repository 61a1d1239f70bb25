"""The WebSocket messages of the Layercode protocol, typed.

Server messages are parsed into frozen dataclasses; client messages are built as the JSON
objects the official browser SDK sends, field for field.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
import json
from typing import Any, Literal

from .errors import InvalidResponseError


class InvalidMessageError(InvalidResponseError):
    """A WebSocket frame that is not a well-formed protocol message."""


@dataclass(frozen=True, slots=True)
class TurnStart:
    """A turn begins. Role `user` while the agent speaks is a barge-in."""

    role: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """A turn ended."""

    role: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserTranscriptInterimDelta:
    """Partial user text, replaced by later interims with the same counter."""

    content: str
    turn_id: str | None = None
    delta_counter: int | None = None


@dataclass(frozen=True, slots=True)
class UserTranscriptDelta:
    """A stabilised piece of user text for its counter."""

    content: str
    turn_id: str | None = None
    delta_counter: int | None = None


@dataclass(frozen=True, slots=True)
class UserTranscript:
    """The final text of a user turn."""

    content: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseText:
    """Agent text; several per turn are appended."""

    content: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseTextDelta:
    """A streamed piece of agent text."""

    content: str
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseAudio:
    """Agent speech: 16 kHz 16-bit mono PCM, decoded."""

    pcm: bytes = field(repr=False)
    turn_id: str | None = None
    delta_id: str | int | None = None


@dataclass(frozen=True, slots=True)
class ResponseData:
    """A JSON value from the agent's backend."""

    content: Any
    turn_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseEnd:
    """The backend finished this agent turn."""

    turn_id: str | None = None


type ServerMessage = (
    TurnStart
    | TurnEnd
    | UserTranscriptInterimDelta
    | UserTranscriptDelta
    | UserTranscript
    | ResponseText
    | ResponseTextDelta
    | ResponseAudio
    | ResponseData
    | ResponseEnd
)


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidMessageError(f"{obj.get('type')} without a text {key!r}")
    return value


def _optional_id(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidMessageError(f"{obj.get('type')} with a bad {key!r}")
    return str(value)


def _counter(obj: dict[str, Any]) -> int | None:
    value = obj.get("delta_counter")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _audio(obj: dict[str, Any]) -> ResponseAudio:
    content = obj.get("content") or ""
    if not isinstance(content, str):
        raise InvalidMessageError("response.audio with non-text content")
    try:
        pcm = base64.b64decode(content, validate=True)
    except binascii.Error as err:
        raise InvalidMessageError("response.audio content is not base64") from err
    delta_id = obj.get("delta_id")
    return ResponseAudio(
        pcm=pcm[: len(pcm) - len(pcm) % 2],
        turn_id=_optional_id(obj, "turn_id"),
        delta_id=delta_id if isinstance(delta_id, (str, int)) else None,
    )


def parse_server_message(raw: str | bytes) -> ServerMessage | None:
    """Parse one frame. Returns None for a well-formed message of an unknown type.

    Raises InvalidMessageError for anything that is not a JSON object with a string `type`
    and the fields that type needs.
    """
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidMessageError("frame is not JSON") from err
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise InvalidMessageError("frame is not a JSON object with a type")
    kind: str = obj["type"]
    turn_id = _optional_id(obj, "turn_id")
    match kind:
        case "turn.start":
            return TurnStart(_text(obj, "role"), turn_id)
        case "turn.end":
            return TurnEnd(_text(obj, "role"), turn_id)
        case "user.transcript.interim_delta":
            return UserTranscriptInterimDelta(_text(obj, "content"), turn_id, _counter(obj))
        case "user.transcript.delta":
            return UserTranscriptDelta(_text(obj, "content"), turn_id, _counter(obj))
        case "user.transcript":
            return UserTranscript(_text(obj, "content"), turn_id)
        case "response.text":
            return ResponseText(_text(obj, "content"), turn_id)
        case "response.text.delta":
            return ResponseTextDelta(_text(obj, "content"), turn_id)
        case "response.audio":
            return _audio(obj)
        case "response.data":
            return ResponseData(obj.get("content"), turn_id)
        case "response.end":
            return ResponseEnd(turn_id)
    return None


type ClientMessage = dict[str, Any]
type VadEvent = Literal["vad_start", "vad_end", "vad_model_failed"]


def client_ready() -> ClientMessage:
    """Sent once per connection when the client is ready to stream."""
    return {"type": "client.ready"}


def client_audio(pcm: bytes) -> ClientMessage:
    """8 kHz 16-bit mono PCM from the microphone."""
    return {"type": "client.audio", "content": base64.b64encode(pcm).decode("ascii")}


def client_audio_frame(pcm: bytes) -> str:
    """`encode_client_message(client_audio(pcm))`, built directly for the hot path.

    Base64 text is ASCII without quotes or backslashes, so it needs no JSON escaping.
    """
    return _CLIENT_AUDIO_PREFIX + base64.b64encode(pcm).decode("ascii") + '"}'


_CLIENT_AUDIO_PREFIX = '{"type":"client.audio","content":"'


def encode_client_message(message: ClientMessage) -> str:
    """The frame text of a client message: compact JSON, text as UTF-8, not escaped.

    That is how the browser SDK's `JSON.stringify` sends it.
    """
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def vad_event(event: VadEvent) -> ClientMessage:
    """Local speech start or end, in automatic turn-taking."""
    return {"type": "vad_events", "event": event}


def turn_trigger(start: bool) -> ClientMessage:
    """Push-to-talk press (start) or release."""
    return {"type": "trigger.turn.start" if start else "trigger.turn.end", "role": "user"}


def replay_finished() -> ClientMessage:
    """The agent's audio has been played out (the browser SDK sends no turn id)."""
    return {"type": "trigger.response.audio.replay_finished", "reason": "completed"}


def response_text(text: str) -> ClientMessage:
    """Typed user input; ends the user turn."""
    return {"type": "client.response.text", "content": text}


def response_data(data: dict[str, Any]) -> ClientMessage:
    """A side-channel JSON object for the agent's backend."""
    return {"type": "client.response.data", "data": data}
