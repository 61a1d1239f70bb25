"""Voice turns through real Assist pipelines made of the integration's three entities."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from homeassistant.components import assist_pipeline, stt
from homeassistant.components.assist_pipeline import (
    AudioSettings,
    PipelineEvent,
    PipelineEventType,
)
from homeassistant.components.assist_pipeline.pipeline import KEY_ASSIST_PIPELINE
from homeassistant.core import Context, HomeAssistant
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from local_agent_server import LocalAgentServer

from .test_setup_entities import make_entry, setup, unload

STT_ENTITY = "stt.ag_test"
TTS_ENTITY = "tts.ag_test_agent_voice"
AGENT_ENTITY = "conversation.ag_test"
METADATA = stt.SpeechMetadata(
    language="en",
    format=stt.AudioFormats.WAV,
    codec=stt.AudioCodecs.PCM,
    bit_rate=stt.AudioBitRates.BITRATE_16,
    sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
    channel=stt.AudioChannels.CHANNEL_MONO,
)


def speech(seconds: float) -> bytes:
    """A stand-in for a voice at 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * 300 * t) * 6000).astype("<i2").tobytes()


async def chunks(pcm: bytes) -> AsyncGenerator[bytes]:
    """Home Assistant's 10 ms chunks."""
    for i in range(0, len(pcm), 320):
        yield pcm[i : i + 320]


@pytest.fixture
async def loaded(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> AsyncIterator[MockConfigEntry]:
    """The entry set up, and a pipeline made of its STT, agent and TTS."""
    entry = make_entry(agent_server)
    await setup(hass, entry)
    yield entry
    await unload(hass, entry)


@pytest.fixture
async def pipeline_id(hass: HomeAssistant, loaded: MockConfigEntry) -> str:
    """A pipeline of the three entities, local intents off."""
    pipeline = await hass.data[KEY_ASSIST_PIPELINE].pipeline_store.async_create_item(
        {
            "name": "Layercode",
            "language": "en",
            "conversation_engine": AGENT_ENTITY,
            "conversation_language": "en",
            "prefer_local_intents": False,
            "stt_engine": STT_ENTITY,
            "stt_language": "en",
            "tts_engine": TTS_ENTITY,
            "tts_language": "en",
            "tts_voice": None,
            "wake_word_entity": None,
            "wake_word_id": None,
        }
    )
    return str(pipeline.id)


async def run_voice_turn(
    hass: HomeAssistant,
    pipeline_id: str,
    pcm: bytes,
    *,
    conversation_id: str | None = None,
    tts_audio_output: str | dict[str, Any] | None = "wav",
) -> dict[PipelineEventType, dict[str, Any]]:
    """One voice turn through the pipeline; the data of each event type."""
    events: list[PipelineEvent] = []
    await assist_pipeline.async_pipeline_from_audio_stream(
        hass,
        context=Context(),
        event_callback=events.append,
        stt_metadata=METADATA,
        stt_stream=chunks(pcm),
        pipeline_id=pipeline_id,
        conversation_id=conversation_id,
        tts_audio_output=tts_audio_output,
        audio_settings=AudioSettings(is_vad_enabled=False),
    )
    by_type = {event.type: event.data or {} for event in events}
    assert PipelineEventType.ERROR not in by_type, by_type[PipelineEventType.ERROR]
    return by_type


async def fetch(hass_client: ClientSessionGenerator, url: str) -> bytes:
    """What a satellite downloads from the TTS URL."""
    client = await hass_client()
    response = await client.get(url)
    assert response.status == 200
    return await response.read()


def wav_pcm(data: bytes) -> tuple[int, bytes]:
    """Sample rate and samples of a 16-bit mono WAV, streaming headers and extra chunks too."""
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WAVE"
    position, rate = 12, 0
    while position + 8 <= len(data):
        chunk, size = (
            data[position : position + 4],
            int.from_bytes(data[position + 4 : position + 8], "little"),
        )
        body = position + 8
        if chunk == b"fmt ":
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            assert int.from_bytes(data[body + 2 : body + 4], "little") == 1  # mono
        if chunk == b"data":
            return rate, data[body : body + size] if size < len(data) else data[body:]
        position = body + size + size % 2
    raise AssertionError("no data chunk")


def dominant_frequency(pcm: bytes, rate: int) -> float:
    """The loudest frequency of 16-bit PCM."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    magnitudes = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(magnitudes)])


def agent_turns(server: LocalAgentServer) -> list[Any]:
    """Every finished agent turn the server sent, in order."""
    return [turn for c in server.conversations.values() for turn in c.turns]


async def test_voice_turn_plays_the_agents_own_audio(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """stt-end is the agent's transcript, intent-end its reply, the TTS URL its audio."""
    events = await run_voice_turn(hass, pipeline_id, speech(1.0))
    assert events[PipelineEventType.STT_END]["stt_output"]["text"] == "heard 1000 ms of audio"
    speech_out = events[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]
    assert speech_out["plain"]["speech"] == "You said: heard 1000 ms of audio"
    url = events[PipelineEventType.TTS_END]["tts_output"]["url"]
    rate, pcm = wav_pcm(await fetch(hass_client, url))
    (turn,) = agent_turns(agent_server)
    assert rate == 16000
    assert abs(len(pcm) - turn.audio_bytes) <= 2
    assert dominant_frequency(pcm, rate) == pytest.approx(440, abs=3)


@pytest.mark.parametrize(
    ("tts_audio_output", "rate"),
    [
        ({"preferred_format": "wav"}, 16000),  # the entity's own WAV, no conversion
        ({"preferred_format": "wav", "preferred_sample_rate": 22050}, 22050),
        ("wav", 16000),  # 2025.4 converts through ffmpeg whenever a rate is asked for
        (None, None),  # mp3 through ffmpeg
    ],
)
async def test_tts_formats(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
    tts_audio_output: str | dict[str, Any] | None,
    rate: int | None,
) -> None:
    """The agent's audio keeps its length and tone in every format the pipeline asks for."""
    events = await run_voice_turn(hass, pipeline_id, speech(0.5), tts_audio_output=tts_audio_output)
    data = await fetch(hass_client, events[PipelineEventType.TTS_END]["tts_output"]["url"])
    (turn,) = agent_turns(agent_server)
    tolerance = 0.06
    if rate is None:
        assert data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3")
        data = await decode_mp3(data)
        tolerance = 0.15  # mp3 encoder delay and frame padding
    out_rate, pcm = wav_pcm(data)
    seconds = len(pcm) / 2 / out_rate
    assert seconds == pytest.approx(turn.audio_bytes / 2 / 16000, abs=tolerance)
    assert dominant_frequency(pcm, out_rate) == pytest.approx(440, abs=3)


async def decode_mp3(data: bytes) -> bytes:
    """mp3 to 16 kHz WAV with the ffmpeg binary the test set-up installs."""
    process = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        "pipe:",
        "-f",
        "wav",
        "-ar",
        "16000",
        "-ac",
        "1",
        "pipe:",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate(data)
    return out
