"""Satellite section (issue #12): what a satellite that behaves like ESPHome's sees.

Run by each Home Assistant version's pytest (`script/bench` does it), with the integration
tests' satellite (tests/integration/test_real_satellites.py: it fetches the TTS URL, plays at
real-time speed, reopens its microphone when the stream ends) and a local agent server in the
same process. Four figures:

1. Time to first audio on the TTS stream: from the satellite getting the URL to the first audio
   bytes (not the header), with an agent whose voice comes 0.3 s and 3 s after its text.
   Target: under 1 s (ESPHome gives up at 2 s).
2. Speaking-state error: `agent_speaking` on minus the arrival of the agent's first audio at
   the satellite, and off minus the moment the agent's audio has played out there.
   Targets: on within 100 ms, off within 1 s.
3. Stop latency: from a new run's start (wake word while the agent speaks) to the interruption
   on the wire (`vad_start` at the server) and to the last agent audio reaching the satellite.
   Target: 50 ms.
4. Cold against warm first turn: end of speech to the first agent audio at the satellite, on
   an open session and after the session was closed as idle; against one authorize round trip
   measured in the same run. Target: cold minus warm at most one authorize.
"""

from __future__ import annotations

import itertools
import time

from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
import numpy as np

from custom_components.layercode.client import Authorizer
from custom_components.layercode.runtime import LayercodeRuntime
from local_agent_server import EchoResponder, ToneTextToSpeech
from tests.conftest import until
from tests.integration.conftest import AGENT_ID, API_KEY
from tests.integration.test_assist_pipeline import StartAgent, start_agent
from tests.integration.test_real_satellites import (
    MS_PER_CHAR,
    SPEAKER_DELAY,
    EsphomeLikeSatellite,
    LaggingVoice,
    Run,
    SpeakingLog,
    long_answer,
    satellite,
    settle,
)

from .common import SectionResult, quick

__all__ = ["satellite", "start_agent"]  # the fixtures this module uses

RUNS = 2 if quick() else 5
TURNS = 3 if quick() else 8
WAIT = 60.0


def stats(values: list[float]) -> str:
    """`p50 / max` in ms."""
    if not values:
        return "-"
    array = np.array(values) * 1000
    return f"{np.percentile(array, 50):.0f} / {array.max():.0f}"


def audible_arrivals(run: Run, threshold: int = 200) -> list[float]:
    """When each audible piece of the reply arrived at the satellite."""
    sound = run.reply.sound if run.reply else []
    return [
        arrived
        for arrived, _, samples in sound
        if len(samples) and int(np.abs(samples.astype(np.int32)).max()) >= threshold
    ]


def first_agent_audio(run: Run) -> float | None:
    """When the reply's first audible sample arrived at the satellite."""
    return next(iter(audible_arrivals(run)), None)


async def wake_and_settle(satellite: EsphomeLikeSatellite, **kwargs: int) -> Run:
    """One run (or a continued series), to the end."""
    run = await satellite.wake(**kwargs)
    await settle(satellite)
    return run


RESULT = SectionResult("satellite", "Satellite (ESPHome-like): first audio, speaking state, stop")
"""Filled by the tests below in order (one agent each) and written after each."""
RESULT.notes.append(
    "The satellite and the agent server run in Home Assistant's process and loop; "
    f"the satellite's speaker starts {SPEAKER_DELAY * 1000:.0f} ms after data arrives."
)


async def test_time_to_first_audio(
    start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """Figure 1."""
    await time_to_first_audio(start_agent, satellite, RESULT)
    RESULT.write()


async def test_speaking_state(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """Figure 2."""
    await speaking_state(hass, start_agent, satellite, RESULT)
    RESULT.write()


async def test_stop_latency(start_agent: StartAgent, satellite: EsphomeLikeSatellite) -> None:
    """Figure 3."""
    await stop_latency(start_agent, satellite, RESULT)
    RESULT.write()


async def test_cold_against_warm(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """Figure 4."""
    await cold_against_warm(hass, start_agent, satellite, RESULT)
    RESULT.write()


async def time_to_first_audio(
    start_agent: StartAgent, satellite: EsphomeLikeSatellite, result: SectionResult
) -> None:
    """URL to first audio bytes, with the agent's voice late after its text."""
    voice = LaggingVoice(0.0)
    await start_agent(tts=voice, backend=EchoResponder(answer=long_answer))
    for lag in (0.3, 3.0):
        voice.lag = lag
        waits: list[float] = []
        streamed = 0
        for _ in range(RUNS if lag < 1 else max(2, RUNS // 4)):
            run = await wake_and_settle(satellite)
            reply = run.reply
            if reply is not None and reply.data_at is not None:
                waits.append(reply.data_at - reply.url_at)
                streamed += reply.streamed
        result.add(
            f"TTS URL to first audio bytes, voice {lag:g} s after text "
            f"({streamed} of {len(waits)} streamed while the agent spoke)",
            stats(waits),
            "ms p50 / max",
            str(len(waits)),
            "< 1000 ms",
            bool(waits) and max(waits) < 1.0,
        )


async def speaking_state(
    hass: HomeAssistant,
    start_agent: StartAgent,
    satellite: EsphomeLikeSatellite,
    result: SectionResult,
) -> None:
    """The sensor's on/off against the audio, over continued turns."""
    await start_agent(
        tts=ToneTextToSpeech(ms_per_char=MS_PER_CHAR),
        backend=EchoResponder(answer=lambda text: f"You said {text}. Anything else?"),
    )
    log = SpeakingLog(hass)
    first = len(satellite.runs)
    await wake_and_settle(satellite, turns=TURNS)
    await until(lambda: len(log.spans()) >= TURNS, WAIT)
    ons: list[float] = []
    offs: list[float] = []
    echoes = 0
    runs = satellite.runs[first:]
    for run, (on, off) in zip(runs, log.spans(), strict=False):
        arrived = first_agent_audio(run)
        span = run.reply.audible() if run.reply else None
        if arrived is None or span is None:
            continue
        ons.append(on - arrived)
        offs.append(off - span[1])
    for run, following in itertools.pairwise(runs):
        if run.reply and run.reply.loudest_between(
            following.started_at, following.speech_ended_at or 0
        ):
            echoes += 1
    log.remove()
    result.add(
        "agent_speaking on - first agent audio at the satellite",
        stats([abs(v) for v in ons]),
        "ms |error| p50 / max",
        str(len(ons)),
        "< 100 ms",
        bool(ons) and max(abs(v) for v in ons) < 0.1,
    )
    result.add(
        "agent_speaking off - agent audio played out at the satellite",
        stats([abs(v) for v in offs]),
        "ms |error| p50 / max",
        str(len(offs)),
        "< 1000 ms",
        bool(offs) and max(abs(v) for v in offs) < 1.0,
    )
    result.add(
        "Continued turns whose microphone heard the reply",
        str(echoes),
        "turns",
        str(max(len(runs) - 1, 0)),
        "0",
        echoes == 0,
    )


async def stop_latency(
    start_agent: StartAgent, satellite: EsphomeLikeSatellite, result: SectionResult
) -> None:
    """Wake word while the agent speaks: interruption on the wire, last late audio."""
    agent = await start_agent(
        tts=ToneTextToSpeech(ms_per_char=100.0, frequencies=(880.0,)), pace_audio=True
    )
    wire: list[float] = []
    late: list[float] = []
    for _ in range(RUNS):
        speaking = await satellite.wake()
        await until(lambda: first_agent_audio(speaking) is not None, WAIT)  # noqa: B023
        frames_before = len(agent.server.recordings[-1].frames)
        stop = await satellite.wake()
        await settle(satellite)
        recording = agent.server.recordings[-1]
        vad = next(
            (
                frame.at
                for frame in recording.frames[frames_before:]
                if frame.message and frame.message.get("type") == "vad_events"
            ),
            None,
        )
        # The server's clock is time.monotonic(); the loop's is too, by default.
        if vad is not None:
            wire.append(vad - stop.started_at)
        if speaking.reply is not None:
            last = max(audible_arrivals(speaking), default=stop.started_at)
            late.append(max(0.0, last - stop.started_at))
    result.add(
        "New run to vad_start at the server (interruption on the wire)",
        stats(wire),
        "ms p50 / max",
        str(len(wire)),
        "< 50 ms",
        bool(wire) and max(wire) < 0.05,
    )
    result.add(
        "New run to the last agent audio reaching the satellite",
        stats(late),
        "ms p50 / max",
        str(len(late)),
        "< 50 ms",
        bool(late) and max(late) < 0.05,
    )


async def cold_against_warm(
    hass: HomeAssistant,
    start_agent: StartAgent,
    satellite: EsphomeLikeSatellite,
    result: SectionResult,
) -> None:
    """End of speech to first agent audio: warm session, and after an idle close."""
    agent = await start_agent(tts=ToneTextToSpeech(ms_per_char=MS_PER_CHAR))
    runtime: LayercodeRuntime = agent.entry.runtime_data
    warm: list[float] = []
    cold: list[float] = []
    for _ in range(RUNS):
        await runtime.async_end_conversation()  # the session closes, as when idle
        for times in (cold, warm):
            run = await wake_and_settle(satellite)
            arrived = first_agent_audio(run)
            if arrived is not None and run.speech_ended_at is not None:
                times.append(arrived - run.speech_ended_at)
    authorizer = Authorizer(agent.server.authorize_url, agent_id=AGENT_ID, api_key=API_KEY)
    session = async_get_clientsession(hass)  # the one the runtime authorizes with
    rounds: list[float] = []
    for _ in range(RUNS):
        start = time.monotonic()
        await authorizer(session)
        rounds.append(time.monotonic() - start)
    extra = float(np.median(cold) - np.median(warm)) if cold and warm else float("nan")
    result.add(
        "End of speech to first agent audio, warm session",
        stats(warm),
        "ms p50 / max",
        str(len(warm)),
    )
    result.add(
        "End of speech to first agent audio, after an idle close",
        stats(cold),
        "ms p50 / max",
        str(len(cold)),
    )
    result.add(
        "Cold minus warm (medians), against one authorize round trip",
        f"{extra * 1000:.0f} vs {np.median(rounds) * 1000:.0f}",
        "ms",
        f"{len(cold)} / {len(rounds)}",
        "cold - warm <= one authorize",
        bool(cold and warm) and extra <= float(np.median(rounds)) + 0.005,
    )
