"""Audio through the real LiveKit SDK's native library, the way a LiveLayer room carries it.

The microphone side is the project's `_Microphone` (PCM into an `rtc.AudioSource`), the
agent's side is the project's `_pcm_frames` over `rtc.AudioStream.from_track` at 16 kHz mono,
as `LiveKitRoom` reads a subscribed track. No server is involved: a local track's stream
reads back what its source captured. Skipped where the `livekit` wheel or its native library
does not load (musl systems, for example).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
import contextlib
import math
import os
from pathlib import Path
import subprocess
import sys
from typing import cast

import pytest

pytest.importorskip("livekit.rtc")

from custom_components.layercode.client.livelayer import AUDIO_RATE
from custom_components.layercode.client.livelayer.livekit_room import (
    FRAME_SAMPLES,
    LiveKitUnavailableError,
    _Microphone,
    _pcm_frames,
    load_livekit,
)

from ..signals import dominant_frequency, rms, tone

try:
    load_livekit()
except LiveKitUnavailableError as err:
    pytest.skip(f"LiveKit does not load here: {err}", allow_module_level=True)

from livekit import rtc

TIMEOUT = 10.0
LEVEL = 0.3
REPO = Path(__file__).resolve().parents[2]


class Loopback:
    """An audio source, its local track, and a 16 kHz mono stream reading that track."""

    def __init__(self, source_rate: int) -> None:
        self.source = rtc.AudioSource(source_rate, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        self.stream = rtc.AudioStream.from_track(
            track=self.track, sample_rate=AUDIO_RATE, num_channels=1
        )

    async def read(self, byte_count: int) -> bytes:
        """PCM through the project's `_pcm_frames` until `byte_count` bytes have come."""
        received = bytearray()
        frames = cast(AsyncGenerator[bytes], _pcm_frames(self.stream))  # an async generator
        async with contextlib.aclosing(frames):
            async for pcm in frames:
                received += pcm
                if len(received) >= byte_count:
                    break
        return bytes(received)

    async def aclose(self) -> None:
        await close_source(self.source)
        await self.stream.aclose()


async def close_source(source: rtc.AudioSource) -> None:
    """Close a source once its queue has played out (the SDK times that with a loop timer)."""
    async with asyncio.timeout(TIMEOUT):
        await source.wait_for_playout()
    await source.aclose()


async def round_trip(
    loopback: Loopback, send: Callable[[], Awaitable[None]], byte_count: int
) -> bytes:
    """Run `send` while reading `byte_count` bytes back from the loopback's stream."""
    reader = asyncio.ensure_future(loopback.read(byte_count))
    try:
        async with asyncio.timeout(TIMEOUT):
            await send()
            received = await reader
    finally:
        reader.cancel()
        await loopback.aclose()
    return received


async def test_microphone_tone_reads_back_unchanged() -> None:
    """A 440 Hz tone published by `_Microphone` reads back at 440 Hz and the same level."""
    loopback = Loopback(AUDIO_RATE)
    microphone = _Microphone(loopback.source)
    pcm = tone(1.0, level=LEVEL)
    frame_bytes = FRAME_SAMPLES * 2

    async def send() -> None:
        for start in range(0, len(pcm), frame_bytes):
            await microphone.capture(pcm[start : start + frame_bytes])

    received = await round_trip(loopback, send, len(pcm))

    assert len(received) >= AUDIO_RATE * 2
    steady = received[AUDIO_RATE // 4 * 2 : AUDIO_RATE * 2]  # past any start-up of the stream
    assert dominant_frequency(steady, AUDIO_RATE) == pytest.approx(440.0, abs=5)
    assert rms(steady) == pytest.approx(LEVEL * 32767 / math.sqrt(2), rel=0.1)


async def test_agent_track_is_resampled_to_16_khz() -> None:
    """A 48 kHz track (what a remote agent publishes) reads back as 16 kHz at the same pitch."""
    rate = 48_000
    loopback = Loopback(rate)
    pcm = tone(1.0, level=LEVEL, rate=rate)
    samples_per_frame = rate // 50

    async def send() -> None:
        for start in range(0, len(pcm), samples_per_frame * 2):
            chunk = pcm[start : start + samples_per_frame * 2]
            frame = rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2)
            await loopback.source.capture_frame(frame)

    received = await round_trip(loopback, send, AUDIO_RATE * 2)

    steady = received[AUDIO_RATE // 4 * 2 : AUDIO_RATE * 2]
    assert dominant_frequency(steady, AUDIO_RATE) == pytest.approx(440.0, abs=5)
    assert rms(steady) == pytest.approx(LEVEL * 32767 / math.sqrt(2), rel=0.1)


async def test_empty_capture_sends_nothing() -> None:
    """An empty chunk (or a lone odd byte) is no frame: nothing reaches the source."""
    source = rtc.AudioSource(AUDIO_RATE, 1)
    try:
        microphone = _Microphone(source)
        await microphone.capture(b"")
        await microphone.capture(b"\x01")
        assert source.queued_duration == 0.0
        await microphone.capture(bytes(FRAME_SAMPLES * 2))
        assert source.queued_duration > 0.0
    finally:
        await close_source(source)


def test_unloadable_native_library_is_reported() -> None:
    """A native library that does not load is a LiveKitUnavailableError naming it.

    In a fresh interpreter, so that the library this process has loaded already plays no part.
    """
    code = (
        "from custom_components.layercode.client.livelayer.livekit_room import "
        "LiveKitUnavailableError, load_livekit\n"
        "try:\n"
        "    load_livekit()\n"
        "except LiveKitUnavailableError as err:\n"
        "    print(err)\n"
        "    raise SystemExit(3)\n"
    )
    env = {**os.environ, "LIVEKIT_LIB_PATH": "/nonexistent/liblivekit_ffi.so"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "/nonexistent/liblivekit_ffi.so" in result.stdout
    assert "does not load" in result.stdout
