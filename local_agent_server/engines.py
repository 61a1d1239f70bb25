"""Speech engines the server can use, and a deterministic pair for tests.

The server only needs two things: text for the audio of one user turn (8 kHz PCM, with an
interim guess while the user still speaks) and audio (16 kHz PCM) for the agent's text.
Anything with these methods plugs in: `offline_speech.py` has real offline engines
(pocketsphinx and espeak-ng, `--speech offline`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Sequence
import itertools
import math
from typing import Protocol

import numpy as np

from .layercode_client import AGENT_RATE, SAMPLE_WIDTH, to_pcm


class SpeechToText(Protocol):
    """Transcribes the user's audio: 16-bit mono PCM at 8 kHz, as clients send it."""

    async def interim(self, pcm: bytes) -> str:
        """A partial transcript of a turn still in progress (the audio so far)."""
        ...

    async def transcribe(self, pcm: bytes) -> str:
        """The final transcript of a whole user turn."""
        ...


class TextToSpeech(Protocol):
    """Speaks the agent's text as 16-bit mono PCM at 16 kHz, in chunks as they are ready."""

    def synthesize(self, text: str) -> AsyncGenerator[bytes]:
        """Audio chunks for `text`; the caller closes the generator if it stops early."""
        ...


class SampleCountSpeechToText:
    """Hears nothing but how much audio arrived: `"heard <ms> ms of audio"`.

    Tests can predict the transcript exactly from the frames they sent.
    """

    async def interim(self, pcm: bytes) -> str:
        """Same text as the final one, for the audio so far."""
        return self._describe(pcm)

    async def transcribe(self, pcm: bytes) -> str:
        """`heard <ms> ms of audio`, ms = 8 kHz samples // 8."""
        return self._describe(pcm)

    @staticmethod
    def _describe(pcm: bytes) -> str:
        return f"heard {len(pcm) // SAMPLE_WIDTH // 8} ms of audio"


class ToneTextToSpeech:
    """Speaks any text as a sine tone, long enough that tests can predict its size.

    Duration is `ms_per_char` per character of the text; each call takes the next frequency,
    so identical replies on two turns still sound (and compare) different.
    """

    def __init__(
        self,
        *,
        ms_per_char: float = 50.0,
        frequencies: Sequence[float] = (440.0, 660.0, 880.0),
        chunk_ms: float = 100.0,
        level: float = 0.25,
    ) -> None:
        if not frequencies:
            raise ValueError("at least one frequency is needed")
        self._samples_per_char = ms_per_char * AGENT_RATE / 1000
        self._chunk_samples = max(1, round(chunk_ms * AGENT_RATE / 1000))
        self._amplitude = level * 32768.0
        self._frequencies: Iterator[float] = itertools.cycle(frequencies)

    def pcm_bytes(self, text: str) -> int:
        """How many bytes of audio `text` gives."""
        return round(len(text) * self._samples_per_char) * SAMPLE_WIDTH

    async def synthesize(self, text: str) -> AsyncGenerator[bytes]:
        """The tone for `text`, one `chunk_ms` chunk at a time (the last may be shorter)."""
        step = 2 * math.pi * next(self._frequencies) / AGENT_RATE
        total = self.pcm_bytes(text) // SAMPLE_WIDTH
        for start in range(0, total, self._chunk_samples):
            n = np.arange(start, min(start + self._chunk_samples, total))
            yield to_pcm(self._amplitude * np.sin(step * n))
