"""A LiveKit room the tests drive, and a scripted LiveLayer agent in it.

No LiveKit server can run here: `FakeRoom` stands in for the SDK under the session's room
seam. It records what the session publishes, and tests (or `ScriptedAgent`) make the room
report participants, attributes, data, transcriptions, text streams, audio and drops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
import json
import re
from typing import Any

import numpy as np

from custom_components.layercode.client.livelayer import AUDIO_RATE, RoomHandler, Segment

from .signals import tone

AGENT_IDENTITY = "agent-1"
USER_IDENTITY = "ha-user"
FRAME_BYTES = AUDIO_RATE // 50 * 2


class FakeMicrophone:
    """Records what the session publishes, with the loop time of each frame."""

    def __init__(self, room: FakeRoom) -> None:
        self._room = room
        self.frames: list[tuple[float, bytes]] = []

    async def capture(self, pcm: bytes) -> None:
        self.frames.append((asyncio.get_running_loop().time(), pcm))
        self._room.on_microphone(pcm)

    @property
    def audio(self) -> bytes:
        return b"".join(pcm for _, pcm in self.frames)


@dataclass
class RoomScript:
    """How the next rooms behave (shared by a test and the factory it hands over)."""

    fail_connect: Exception | None = None
    agent_joins: bool = True
    agent_attributes: dict[str, str] = field(
        default_factory=lambda: {"lk.agent.state": "listening"}
    )
    rooms: list[FakeRoom] = field(default_factory=list)
    connects: list[tuple[str, str]] = field(default_factory=list)

    def factory(self, handler: RoomHandler) -> FakeRoom:
        room = FakeRoom(handler, self)
        self.rooms.append(room)
        return room


class FakeRoom:
    """A room under the session's seam: what a LiveKit server would tell it, on demand."""

    def __init__(self, handler: RoomHandler, script: RoomScript) -> None:
        self.handler = handler
        self.script = script
        self.connected = False
        self.left = False
        self.microphone: FakeMicrophone | None = None
        self.published: list[tuple[bytes, str | None]] = []
        self.chat: list[str] = []
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.agent: ScriptedAgent | None = None

    @property
    def local_identity(self) -> str:
        return USER_IDENTITY

    async def connect(self, url: str, token: str) -> None:
        self.script.connects.append((url, token))
        if self.script.fail_connect is not None:
            raise self.script.fail_connect
        self.connected = True
        if self.script.agent_joins:
            self.join_agent()

    async def publish_microphone(self) -> FakeMicrophone:
        self.microphone = FakeMicrophone(self)
        return self.microphone

    async def publish_data(self, payload: bytes, topic: str | None = None) -> None:
        self.published.append((payload, topic))

    async def send_chat(self, text: str) -> None:
        self.chat.append(text)
        if self.agent is not None:
            self.agent.heard_text(text)

    async def disconnect(self) -> None:
        self.left = True
        self.connected = False
        self._audio.put_nowait(None)

    # -- what the server would report ---------------------------------------------------

    def join_agent(self) -> None:
        self.handler.participant_joined(AGENT_IDENTITY, True, dict(self.script.agent_attributes))
        self.handler.agent_audio(AGENT_IDENTITY, self._agent_frames())

    def set_agent_state(self, state: str) -> None:
        self.handler.attributes_changed(AGENT_IDENTITY, {"lk.agent.state": state})

    def send_data(self, content: Any, topic: str | None = None) -> None:
        payload = content if isinstance(content, bytes) else json.dumps(content).encode()
        self.handler.data_received(payload, AGENT_IDENTITY, topic)

    def transcribe(self, identity: str, segment_id: str, text: str, final: bool) -> None:
        self.handler.transcription(identity, [Segment(segment_id, text, final)])

    def stream_text(
        self, identity: str, segment_id: str, chunks: list[str], *, final: bool = True
    ) -> None:
        attributes = {"lk.segment_id": segment_id, "lk.transcription_final": str(final).lower()}

        async def read() -> AsyncIterator[str]:
            for chunk in chunks:
                await asyncio.sleep(0)
                yield chunk

        self.handler.text_stream(identity, attributes, read())

    def play(self, pcm: bytes) -> None:
        """The agent's voice, as 20 ms frames on its audio track."""
        for start in range(0, len(pcm), FRAME_BYTES):
            self._audio.put_nowait(pcm[start : start + FRAME_BYTES])

    def drop(self, reason: str = "SIGNAL_CLOSE") -> None:
        self.connected = False
        self._audio.put_nowait(None)
        self.handler.disconnected(reason)

    def on_microphone(self, pcm: bytes) -> None:
        if self.agent is not None:
            self.agent.heard_audio(pcm)

    async def _agent_frames(self) -> AsyncIterator[bytes]:
        while (frame := await self._audio.get()) is not None:
            yield frame


class ScriptedAgent:
    """A LiveLayer agent in a fake room: it answers each utterance it hears.

    Speech is any frame above a small level; after `silence` seconds of quiet the agent
    reports the user's words (`heard`), thinks, speaks `reply` with a tone of `reply_seconds`
    and an `lk.transcription` stream, and listens again.
    """

    def __init__(
        self,
        room: FakeRoom,
        *,
        heard: str = "turn on the kitchen light",
        reply: str = "The kitchen light is on.",
        reply_seconds: float = 0.4,
        silence: float = 0.3,
    ) -> None:
        self.room = room
        self.heard = heard
        self.reply = reply
        self.reply_seconds = reply_seconds
        self._silence_frames = round(silence * 50)
        self._speech = 0
        self._quiet = 0
        self.turns = 0
        self._task: asyncio.Task[None] | None = None
        room.agent = self

    def heard_audio(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        loud = bool(len(samples)) and float(np.sqrt(np.mean(samples**2))) > 300
        if loud:
            self._speech += 1
            self._quiet = 0
        elif self._speech:
            self._quiet += 1
            if self._quiet >= self._silence_frames:
                self._speech = self._quiet = 0
                self._answer(self.heard)

    def heard_text(self, text: str) -> None:
        self._answer(None)

    def _answer(self, words: str | None) -> None:
        self.turns += 1
        self._task = asyncio.get_running_loop().create_task(self._speak(words, self.turns))

    async def _speak(self, words: str | None, turn: int) -> None:
        room = self.room
        room.set_agent_state("thinking")
        if words is not None:
            room.stream_text(USER_IDENTITY, f"user-{turn}", [words])
        await asyncio.sleep(0.05)
        room.set_agent_state("speaking")
        room.stream_text(AGENT_IDENTITY, f"agent-{turn}", re.findall(r"\S+\s*", self.reply))
        room.play(tone(self.reply_seconds))
        await asyncio.sleep(self.reply_seconds)
        room.set_agent_state("listening")

    async def wait(self) -> None:
        if self._task is not None:
            await self._task
