"""One assistant turn as the client gets it: `turn.start`, `response.*` frames, its playback.

From a webhook backend (`play`), each `response.tts` becomes a `response.text` and the
synthesized speech as `response.audio` frames (base64 16 kHz PCM, `delta_id` counting up from
0); `response.data` is passed on; `response.end` or `response.error` stops reading. A relay
sends the text and audio it gets itself (`send_text`, `send_audio`). The turn also tracks its
playback (the client's `replay_finished`) and, should the user barge in, how much of the
backend's reply the user heard.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
import logging
import time
from typing import Any

from .engines import TextToSpeech
from .layercode_client import AGENT_RATE, duration_seconds
from .records import TurnRecord

_LOGGER = logging.getLogger(__name__)

type Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _Segment:
    """One `response.tts` text and where its audio sits in the turn's audio stream."""

    text: str
    start: float
    seconds: float


def _append(text: str, piece: str) -> str:
    """`piece` after `text`, with a space between unless one is there already (as the client
    library joins `response.text` pieces)."""
    if text and piece and not text[-1].isspace() and not piece[0].isspace():
        return f"{text} {piece}"
    return text + piece


class AgentTurn:
    """Streams one agent turn to the client and tracks its playback."""

    def __init__(
        self,
        record: TurnRecord,
        *,
        send: Send,
        pace_audio: bool,
        announced: bool,
    ) -> None:
        """`announced` is False for a welcome: `turn.start` waits until there is content."""
        self.record = record
        self.announced = announced
        self.reply_over = False
        self._send = send
        self._pace_audio = pace_audio
        self._segments: list[_Segment] = []
        self._audio_seconds = 0.0
        self._next_delta_id = 0
        self._played = asyncio.Event()

    @property
    def turn_id(self) -> str:
        """The assistant turn's id, on every frame and on the webhook."""
        return self.record.agent_turn_id

    async def announce(self) -> None:
        """Send `turn.start` for the assistant, once."""
        if not self.announced:
            self.announced = True
            await self._send({"type": "turn.start", "role": "assistant", "turn_id": self.turn_id})

    async def play(self, events: AsyncIterator[dict[str, Any]], tts: TextToSpeech) -> None:
        """Relay the backend's reply events until `response.end` or `response.error`."""
        async for event in events:
            match event.get("type"):
                case "response.tts":
                    content = event.get("content")
                    if isinstance(content, str) and content:
                        await self._speak(content, tts)
                case "response.data":
                    await self.announce()
                    await self._send(
                        {
                            "type": "response.data",
                            "content": event.get("content"),
                            "turn_id": self.turn_id,
                        }
                    )
                case "response.end":
                    return
                case "response.error":
                    _LOGGER.warning("Backend failed turn %s: %s", self.turn_id, event.get("error"))
                    return
                case other:
                    _LOGGER.debug("Ignoring backend event %r in turn %s", other, self.turn_id)

    async def end_reply(self) -> None:
        """Send `response.end`: the backend has nothing more for this turn."""
        self.reply_over = True
        await self._send({"type": "response.end", "turn_id": self.turn_id})

    def note_replay_finished(self) -> None:
        """The client's playback buffer ran dry; counts once this turn's audio went out."""
        if self.record.first_audio_at is not None and self.record.ended_at is None:
            self.record.replay_finished = True
            self._played.set()

    @property
    def heard_all(self) -> bool:
        """The reply is over and played out: only `turn.end` is left to send."""
        return self.reply_over and (not self.record.audio_bytes or self.record.replay_finished)

    def release(self) -> None:
        """Stop waiting for `replay_finished`: a newer turn needs this one over."""
        self._played.set()

    async def wait_played(self, timeout: float) -> bool:
        """Wait for `replay_finished` after this turn's audio (or `release`), at most `timeout`
        seconds; False if the bound ran out."""
        try:
            async with asyncio.timeout(timeout):
                await self._played.wait()
        except TimeoutError:
            return False
        return True

    def heard(self, now: float) -> str:
        """The words the user has heard by `now`, assuming playback from the first audio."""
        if self.record.first_audio_at is None:
            return ""
        played = min(now - self.record.first_audio_at, self._audio_seconds)
        parts: list[str] = []
        for segment in self._segments:
            if played >= segment.start + segment.seconds:
                parts.append(segment.text)
            elif played > segment.start:
                cut = int(len(segment.text) * (played - segment.start) / segment.seconds)
                words = segment.text[:cut].split()
                if words and not segment.text[cut].isspace():
                    words.pop()  # cut mid-word
                parts.extend(words)
        return " ".join(parts)

    async def send_text(self, text: str) -> None:
        """One `response.text`; the client appends it to the turn's text."""
        await self.announce()
        if self.record.first_text_at is None:
            self.record.first_text_at = time.monotonic()
        self.record.agent_text = _append(self.record.agent_text, text)
        await self._send({"type": "response.text", "content": text, "turn_id": self.turn_id})

    async def _speak(self, text: str, tts: TextToSpeech) -> None:
        await self.send_text(text)
        # The whole segment is synthesized before it is sent, so that its length is known
        # when the user barges in and `heard` has to place the cut in its text.
        async with aclosing(tts.synthesize(text)) as stream:
            chunks = [chunk async for chunk in stream if chunk]
        seconds = sum(duration_seconds(chunk, AGENT_RATE) for chunk in chunks)
        self._segments.append(_Segment(text, self._audio_seconds, seconds))
        for chunk in chunks:
            await self.send_audio(chunk)

    async def send_audio(self, chunk: bytes) -> None:
        """One `response.audio` frame of 16 kHz PCM (paced in real time with `pace_audio`)."""
        first_audio_at = self.record.first_audio_at
        if first_audio_at is None:
            self.record.first_audio_at = time.monotonic()
        elif self._pace_audio:
            await asyncio.sleep(max(0.0, first_audio_at + self._audio_seconds - time.monotonic()))
        await self._send(
            {
                "type": "response.audio",
                "content": base64.b64encode(chunk).decode("ascii"),
                "delta_id": self._next_delta_id,
                "turn_id": self.turn_id,
            }
        )
        self._next_delta_id += 1
        self.record.audio_bytes += len(chunk)
        self._audio_seconds += duration_seconds(chunk, AGENT_RATE)
