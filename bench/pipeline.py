"""Section 3: whole voice turns through a real Assist pipeline, timed, then profiled.

Run by each Home Assistant version's pytest (`script/bench` does it), under the harness the
integration tests use: the `hass` fixture, an entry made by the tests' `make_entry`, a
pipeline of the integration's STT, conversation and TTS entities. The agent is the local
server with its deterministic engines (transcript and echo reply at once, a tone for a voice)
in its own process on the other core, so that Home Assistant's loop and CPU are its own.

One turn: 600 ms of speech in 10 ms chunks at real time, then the audio stream ends (where
Home Assistant's VAD would end it); from that moment, when stt-end, intent-end and tts-end
fire, and when a satellite stand-in that fetches the TTS URL at tts-end gets the first byte,
the first audio byte and the last byte. Three TTS formats: the entity's own WAV (no
conversion), WAV with the sample options ESPHome and Wyoming satellites set, and mp3 (what
the browser asks for); Home Assistant converts the last two with ffmpeg.
All turns after the first continue one conversation (a warm session).

CPU: the process's `process_time` and its ffmpeg children's per timed turn; then a few more
turns under cProfile, split by where the code lives (bench/profiles.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
import gc
import resource
import time
from typing import TYPE_CHECKING, Any, cast

from homeassistant.components import assist_pipeline
from homeassistant.components.assist_pipeline import (
    AudioSettings,
    PipelineEvent,
    PipelineEventType,
)
from homeassistant.components.assist_pipeline.pipeline import KEY_ASSIST_PIPELINE
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import Context, HomeAssistant
import pytest
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from tests.integration.conftest import AGENT_ID, API_KEY, make_entry, setup, unload
from tests.integration.test_assist_pipeline import METADATA

from . import profiles
from .agent_process import AgentProcess
from .common import SectionResult, chunked, median, quick, speech

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    from local_agent_server import LocalAgentServer

SPEECH_SECONDS = 0.6
CHUNK_SECONDS = 0.01
TIMED_TURNS = 2 if quick() else 8
PROFILED_TURNS = 1 if quick() else 3
RUN_TIMEOUT = 60.0
VARIANTS: dict[str, str | dict[str, Any]] = {
    "WAV, no conversion": {"preferred_format": "wav"},
    "WAV 16 kHz as ESPHome/Wyoming ask (ffmpeg)": {
        "preferred_format": "wav",
        "preferred_sample_rate": 16000,
        "preferred_sample_channels": 1,
        "preferred_sample_bytes": 2,
    },
    "mp3 via ffmpeg (browser)": "mp3",
}
"""What the pipeline asks the TTS stage for. Home Assistant converts with ffmpeg whenever the
format differs from the entity's WAV or any sample option is set (2025.4 and 2026.2 alike)."""
MARKS = ("stt-end", "intent-end", "tts-end", "first_byte", "first_audio", "last_byte")
LABELS = {
    "stt-end": "end of speech -> stt-end",
    "intent-end": "end of speech -> intent-end",
    "tts-end": "end of speech -> tts-end",
    "first_byte": "end of speech -> first byte at the TTS URL",
    "first_audio": "end of speech -> first audio byte at the TTS URL",
    "last_byte": "end of speech -> last byte at the TTS URL",
}


@dataclass(slots=True)
class Turn:
    """Monotonic times of one turn's milestones, and its conversation."""

    marks: dict[str, float] = field(default_factory=dict)
    conversation_id: str | None = None
    audio_bytes: int = 0

    def since_speech_end(self, mark: str) -> float:
        """Seconds from the end of speech to `mark`."""
        return self.marks[mark] - self.marks["speech_end"]


@pytest.fixture
def agent() -> Iterator[AgentProcess]:
    """The local server, echoing, for the agent and key the tests' `make_entry` uses."""
    process = AgentProcess.start(answer=None, agent_id=AGENT_ID, api_key=API_KEY)
    yield process
    process.stop()


async def _create_pipeline(hass: HomeAssistant) -> str:
    """A pipeline of the entry's three entities, local intents off (as the README asks)."""
    pipeline = await hass.data[KEY_ASSIST_PIPELINE].pipeline_store.async_create_item(
        {
            "name": "Layercode bench",
            "language": "en",
            "conversation_engine": f"conversation.{AGENT_ID}",
            "conversation_language": "en",
            "prefer_local_intents": False,
            "stt_engine": f"stt.{AGENT_ID}",
            "stt_language": "en",
            "tts_engine": f"tts.{AGENT_ID}_agent_voice",
            "tts_language": "en",
            "tts_voice": None,
            "wake_word_entity": None,
            "wake_word_id": None,
        }
    )
    return str(pipeline.id)


async def _satellite_audio(turn: Turn) -> AsyncGenerator[bytes]:
    """The satellite's microphone: 10 ms chunks at real time, then the end of speech."""
    due = time.monotonic()
    for chunk in chunked(speech(SPEECH_SECONDS)):
        due += CHUNK_SECONDS
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        yield chunk
    turn.marks["speech_end"] = time.monotonic()


def _audio_offset(head: bytes) -> int | None:
    """Where the samples start in a WAV stream's first bytes (None: not seen yet); 0 for mp3."""
    if not head.startswith(b"RIFF"):
        return 0
    data = head.find(b"data", 12)
    return None if data < 0 else data + 8


async def _fetch(client: TestClient[Any, Any], url: str, turn: Turn) -> None:
    """What a satellite does with the TTS URL: download it, noting first and last bytes."""
    response = await client.get(url)
    assert response.status == 200, response.status
    head = b""
    async for data in response.content.iter_any():
        now = time.monotonic()
        turn.marks.setdefault("first_byte", now)
        turn.audio_bytes += len(data)
        if "first_audio" not in turn.marks:
            head += data
            offset = _audio_offset(head)
            if offset is not None and len(head) > offset:
                turn.marks["first_audio"] = now
    turn.marks["last_byte"] = time.monotonic()


async def _voice_turn(
    hass: HomeAssistant,
    client: TestClient[Any, Any],
    pipeline_id: str,
    output: str | dict[str, Any],
    conversation_id: str | None,
) -> Turn:
    """One turn through the pipeline and the TTS URL."""
    turn = Turn()
    fetches: list[asyncio.Task[None]] = []

    def on_event(event: PipelineEvent) -> None:
        now = time.monotonic()
        turn.marks.setdefault(str(event.type), now)
        data = event.data or {}
        if event.type is PipelineEventType.INTENT_END:
            turn.conversation_id = data["intent_output"]["conversation_id"]
        elif event.type is PipelineEventType.TTS_END:
            url = data["tts_output"]["url"]
            fetches.append(hass.async_create_task(_fetch(client, url, turn)))
        elif event.type is PipelineEventType.ERROR:
            raise AssertionError(f"pipeline error: {data}")

    async with asyncio.timeout(RUN_TIMEOUT):
        await assist_pipeline.async_pipeline_from_audio_stream(
            hass,
            context=Context(),
            event_callback=on_event,
            stt_metadata=METADATA,
            stt_stream=_satellite_audio(turn),
            pipeline_id=pipeline_id,
            conversation_id=conversation_id,
            tts_audio_output=output,
            audio_settings=AudioSettings(is_vad_enabled=False),
        )
        await asyncio.gather(*fetches)
    missing = [mark for mark in MARKS if mark not in turn.marks]
    assert not missing, f"turn without {missing}: {turn.marks}"
    return turn


class _GcPauses:
    """A `gc.callbacks` entry that adds up the time the cyclic collector runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def test_voice_turns(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, agent: AgentProcess
) -> None:
    """Timed turns, then profiled turns, per TTS format; writes the section's JSON."""
    asyncio.get_running_loop().set_debug(False)
    # make_entry reads only the server's two URLs, which the agent process has too.
    entry = make_entry(cast("LocalAgentServer", agent))
    await setup(hass, entry)
    pipeline_id = await _create_pipeline(hass)
    client = await hass_client()
    result = SectionResult(
        "pipeline", f"3. Whole voice turn through an Assist pipeline, Home Assistant {HA_VERSION}"
    )
    first = await _voice_turn(hass, client, pipeline_id, "mp3", None)  # cold: opens the session
    conversation_id = first.conversation_id
    profile = None
    raw: dict[str, Any] = {"cold_turn_ms": {m: first.since_speech_end(m) * 1000 for m in MARKS}}
    for label, output in VARIANTS.items():
        await _voice_turn(hass, client, pipeline_id, output, conversation_id)  # warm-up
        turns: list[Turn] = []
        gc_pauses = _GcPauses()
        gc.callbacks.append(gc_pauses)
        cpu, children = time.process_time(), _children_cpu()
        try:
            for _ in range(TIMED_TURNS):
                turns.append(await _voice_turn(hass, client, pipeline_id, output, conversation_id))
        finally:
            gc.callbacks.remove(gc_pauses)
        cpu = (time.process_time() - cpu) / TIMED_TURNS
        children = (_children_cpu() - children) / TIMED_TURNS
        # cProfile charges a collection to whatever function triggered it: paused here, the
        # collections' cost is in the CPU row instead.
        gc.collect()
        gc.disable()
        try:
            with profiles.profiled() as variant_profile:
                for _ in range(PROFILED_TURNS):
                    await _voice_turn(hass, client, pipeline_id, output, conversation_id)
        finally:
            gc.enable()
        _add_variant(
            result, label, turns, (cpu, children, gc_pauses.seconds / TIMED_TURNS), variant_profile
        )
        raw[label] = {
            "turns_ms": [{m: t.since_speech_end(m) * 1000 for m in MARKS} for t in turns],
            "process_cpu_ms": cpu * 1000,
            "ffmpeg_cpu_ms": children * 1000,
            "profile_ms": {
                k: v * 1000 / PROFILED_TURNS for k, v in profiles.by_group(variant_profile).items()
            },
            "top_layercode_ms": [
                (name, seconds * 1000 / PROFILED_TURNS)
                for name, seconds in profiles.top_functions(variant_profile, 8, profiles.LAYERCODE)
            ],
        }
        profile = variant_profile
    assert profile is not None
    result.notes.append(
        f"Per format: {TIMED_TURNS} timed turns, then {PROFILED_TURNS} turns under cProfile "
        "(not timed; cyclic GC paused, its pauses are in the CPU row). Turn: "
        f"{SPEECH_SECONDS * 1000:.0f} ms of speech at real time; the agent "
        "(local server, own process, other core) answers 'You said: heard 600 ms of audio' "
        "with 1.55 s of tone. The satellite stand-in fetches the TTS URL at tts-end. Cold "
        "first turn (opens the Layercode session), mp3: "
        + ", ".join(f"{m} {raw['cold_turn_ms'][m]:.0f} ms" for m in MARKS)
        + ". Process CPU includes the bench's satellite stand-in (audio feed, TTS download)."
    )
    result.data = raw
    await unload(hass, entry)
    result.write()


def _add_variant(
    result: SectionResult,
    label: str,
    turns: list[Turn],
    cpu_per_turn: tuple[float, float, float],
    profile: Any,
) -> None:
    cpu, children, gc_pauses = cpu_per_turn
    runs = f"{len(turns)} turns"
    for mark in MARKS:
        values = [t.since_speech_end(mark) * 1000 for t in turns]
        result.add(
            f"{label}: {LABELS[mark]}",
            f"{median(values):.1f} / {max(values):.1f}",
            "ms median / max",
            runs,
        )
    result.add(
        f"{label}: CPU per turn, Home Assistant process (+ ffmpeg); of it, GC pauses",
        f"{cpu * 1000:.1f} (+ {children * 1000:.1f}); GC {gc_pauses * 1000:.1f}",
        "CPU ms per turn",
        runs,
    )
    groups = profiles.by_group(profile)
    total = sum(groups.values()) or 1.0
    layercode = sum(groups.get(name, 0.0) for name in profiles.LAYERCODE)
    result.add(
        f"{label}: share of the loop's CPU, layercode vs the rest",
        f"layercode {layercode / total * 100:.1f} % "
        f"({layercode * 1000 / PROFILED_TURNS:.1f} ms/turn); "
        + profiles.shares({k: v for k, v in groups.items() if k not in profiles.LAYERCODE}),
        "% of profiled CPU",
        f"{PROFILED_TURNS} turns",
    )
    result.notes.append(
        f"{label}, layercode's heaviest functions (own time incl. built-ins they call, per "
        "turn): "
        + "; ".join(
            f"{name} {seconds * 1000 / PROFILED_TURNS:.2f} ms"
            for name, seconds in profiles.top_functions(profile, 6, profiles.LAYERCODE)
        )
    )
