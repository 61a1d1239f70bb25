"""The session configuration an authorize endpoint returns, with PROTOCOL.md's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TurnTrigger(StrEnum):
    """How the user's turn is delimited on the wire."""

    AUTOMATIC = "automatic"
    """`vad_events` vad_start / vad_end around speech."""
    PUSH_TO_TALK = "push_to_talk"
    """`trigger.turn.start` / `trigger.turn.end` around speech."""


def _bool(obj: dict[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key)
    return value if isinstance(value, bool) else default


def _int(obj: dict[str, Any], key: str, default: int) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(obj: dict[str, Any], key: str, default: float) -> float:
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default


def _str(obj: dict[str, Any], key: str, default: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else default


@dataclass(frozen=True, slots=True)
class VadConfig:
    """`config.vad`: how the official SDK gates audio around speech."""

    enabled: bool = True
    gate_audio: bool = True
    buffer_frames: int = 10
    model: str = "v5"
    positive_speech_threshold: float = 0.15
    negative_speech_threshold: float = 0.05
    redemption_frames: int = 4
    min_speech_frames: int = 2
    pre_speech_pad_frames: int = 0
    frame_samples: int = 512

    @classmethod
    def from_json(cls, obj: object) -> VadConfig:
        """Parse `config.vad`; anything missing or mistyped takes the default."""
        if not isinstance(obj, dict):
            return cls()
        d = cls()
        return cls(
            enabled=_bool(obj, "enabled", d.enabled),
            gate_audio=_bool(obj, "gate_audio", d.gate_audio),
            buffer_frames=_int(obj, "buffer_frames", d.buffer_frames),
            model=_str(obj, "model", d.model),
            positive_speech_threshold=_float(
                obj, "positive_speech_threshold", d.positive_speech_threshold
            ),
            negative_speech_threshold=_float(
                obj, "negative_speech_threshold", d.negative_speech_threshold
            ),
            redemption_frames=_int(obj, "redemption_frames", d.redemption_frames),
            min_speech_frames=_int(obj, "min_speech_frames", d.min_speech_frames),
            pre_speech_pad_frames=_int(obj, "pre_speech_pad_frames", d.pre_speech_pad_frames),
            frame_samples=_int(obj, "frame_samples", d.frame_samples),
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form, as a server sends it."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """`config`: turn-taking of the session."""

    trigger: TurnTrigger = TurnTrigger.AUTOMATIC
    can_interrupt: bool = True
    automatic: bool = True
    vad: VadConfig = field(default_factory=VadConfig)

    @classmethod
    def from_json(cls, obj: object) -> SessionConfig:
        """Parse `config`; a missing one means automatic turn-taking with interruption."""
        if not isinstance(obj, dict):
            return cls()
        transcription = obj.get("transcription")
        if not isinstance(transcription, dict):
            transcription = {}
        try:
            trigger = TurnTrigger(transcription.get("trigger", TurnTrigger.AUTOMATIC))
        except ValueError:
            trigger = TurnTrigger.AUTOMATIC
        return cls(
            trigger=trigger,
            can_interrupt=_bool(transcription, "can_interrupt", True),
            automatic=_bool(transcription, "automatic", True),
            vad=VadConfig.from_json(obj.get("vad")),
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form, as a server sends it."""
        return {
            "transcription": {
                "trigger": self.trigger.value,
                "can_interrupt": self.can_interrupt,
                "automatic": self.automatic,
            },
            "vad": self.vad.to_json(),
        }

    def with_trigger(self, trigger: TurnTrigger | None) -> SessionConfig:
        """This config with the trigger overridden (None keeps the agent's own)."""
        if trigger is None or trigger is self.trigger:
            return self
        return SessionConfig(trigger, self.can_interrupt, self.automatic, self.vad)


@dataclass(frozen=True, slots=True)
class Authorization:
    """A successful authorize reply. The session key is a secret and is kept out of repr."""

    client_session_key: str = field(repr=False)
    conversation_id: str
    config: SessionConfig
