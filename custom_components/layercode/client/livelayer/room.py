"""The seam under a LiveLayer session: the few things it does with a LiveKit room.

`livekit_room.LiveKitRoom` implements it on the official LiveKit SDK; tests drive a fake.
The room reports what happens through a `RoomHandler`, on the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

AUDIO_RATE = 16_000
"""Both directions are 16 kHz mono 16-bit PCM, as Home Assistant's Assist pipeline speaks."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One transcription segment: `text` is the whole segment so far."""

    id: str
    text: str
    final: bool


class MicrophoneTrack(Protocol):
    """The published microphone: PCM goes out as it is captured."""

    async def capture(self, pcm: bytes) -> None:
        """Send 16 kHz mono PCM; the caller paces it in real time."""


class RoomHandler(Protocol):
    """What a room tells its session."""

    def participant_joined(
        self, identity: str, is_agent: bool, attributes: Mapping[str, str]
    ) -> None:
        """A remote participant is in the room (also those already there on joining)."""

    def participant_left(self, identity: str) -> None:
        """A remote participant left."""

    def attributes_changed(self, identity: str, attributes: Mapping[str, str]) -> None:
        """A remote participant's attributes changed; `attributes` holds all of them."""

    def data_received(self, payload: bytes, identity: str | None, topic: str | None) -> None:
        """A data message from a participant (None: from the server)."""

    def transcription(self, identity: str, segments: list[Segment]) -> None:
        """Transcription events: segments of `identity`'s speech."""

    def text_stream(
        self, identity: str, attributes: Mapping[str, str], chunks: AsyncIterator[str]
    ) -> None:
        """An `lk.transcription` text stream from `identity`, read chunk by chunk."""

    def agent_audio(self, identity: str, frames: AsyncIterator[bytes]) -> None:
        """A remote participant's audio track, as 16 kHz mono PCM frames."""

    def disconnected(self, reason: str) -> None:
        """The room connection is gone (not called after `disconnect`)."""


class Room(Protocol):
    """A LiveKit room as the session uses it."""

    @property
    def local_identity(self) -> str:
        """Our own participant identity, once connected."""
        ...

    async def connect(self, url: str, token: str) -> None:
        """Join the room. Raises on failure."""

    async def publish_microphone(self) -> MicrophoneTrack:
        """Publish a microphone-source audio track."""
        ...

    async def publish_data(self, payload: bytes, topic: str | None = None) -> None:
        """Send a reliable data message to the room."""

    async def send_chat(self, text: str) -> None:
        """Send typed user text to the agent (an `lk.chat` text stream)."""

    async def disconnect(self) -> None:
        """Leave the room; safe when not connected."""


type RoomFactory = Callable[[RoomHandler], Room]
"""Builds a room that reports to the given handler."""
