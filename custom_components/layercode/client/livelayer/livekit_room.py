"""The room seam on the official LiveKit Python SDK, imported only when a LiveLayer agent is used.

The `livekit` wheel carries a native library (no musl build: Home Assistant OS and Container
cannot load it), so nothing here runs at import time: `load_livekit` says whether it loads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
import contextlib
import importlib
import logging
from typing import Any

from ..errors import LayercodeError
from .room import AUDIO_RATE, MicrophoneTrack, RoomHandler, Segment

_LOGGER = logging.getLogger(__name__)

LIVEKIT_REQUIREMENT = "livekit>=1.0,<2"
"""Installed on demand when a user picks LiveLayer, never listed in manifest.json."""
TRANSCRIPTION_TOPIC = "lk.transcription"
CHAT_TOPIC = "lk.chat"
FRAME_SAMPLES = AUDIO_RATE // 50
"""20 ms frames, what LiveKit's own agents publish."""


class LiveKitUnavailableError(LayercodeError):
    """The `livekit` package or its native library cannot be loaded on this system."""


def load_livekit() -> None:
    """Import the SDK and load its native library; blocking (run it in an executor).

    Raises LiveKitUnavailableError saying why, for example on a musl system.
    """
    try:
        ffi = importlib.import_module("livekit.rtc._ffi_client")
    except ImportError as err:
        raise LiveKitUnavailableError(f"The livekit package is not installed: {err}") from err
    try:
        ffi.get_ffi_lib()
    except (OSError, Exception) as err:
        raise LiveKitUnavailableError(
            f"The livekit native library does not load on this system: {err}"
        ) from err


def _rtc() -> Any:
    return importlib.import_module("livekit.rtc")


class _Microphone:
    def __init__(self, source: Any) -> None:
        self._source = source
        self._rtc = _rtc()

    async def capture(self, pcm: bytes) -> None:
        samples = len(pcm) // 2
        if samples:
            frame = self._rtc.AudioFrame(pcm[: samples * 2], AUDIO_RATE, 1, samples)
            await self._source.capture_frame(frame)


class LiveKitRoom:
    """A LiveKit room reporting to a `RoomHandler`."""

    def __init__(self, handler: RoomHandler) -> None:
        self._rtc = _rtc()
        self._handler = handler
        self._room: Any = self._rtc.Room()
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: list[Any] = []
        self._leaving = False
        room = self._room
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", lambda p: handler.participant_left(p.identity))
        room.on(
            "participant_attributes_changed",
            lambda _changed, p: handler.attributes_changed(p.identity, dict(p.attributes)),
        )
        room.on("data_received", self._on_data)
        room.on("transcription_received", self._on_transcription)
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("disconnected", self._on_disconnected)
        room.register_text_stream_handler(TRANSCRIPTION_TOPIC, self._on_text_stream)

    @property
    def local_identity(self) -> str:
        return str(self._room.local_participant.identity)

    async def connect(self, url: str, token: str) -> None:
        await self._room.connect(url, token)
        for participant in self._room.remote_participants.values():
            self._on_participant_connected(participant)

    async def publish_microphone(self) -> MicrophoneTrack:
        source = self._rtc.AudioSource(AUDIO_RATE, 1)
        track = self._rtc.LocalAudioTrack.create_audio_track("microphone", source)
        options = self._rtc.TrackPublishOptions(source=self._rtc.TrackSource.SOURCE_MICROPHONE)
        await self._room.local_participant.publish_track(track, options)
        return _Microphone(source)

    async def publish_data(self, payload: bytes, topic: str | None = None) -> None:
        await self._room.local_participant.publish_data(payload, reliable=True, topic=topic or "")

    async def send_chat(self, text: str) -> None:
        await self._room.local_participant.send_text(text, topic=CHAT_TOPIC)

    async def disconnect(self) -> None:
        self._leaving = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        self._streams.clear()
        await self._room.disconnect()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_participant_connected(self, participant: Any) -> None:
        is_agent = participant.kind == self._rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        self._handler.participant_joined(
            participant.identity, is_agent, dict(participant.attributes)
        )

    def _on_data(self, packet: Any) -> None:
        identity = packet.participant.identity if packet.participant else None
        self._handler.data_received(bytes(packet.data), identity, packet.topic or None)

    def _on_transcription(self, segments: list[Any], participant: Any, _publication: Any) -> None:
        identity = participant.identity if participant else ""
        self._handler.transcription(
            identity, [Segment(s.id, s.text, bool(s.final)) for s in segments]
        )

    def _on_text_stream(self, reader: Any, identity: str) -> None:
        attributes: Mapping[str, str] = reader.info.attributes or {}
        self._handler.text_stream(identity, dict(attributes), aiter(reader))

    def _on_track_subscribed(self, track: Any, _publication: Any, participant: Any) -> None:
        if track.kind != self._rtc.TrackKind.KIND_AUDIO:
            return
        stream = self._rtc.AudioStream.from_track(
            track=track, sample_rate=AUDIO_RATE, num_channels=1
        )
        self._streams.append(stream)
        self._handler.agent_audio(participant.identity, _pcm_frames(stream))

    def _on_disconnected(self, reason: Any) -> None:
        if not self._leaving:
            self._handler.disconnected(str(reason))


async def _pcm_frames(stream: Any) -> AsyncIterator[bytes]:
    async for event in stream:
        yield bytes(event.frame.data)
