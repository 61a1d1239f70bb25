"""Voice turns through real Assist pipelines made of the integration's three entities."""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
import contextlib
from dataclasses import dataclass
from datetime import timedelta
import io
import logging
from pathlib import Path
from typing import Any, ClassVar
import wave

from homeassistant.components import assist_pipeline, conversation, stt, tts
from homeassistant.components.assist_pipeline import (
    AudioSettings,
    PipelineEvent,
    PipelineEventType,
    PipelineStage,
)
from homeassistant.components.assist_pipeline.pipeline import KEY_ASSIST_PIPELINE
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.const import MAJOR_VERSION, MINOR_VERSION, STATE_OFF, Platform
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import intent, issue_registry as ir
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.util import dt as dt_util
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    async_fire_time_changed,
    mock_config_flow,
    mock_integration,
    mock_platform,
)
from pytest_homeassistant_custom_component.typing import (
    ClientSessionGenerator,
    WebSocketGenerator,
)

from custom_components.layercode.const import CONF_FALLBACK_TTS, DOMAIN
from custom_components.layercode.runtime import UNCLAIMED_AUDIO_TIMEOUT
from custom_components.layercode.tts import CACHE_CLEANUP_DELAY
from local_agent_server import EchoResponder, LocalAgentServer, Reply, SendData, Speak

from ..signals import dominant_frequency
from .conftest import AGENT_ID, API_KEY, make_entry, setup, unload
from .test_setup_entities import (
    AGENT_SPEAKING,
    AGENT_STATE,
    EVENTS,
    TIMEOUT,
    StateLog,
    until,
)

STT_ENTITY = "stt.ag_test"
TTS_ENTITY = "tts.ag_test_agent_voice"
AGENT_ENTITY = "conversation.ag_test"
RUN_TIMEOUT = 60.0
"""Bound on one pipeline run or download (the integration's own bounds are shorter)."""
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


async def create_pipeline(hass: HomeAssistant, **overrides: Any) -> str:
    """A pipeline of the integration's STT, agent and TTS; local intents off unless overridden."""
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
            **overrides,
        }
    )
    return str(pipeline.id)


@pytest.fixture
async def pipeline_id(hass: HomeAssistant, loaded: MockConfigEntry) -> str:
    """A pipeline of the three entities, local intents off."""
    return await create_pipeline(hass)


async def run_voice_turn(
    hass: HomeAssistant,
    pipeline_id: str,
    pcm: bytes | AsyncIterable[bytes],
    *,
    conversation_id: str | None = None,
    tts_audio_output: str | dict[str, Any] | None = "wav",
    end_stage: PipelineStage = PipelineStage.TTS,
    events: list[PipelineEvent] | None = None,
) -> dict[PipelineEventType, dict[str, Any]]:
    """One voice turn through the pipeline; the data of each event type."""
    events = [] if events is None else events
    async with asyncio.timeout(RUN_TIMEOUT):
        await assist_pipeline.async_pipeline_from_audio_stream(
            hass,
            context=Context(),
            event_callback=events.append,
            stt_metadata=METADATA,
            stt_stream=chunks(pcm) if isinstance(pcm, bytes) else pcm,
            pipeline_id=pipeline_id,
            conversation_id=conversation_id,
            tts_audio_output=tts_audio_output,
            audio_settings=AudioSettings(is_vad_enabled=False),
            end_stage=end_stage,
        )
    by_type = {event.type: event.data or {} for event in events}
    assert PipelineEventType.ERROR not in by_type, by_type[PipelineEventType.ERROR]
    return by_type


async def fetch(hass_client: ClientSessionGenerator, url: str) -> bytes:
    """What a satellite downloads from the TTS URL."""
    client = await hass_client()
    async with asyncio.timeout(RUN_TIMEOUT):
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


def voiced(pcm: bytes, threshold: int = 300) -> bytes:
    """The PCM from its first to its last audible sample: a TTS stream pads the agent's
    audio with silence (while the agent thinks, and a guard at the end)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    (loud,) = np.nonzero(np.abs(samples.astype(np.int32)) >= threshold)
    if not len(loud):
        return b""
    return samples[loud[0] : loud[-1] + 1].tobytes()


def agent_turns(server: LocalAgentServer) -> list[Any]:
    """Every finished agent turn the server sent, in order."""
    return [turn for c in server.conversations.values() for turn in c.turns]


async def test_voice_turn_plays_the_agents_own_audio(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """stt-end is the agent's transcript, intent-end its reply, the TTS URL its audio.

    The agent_state sensor follows the turn: it listens, thinks once the user's turn ends,
    speaks until its reply has played out, then listens again.
    """
    log = StateLog(hass, AGENT_STATE)
    events = await run_voice_turn(hass, pipeline_id, speech(1.0))
    assert events[PipelineEventType.STT_END]["stt_output"]["text"] == "heard 1000 ms of audio"
    speech_out = events[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]
    assert speech_out["plain"]["speech"] == "You said: heard 1000 ms of audio"
    url = events[PipelineEventType.TTS_END]["tts_output"]["url"]
    rate, pcm = wav_pcm(await fetch(hass_client, url))
    (turn,) = agent_turns(agent_server)
    assert rate == 16000
    assert abs(len(voiced(pcm)) - turn.audio_bytes) <= 8
    assert dominant_frequency(pcm, rate) == pytest.approx(440, abs=3)
    await until(lambda: log.states[AGENT_STATE][-1:] == ["listening"])
    assert log.states[AGENT_STATE] == ["listening", "thinking", "speaking", "listening"]


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
    seconds = len(voiced(pcm)) / 2 / out_rate
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


# -- helpers for the turn-store tests -------------------------------------------------------

TONE_SECONDS_PER_CHAR = 0.05
"""The local server's tone lasts 50 ms per character of the reply."""


def reply_of(events: dict[PipelineEventType, dict[str, Any]]) -> str:
    """The agent's reply text (intent-end)."""
    speech_out = events[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]
    return str(speech_out["plain"]["speech"])


def transcript_of(events: dict[PipelineEventType, dict[str, Any]]) -> str:
    """The agent's transcript of the user's audio (stt-end)."""
    return str(events[PipelineEventType.STT_END]["stt_output"]["text"])


def conversation_of(events: dict[PipelineEventType, dict[str, Any]]) -> str:
    """The Home Assistant conversation id the run answered in."""
    return str(events[PipelineEventType.INTENT_END]["intent_output"]["conversation_id"])


def tts_url_of(events: dict[PipelineEventType, dict[str, Any]]) -> str:
    """The TTS URL a satellite would play."""
    return str(events[PipelineEventType.TTS_END]["tts_output"]["url"])


async def played(hass_client: ClientSessionGenerator, url: str) -> tuple[float, float, int]:
    """Seconds, dominant frequency and byte count (16 kHz mono) of what a TTS URL serves."""
    rate, pcm = wav_pcm(await fetch(hass_client, url))
    assert rate == 16000
    pcm = voiced(pcm)
    return len(pcm) / 2 / rate, dominant_frequency(pcm, rate), len(pcm)


def connected_conversations(server: LocalAgentServer) -> list[Any]:
    """The server's conversations that had a WebSocket (set-up only authorizes)."""
    return [c for c in server.conversations.values() if c.session_ids]


async def finished_turns(server: LocalAgentServer, count: int) -> list[Any]:
    """The server's agent turns once `count` have finished (a turn is recorded when it ends:
    after its audio played, or when it was interrupted)."""
    await until(lambda: len(agent_turns(server)) >= count)
    return agent_turns(server)


class ScriptedResponder:
    """A backend that answers every user message with the same replies, and no welcome."""

    def __init__(self, *replies: Reply) -> None:
        self._replies = replies

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        """The scripted replies to a `message`; nothing for `session.start`."""
        if event.get("type") == "message":
            for reply in self._replies:
                yield reply

    async def data(self, event: Mapping[str, Any]) -> Any:
        """Acknowledge data messages."""
        return {"ok": True}


@dataclass
class Agent:
    """A local server of its own, an entry on it and a pipeline of the entry's entities."""

    server: LocalAgentServer
    entry: MockConfigEntry
    pipeline_id: str


type StartAgent = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def start_agent(hass: HomeAssistant) -> AsyncIterator[StartAgent]:
    """Start a local server with the given options, set up an entry and a pipeline on it.

    Entries are unloaded (and checked to leave no session open) and servers stopped at the end.
    """
    servers: list[LocalAgentServer] = []
    entries: list[MockConfigEntry] = []

    async def start(*, options: dict[str, Any] | None = None, **server_options: Any) -> Agent:
        server = LocalAgentServer(agent_id=AGENT_ID, api_key=API_KEY, **server_options)
        await server.start()
        servers.append(server)
        entry = make_entry(server, **(options or {}))
        await setup(hass, entry)
        entries.append(entry)
        return Agent(server, entry, await create_pipeline(hass))

    yield start
    for entry in entries:
        await unload(hass, entry)
    for server in servers:
        await server.stop()


# -- follow-up turns ------------------------------------------------------------------------


async def test_follow_up_turn_continues_the_layercode_conversation(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """A second run with the first run's conversation id talks to the same agent conversation."""
    first = await run_voice_turn(hass, pipeline_id, speech(0.5))
    conversation_id = conversation_of(first)
    second = await run_voice_turn(hass, pipeline_id, speech(0.8), conversation_id=conversation_id)

    assert conversation_of(second) == conversation_id
    assert transcript_of(second) == "heard 800 ms of audio"
    assert reply_of(second) == "You said: heard 800 ms of audio"
    seconds, frequency, size = await played(hass_client, tts_url_of(second))
    await finished_turns(agent_server, 2)
    (conversation,) = connected_conversations(agent_server)
    assert [turn.user_text for turn in conversation.turns] == [
        "heard 500 ms of audio",
        "heard 800 ms of audio",
    ]
    assert size == pytest.approx(conversation.turns[1].audio_bytes, abs=8)
    assert seconds == pytest.approx(len(reply_of(second)) * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(660, abs=3)


# -- concurrent conversations ---------------------------------------------------------------


async def test_concurrent_conversations_keep_their_own_turns(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """Two satellites talking at once: each run gets its own transcript, reply and audio."""
    both_started = asyncio.Barrier(2)

    async def overlapping(pcm: bytes) -> AsyncGenerator[bytes]:
        """Audio that starts only when the other run's audio has started too."""
        first = True
        async for chunk in chunks(pcm):
            yield chunk
            if first:
                first = False
                async with asyncio.timeout(TIMEOUT):
                    await both_started.wait()

    short, long = await asyncio.gather(
        run_voice_turn(hass, pipeline_id, overlapping(speech(0.4))),
        run_voice_turn(hass, pipeline_id, overlapping(speech(1.2))),
    )

    assert conversation_of(short) != conversation_of(long)
    assert transcript_of(short) == "heard 400 ms of audio"
    assert transcript_of(long) == "heard 1200 ms of audio"
    assert reply_of(short) == "You said: heard 400 ms of audio"
    assert reply_of(long) == "You said: heard 1200 ms of audio"

    audio = {
        transcript_of(events): await played(hass_client, tts_url_of(events))
        for events in (short, long)
    }
    await finished_turns(agent_server, 2)
    conversations = connected_conversations(agent_server)
    assert len(conversations) == 2
    by_user_text = {c.turns[0].user_text: c for c in conversations if len(c.turns) == 1}
    assert set(by_user_text) == {"heard 400 ms of audio", "heard 1200 ms of audio"}

    frequencies = set()
    for events in (short, long):
        (turn,) = by_user_text[transcript_of(events)].turns
        assert turn.agent_text == reply_of(events)
        seconds, frequency, size = audio[transcript_of(events)]
        assert size == pytest.approx(turn.audio_bytes, abs=8)
        assert seconds == pytest.approx(len(reply_of(events)) * TONE_SECONDS_PER_CHAR, abs=0.01)
        frequencies.add(round(frequency / 10) * 10)
    # Each reply was synthesized once, with its own tone: no run played the other's audio.
    assert frequencies == {440, 660}


# -- identical reply text -------------------------------------------------------------------


async def test_identical_reply_text_plays_each_turns_own_audio(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, start_agent: StartAgent
) -> None:
    """The same reply twice: the second URL serves the second turn's audio, not a cached copy."""
    agent = await start_agent(backend=EchoResponder(answer=lambda _: "Okay."))
    first = await run_voice_turn(hass, agent.pipeline_id, speech(0.5))
    _, first_frequency, _ = await played(hass_client, tts_url_of(first))
    second = await run_voice_turn(
        hass, agent.pipeline_id, speech(0.7), conversation_id=conversation_of(first)
    )
    _, second_frequency, _ = await played(hass_client, tts_url_of(second))
    assert reply_of(first) == reply_of(second) == "Okay."
    assert tts_url_of(first) != tts_url_of(second)
    assert first_frequency == pytest.approx(440, abs=3)
    assert second_frequency == pytest.approx(660, abs=3)


# -- a long reply: streamed to the speaker while the agent talks (2025.8+) --------------------


LONG_TAIL = ", and that is all I have to say."


@pytest.mark.parametrize("pace_audio", [False, True], ids=["burst", "real-time"])
async def test_long_reply_plays_all_of_the_agents_audio(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    start_agent: StartAgent,
    pace_audio: bool,
) -> None:
    """A reply over 60 characters, which Home Assistant 2025.8+ streams into the TTS stage.

    However the audio arrives (at once, or in real time as the agent speaks), the TTS URL
    plays all of that turn's audio.
    """
    agent = await start_agent(
        backend=EchoResponder(answer=lambda text: f"You said: {text}{LONG_TAIL}"),
        pace_audio=pace_audio,
    )
    events: list[PipelineEvent] = []
    by_type = await run_voice_turn(hass, agent.pipeline_id, speech(0.5), events=events)
    reply = reply_of(by_type)
    assert reply == f"You said: heard 500 ms of audio{LONG_TAIL}"
    assert len(reply) > 60
    if (MAJOR_VERSION, MINOR_VERSION) >= (2025, 8):
        assert any(
            e.type is PipelineEventType.INTENT_PROGRESS
            and (e.data or {}).get("tts_start_streaming")
            for e in events
        )

    seconds, frequency, size = await played(hass_client, tts_url_of(by_type))
    (turn,) = await finished_turns(agent.server, 1)
    assert size == pytest.approx(turn.audio_bytes, abs=8)
    assert seconds == pytest.approx(len(reply) * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(440, abs=3)


# -- the TTS file cache ---------------------------------------------------------------------


async def test_agent_replies_are_not_kept_on_disk(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """A turn's audio belongs to that turn: nothing of it should pile up in config/tts."""
    before = tts_cache_files(hass)
    events = await run_voice_turn(hass, pipeline_id, speech(0.5))
    await fetch(hass_client, tts_url_of(events))
    await hass.async_block_till_done(wait_background_tasks=True)
    written = [name for name in tts_cache_files(hass) - before if TTS_ENTITY in name]
    assert written  # Home Assistant keeps a copy at first ...
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=CACHE_CLEANUP_DELAY + 1))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert not [name for name in tts_cache_files(hass) if TTS_ENTITY in name]  # ... not for long


def tts_cache_files(hass: HomeAssistant) -> set[str]:
    """The files in Home Assistant's TTS file cache."""
    cache_dir = Path(hass.config.path("tts"))
    return {path.name for path in cache_dir.iterdir()} if cache_dir.is_dir() else set()


# -- an aborted run -------------------------------------------------------------------------


async def stalled_speech(seconds: float, fed: asyncio.Event) -> AsyncGenerator[bytes]:
    """`seconds` of speech, then a microphone that never ends (`fed` is set in between)."""
    async for chunk in chunks(speech(seconds)):
        yield chunk
    fed.set()
    await asyncio.Event().wait()


async def abort_run(
    hass: HomeAssistant, pipeline_id: str, conversation_id: str
) -> list[PipelineEvent]:
    """Start a run, and cancel it while its STT stream still waits for more audio (half a
    second has gone out); the events it emitted."""
    events: list[PipelineEvent] = []
    fed = asyncio.Event()
    run = hass.async_create_task(
        run_voice_turn(
            hass,
            pipeline_id,
            stalled_speech(0.5, fed),
            conversation_id=conversation_id,
            events=events,
        )
    )
    async with asyncio.timeout(TIMEOUT):
        await fed.wait()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    return events


async def test_aborted_run_leaks_nothing_into_the_next(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, start_agent: StartAgent
) -> None:
    """A run cancelled while its audio still flows: the next run hears and plays only itself.

    Every answer is "Okay.", so only the tone tells the turns apart: the first answer is
    440 Hz, the answer to the aborted half second 660 Hz, the next run's 880 Hz.
    """
    agent = await start_agent(backend=EchoResponder(answer=lambda _: "Okay."))
    log = StateLog(hass, EVENTS)
    first = await run_voice_turn(hass, agent.pipeline_id, speech(0.3))
    conversation_id = conversation_of(first)
    _, frequency, _ = await played(hass_client, tts_url_of(first))
    assert frequency == pytest.approx(440, abs=3)

    aborted_events = await abort_run(hass, agent.pipeline_id, conversation_id)
    assert PipelineEventType.STT_END not in {event.type for event in aborted_events}
    # The agent heard the aborted half second as a turn of its own and answered it in full,
    # audio and all: that answer is waiting, unplayed, when the next run starts.
    await until(lambda: log.event_types().count("agent_response") == 2)

    third = await run_voice_turn(
        hass, agent.pipeline_id, speech(1.5), conversation_id=conversation_id
    )
    assert conversation_of(third) == conversation_id
    assert transcript_of(third) == "heard 1500 ms of audio"
    assert reply_of(third) == "Okay."
    seconds, frequency, _ = await played(hass_client, tts_url_of(third))
    assert seconds == pytest.approx(len("Okay.") * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(880, abs=3)
    await finished_turns(agent.server, 3)
    (conversation,) = connected_conversations(agent.server)
    assert [t.user_text for t in conversation.turns] == [
        "heard 300 ms of audio",
        "heard 500 ms of audio",
        "heard 1500 ms of audio",
    ]


async def test_run_right_after_an_aborted_one_gets_its_own_answer(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """The next run starts at once, while the aborted turn's transcript and answer are on
    their way: the new run still gets its own transcript, reply and audio."""
    first = await run_voice_turn(hass, pipeline_id, speech(0.3))
    conversation_id = conversation_of(first)
    await played(hass_client, tts_url_of(first))
    await abort_run(hass, pipeline_id, conversation_id)

    third = await run_voice_turn(hass, pipeline_id, speech(1.5), conversation_id=conversation_id)
    assert transcript_of(third) == "heard 1500 ms of audio"
    assert reply_of(third) == "You said: heard 1500 ms of audio"
    seconds, _, size = await played(hass_client, tts_url_of(third))
    assert seconds == pytest.approx(len(reply_of(third)) * TONE_SECONDS_PER_CHAR, abs=0.01)
    await finished_turns(agent_server, 3)
    (conversation,) = connected_conversations(agent_server)
    assert [t.user_text for t in conversation.turns] == [
        "heard 300 ms of audio",
        "heard 500 ms of audio",
        "heard 1500 ms of audio",
    ]
    assert size == pytest.approx(conversation.turns[-1].audio_bytes, abs=8)


# -- continue_conversation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ((SendData({"continue_conversation": True}), Speak("Turning it on.")), True),
        ((Speak("Anything else?"), SendData({"continue_conversation": False})), False),
        ((Speak("Which room?"),), True),
        ((Speak("Done."),), False),
    ],
    ids=["flag-true", "flag-false-beats-question-mark", "question-mark", "plain"],
)
async def test_continue_conversation(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    start_agent: StartAgent,
    replies: tuple[Reply, ...],
    expected: bool,
) -> None:
    """The agent's own flag decides; without one, a reply ending in a question mark does."""
    agent = await start_agent(backend=ScriptedResponder(*replies))
    events = await run_voice_turn(hass, agent.pipeline_id, speech(0.5))
    assert reply_of(events) == next(r.text for r in replies if isinstance(r, Speak))
    assert events[PipelineEventType.INTENT_END]["intent_output"]["continue_conversation"] is (
        expected
    )
    await fetch(hass_client, tts_url_of(events))  # played, as a satellite would


# -- typed input ----------------------------------------------------------------------------


async def converse(hass: HomeAssistant, text: str) -> conversation.ConversationResult:
    """Typed text to the agent, the way the Assist dialog and conversation.process send it."""
    async with asyncio.timeout(RUN_TIMEOUT):
        return await conversation.async_converse(
            hass,
            text=text,
            conversation_id=None,
            context=Context(),
            language="en",
            agent_id=AGENT_ENTITY,
        )


async def test_typed_input_through_async_converse(
    hass: HomeAssistant, agent_server: LocalAgentServer, loaded: MockConfigEntry
) -> None:
    """Text typed to the agent (Assist dialog, conversation.process) gets the agent's reply."""
    result = await converse(hass, "what time is it")
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert result.response.speech["plain"]["speech"] == "You said: what time is it"
    (conversation_record,) = connected_conversations(agent_server)
    assert [e.text for e in conversation_record.transcript if e.role == "user"] == [
        "what time is it"
    ]


async def run_ws_pipeline(
    hass_ws_client: WebSocketGenerator, run: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Run a pipeline through the websocket API; the data of each event type."""
    client = await hass_ws_client()
    events: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(RUN_TIMEOUT):
        await client.send_json_auto_id({"type": "assist_pipeline/run", **run})
        result = await client.receive_json()
        assert result["success"], result
        while "run-end" not in events:
            message = await client.receive_json()
            event = message["event"]
            events[event["type"]] = event.get("data") or {}
    assert "error" not in events, events["error"]
    return events


async def test_typed_input_pipeline_plays_the_agents_audio(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    hass_ws_client: WebSocketGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """A pipeline from the intent stage (typed text) speaks the agent's own audio of the reply."""
    events = await run_ws_pipeline(
        hass_ws_client,
        {
            "start_stage": "intent",
            "end_stage": "tts",
            "input": {"text": "open the garage"},
            "pipeline": pipeline_id,
        },
    )
    speech_out = events["intent-end"]["intent_output"]["response"]["speech"]["plain"]["speech"]
    assert speech_out == "You said: open the garage"
    # The frontend's pipeline asks for mp3.
    data = await fetch(hass_client, events["tts-end"]["tts_output"]["url"])
    rate, pcm = wav_pcm(await decode_mp3(data))
    (turn,) = await finished_turns(agent_server, 1)
    assert turn.user_text == "open the garage"
    assert len(voiced(pcm)) / 2 / rate == pytest.approx(turn.audio_bytes / 2 / 16000, abs=0.15)
    assert dominant_frequency(pcm, rate) == pytest.approx(440, abs=3)


# -- text the agent did not say -------------------------------------------------------------


async def synthesize(hass: HomeAssistant, engine: str, message: str) -> bytes:
    """What a TTS stream of `engine` for `message` serves, as WAV."""
    stream = tts.async_create_stream(
        hass, engine, language="en", options={tts.ATTR_PREFERRED_FORMAT: "wav"}
    )
    stream.async_set_message(message)
    async with asyncio.timeout(TIMEOUT):
        return b"".join([chunk async for chunk in stream.async_stream_result()])


async def test_text_without_agent_audio_is_the_failure_cue_without_fallback(
    hass: HomeAssistant,
    hass_ws_client: WebSocketGenerator,
    hass_client: ClientSessionGenerator,
    pipeline_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No fallback engine: text the agent never said is the failure cue (heard, not silence),
    logged at INFO; with the agent's audio switched off, a short silence."""
    caplog.set_level(logging.INFO, logger="custom_components.layercode")
    rate, pcm = wav_pcm(await synthesize(hass, TTS_ENTITY, "The washing machine is done."))
    assert is_failure_cue(pcm, rate)
    assert any(
        record.levelno == logging.INFO
        and "no fallback TTS engine" in record.getMessage()
        and "The washing machine is done." in record.getMessage()
        for record in caplog.records
    )

    # The same through a pipeline that starts at the TTS stage (an announcement).
    events = await run_ws_pipeline(
        hass_ws_client,
        {
            "start_stage": "tts",
            "end_stage": "tts",
            "input": {"text": "Dinner is ready."},
            "pipeline": pipeline_id,
        },
    )
    rate, pcm = wav_pcm(
        await decode_mp3(await fetch(hass_client, events["tts-end"]["tts_output"]["url"]))
    )
    assert is_failure_cue(pcm, rate)

    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.ag_test_audio_output"}, blocking=True
    )
    rate, pcm = wav_pcm(await synthesize(hass, TTS_ENTITY, "Quiet, please."))
    assert 0 < len(pcm) / 2 / rate <= 1.0
    assert not any(pcm)


def ends_with_failure_cue(pcm: bytes, rate: int) -> bool:
    """Whether 16-bit PCM ends with the failure cue: 180 ms of 660 Hz, a 60 ms gap, 180 ms of
    440 Hz (looked at inside each tone, away from the edges)."""
    sound = voiced(pcm, threshold=1000)

    def window(start: float, end: float) -> bytes:
        """The audio from `start` to `end` seconds before the end."""
        return sound[len(sound) - int(rate * start) * 2 : len(sound) - int(rate * end) * 2]

    return (
        len(sound) >= int(rate * 0.4) * 2
        and abs(dominant_frequency(window(0.38, 0.26), rate) - 660) < 15
        and abs(dominant_frequency(window(0.16, 0.02), rate) - 440) < 15
    )


def is_failure_cue(pcm: bytes, rate: int) -> bool:
    """Whether 16-bit PCM is the failure cue and nothing else (silence aside)."""
    return ends_with_failure_cue(pcm, rate) and 0.37 < len(voiced(pcm, 1000)) / 2 / rate < 0.45


class ToneVoice(tts.TextToSpeechEntity):
    """A stand-in for another TTS engine (Piper, a cloud voice): a 1000 Hz tone as WAV."""

    _attr_name = "Tone voice"
    _attr_unique_id = "tone_voice"
    _attr_default_language = "en"
    _attr_supported_languages: ClassVar[list[str]] = ["en"]

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def async_get_tts_audio(
        self, message: str, language: str, options: dict[str, Any]
    ) -> tts.TtsAudioType:
        """One second of 1000 Hz at 16 kHz."""
        self.messages.append(message)
        t = np.arange(16000) / 16000
        pcm = (np.sin(2 * np.pi * 1000 * t) * 8000).astype("<i2").tobytes()
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16000)
            wav.writeframes(pcm)
        return "wav", out.getvalue()


FALLBACK_DOMAIN = "fallback_voice"
FALLBACK_ENTITY = "tts.tone_voice"


@pytest.fixture
async def fallback_voice(hass: HomeAssistant) -> AsyncIterator[ToneVoice]:
    """ToneVoice, set up as the TTS platform of another integration's config entry."""
    voice = ToneVoice()

    async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, [Platform.TTS])
        return True

    async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        return await hass.config_entries.async_unload_platforms(entry, [Platform.TTS])

    async def async_setup_platform(
        hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
    ) -> None:
        async_add_entities([voice])

    mock_integration(
        hass,
        MockModule(
            FALLBACK_DOMAIN,
            async_setup_entry=async_setup_entry,
            async_unload_entry=async_unload_entry,
        ),
    )
    mock_platform(hass, f"{FALLBACK_DOMAIN}.config_flow")
    mock_platform(
        hass, f"{FALLBACK_DOMAIN}.tts", MockPlatform(async_setup_entry=async_setup_platform)
    )
    with mock_config_flow(FALLBACK_DOMAIN, ConfigFlow):
        entry = MockConfigEntry(domain=FALLBACK_DOMAIN)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert hass.states.get(FALLBACK_ENTITY) is not None
        yield voice
        assert await hass.config_entries.async_unload(entry.entry_id)


async def test_text_without_agent_audio_uses_the_fallback_engine(
    hass: HomeAssistant, fallback_voice: ToneVoice, start_agent: StartAgent
) -> None:
    """With a fallback engine in the options, text the agent never said is spoken by it."""
    voice = fallback_voice
    await start_agent(options={CONF_FALLBACK_TTS: FALLBACK_ENTITY})
    rate, pcm = wav_pcm(await synthesize(hass, TTS_ENTITY, "The washing machine is done."))
    assert voice.messages == ["The washing machine is done."]
    # The fallback engine's stream is mp3 (its default format): encoder padding.
    assert len(pcm) / 2 / rate == pytest.approx(1.0, abs=0.15)
    assert dominant_frequency(pcm, rate) == pytest.approx(1000, abs=5)


# -- the repair issue for local intents -----------------------------------------------------


async def test_prefer_local_intents_raises_and_clears_a_repair_issue(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    loaded: MockConfigEntry,
) -> None:
    """A pipeline with our agent that answers locally first gets an issue, until switched off."""
    pipeline_id = await create_pipeline(hass, name="Kitchen", prefer_local_intents=True)
    issue_id = f"prefer_local_intents_{pipeline_id}"
    registry = ir.async_get(hass)

    events = await run_voice_turn(hass, pipeline_id, speech(0.5))
    assert reply_of(events) == "You said: heard 500 ms of audio"  # not a local intent
    await fetch(hass_client, tts_url_of(events))
    issue = registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.WARNING
    assert issue.translation_key == "prefer_local_intents"
    assert issue.translation_placeholders == {"pipeline": "Kitchen"}

    await assist_pipeline.async_update_pipeline(
        hass, assist_pipeline.async_get_pipeline(hass, pipeline_id), prefer_local_intents=False
    )
    await converse(hass, "hello")
    assert registry.async_get_issue(DOMAIN, issue_id) is None


# -- audio nobody plays ---------------------------------------------------------------------


async def test_unplayed_audio_is_released_within_the_bound(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    agent_server: LocalAgentServer,
    pipeline_id: str,
) -> None:
    """A run that ends at the intent stage: its audio is dropped and the server told it played."""
    events = await run_voice_turn(hass, pipeline_id, speech(0.5), end_stage=PipelineStage.INTENT)
    assert PipelineEventType.TTS_START not in events
    async with asyncio.timeout(UNCLAIMED_AUDIO_TIMEOUT + TIMEOUT):
        while not agent_turns(agent_server):
            await asyncio.sleep(0.05)
    (turn,) = agent_turns(agent_server)
    assert turn.audio_bytes > 0
    assert turn.replay_finished
    assert not turn.interrupted
    assert hass.states.get(AGENT_SPEAKING).state == STATE_OFF  # type: ignore[union-attr]

    # The next turn in that conversation plays its own answer, not the dropped one.
    follow_up = await run_voice_turn(
        hass, pipeline_id, speech(0.8), conversation_id=conversation_of(events)
    )
    seconds, frequency, _ = await played(hass_client, tts_url_of(follow_up))
    assert seconds == pytest.approx(len(reply_of(follow_up)) * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(660, abs=3)
