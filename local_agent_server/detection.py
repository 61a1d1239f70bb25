"""Where user turns begin and end, from what a client actually sends.

Three detectors, one per way clients behave:
- push-to-talk: `trigger.turn.start` .. `trigger.turn.end`; everything else is ignored (the
  official browser SDK runs its VAD and sends `vad_events` in this mode too).
- automatic, client VAD: `vad_events` `vad_start` .. `vad_end`. A `vad_end` without a start
  (the SDK loses the first `vad_start` when speech begins before the socket opens) still makes
  a turn of the audio received since the last one.
- automatic, energy: for a client that streams audio without `vad_events` (the SDK does this
  when its VAD fails to load) or after `vad_model_failed`: speech starts when a few frames in
  a row are loud and ends after a stretch of quiet audio. Time here is audio time, not wall
  time, so tests are deterministic.

A turn's audio is every frame the client sent inside it: from the start trigger or `vad_start`
(the SDK's pre-roll comes after it), or from the first loud frame, to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
import logging
from typing import get_args

from .layercode_client import (
    SAMPLE_WIDTH,
    WIRE_INPUT_RATE,
    TurnTrigger,
    VadEvent,
    duration_seconds,
    rms_level,
)

_LOGGER = logging.getLogger(__name__)

_MAX_PENDING_BYTES = 30 * WIRE_INPUT_RATE * SAMPLE_WIDTH
"""Audio kept between turns for a lone `vad_end`: the last 30 s."""


@dataclass(frozen=True, slots=True)
class EnergySettings:
    """Energy-based detection, for clients that send no `vad_events`."""

    threshold: float = 0.02
    """Frame RMS, as a fraction of full scale, above which a frame counts as speech."""
    onset_frames: int = 2
    """Loud frames in a row that start a turn."""
    end_silence: float = 0.7
    """Seconds of audio at or below the threshold that end a turn."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """A user turn began."""


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """A user turn ended; `pcm` is all of its audio."""

    pcm: bytes


type TurnEvent = SpeechStarted | SpeechEnded

_VAD_EVENTS: tuple[VadEvent, ...] = get_args(VadEvent.__value__)


def as_vad_event(event: object) -> VadEvent | None:
    """The `event` of a `vad_events` message; None (logged) for one the protocol lacks."""
    for known in _VAD_EVENTS:
        if event == known:
            return known
    _LOGGER.warning("Ignoring vad_events with unknown event %r", event)
    return None


class UserTurnDetector:
    """Turns the client's audio, `vad_events` and triggers into turn starts and ends."""

    def __init__(self, trigger: TurnTrigger, energy: EnergySettings) -> None:
        self._push_to_talk = trigger is TurnTrigger.PUSH_TO_TALK
        self._energy = energy
        # Off once the client's own VAD speaks up; on again if it reports a failure.
        self._use_energy = not self._push_to_talk
        self._turn: bytearray | None = None
        self._pending = bytearray()
        self._loud_run: list[bytes] = []
        self._silence = 0.0

    @property
    def in_turn(self) -> bool:
        """Whether a user turn is open."""
        return self._turn is not None

    @property
    def turn_audio(self) -> bytes:
        """The open turn's audio so far (empty when none is open)."""
        return bytes(self._turn or b"")

    def reset(self) -> None:
        """Forget the open turn and any audio received since the last one."""
        self._turn = None
        self._pending.clear()
        self._loud_run.clear()
        self._silence = 0.0

    def audio(self, pcm: bytes) -> list[TurnEvent]:
        """One `client.audio` frame."""
        if self._turn is not None:
            self._turn += pcm
            if not self._use_energy:
                return []
            if rms_level(pcm) > self._energy.threshold:
                self._silence = 0.0
                return []
            self._silence += duration_seconds(pcm, WIRE_INPUT_RATE)
            return [self._end()] if self._silence >= self._energy.end_silence else []
        if self._push_to_talk:
            return []
        self._pending += pcm
        del self._pending[:-_MAX_PENDING_BYTES]
        if not self._use_energy:
            return []
        if rms_level(pcm) <= self._energy.threshold:
            self._loud_run.clear()
            return []
        self._loud_run.append(pcm)
        if len(self._loud_run) < self._energy.onset_frames:
            return []
        self._start(b"".join(self._loud_run))
        return [SpeechStarted()]

    def vad(self, event: VadEvent) -> list[TurnEvent]:
        """A `vad_events` event; ignored in push-to-talk."""
        if self._push_to_talk:
            return []
        if event == "vad_model_failed":
            self._use_energy = True
            self._silence = 0.0
            return []
        self._use_energy = False
        if event == "vad_start":
            if self._turn is not None:
                return []
            self._start(b"")
            return [SpeechStarted()]
        if self._turn is not None:
            return [self._end()]
        if not self._pending:
            return []
        self._start(bytes(self._pending))
        return [SpeechStarted(), self._end()]

    def push_to_talk(self, start: bool) -> list[TurnEvent]:
        """`trigger.turn.start` (start) or `trigger.turn.end`; ignored in automatic mode."""
        if not self._push_to_talk:
            return []
        if start:
            if self._turn is not None:
                return []
            self._start(b"")
            return [SpeechStarted()]
        return [self._end()] if self._turn is not None else []

    def _start(self, pcm: bytes) -> None:
        self.reset()
        self._turn = bytearray(pcm)

    def _end(self) -> SpeechEnded:
        ended = SpeechEnded(bytes(self._turn or b""))
        self.reset()
        return ended
