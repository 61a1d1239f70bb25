"""Real satellites: a satellite that behaves like ESPHome's voice assistant on a Voice PE.

It fetches the TTS URL as ESPHome does and judges the reply by that stream: it gives up when no
audio has arrived 2 seconds after it got the URL, its HTTP client gives up after 5 seconds
without data, it plays what arrives at real-time speed (after a short start-up delay), and with
continued conversation it opens its microphone as soon as the stream ends. Everything asserted
is computed from the audio it played and the events it saw, with generous margins; the
millisecond figures are measured by `script/bench`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
import itertools
from typing import Any

from homeassistant.components import tts
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.components.assist_satellite import (
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
)
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.setup import async_setup_component
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import async_mock_service
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
import yarl

from custom_components.layercode import runtime as runtime_module
from custom_components.layercode.client.audio import AGENT_RATE
from custom_components.layercode.runtime import LayercodeRuntime
from local_agent_server import EchoResponder, Reply, Speak, ToneTextToSpeech

from ..signals import dominant_frequency
from . import test_assist_pipeline
from .test_assist_pipeline import StartAgent, speech
from .test_assist_satellite import PIPELINE_SELECT, installed
from .test_setup_entities import AGENT_SPEAKING, EVENTS, until

start_agent = test_assist_pipeline.start_agent

PLAYBACK_START_TIMEOUT = 2.0
"""ESPHome ends the reply if playback has not started this long after it got the TTS URL."""
HTTP_TIMEOUT = 5.0
"""The Voice PE's HTTP client gives up after this long without data."""
SPEAKER_DELAY = 0.1
"""From a byte's arrival to its sound: decoding and the speaker's buffer."""
SPEECH_SECONDS = 0.4
MS_PER_CHAR = 20.0
"""The agent's tone voice, shortened so that twenty turns fit in a test."""
WAIT = 60.0


@dataclass
class PlayedReply:
    """One reply as the satellite fetched and played it."""

    url_at: float
    data_at: float | None = None
    """When the first audio (not just the header) arrived."""
    ended_at: float | None = None
    """When the stream ended: the reply is over "by the satellite's own measure"."""
    gave_up: str | None = None
    streamed: bool = False
    """Home Assistant opened the stream while the agent was still answering (2025.8+)."""
    sound: list[tuple[float, float, np.ndarray[Any, np.dtype[np.int16]]]] = field(
        default_factory=list
    )
    """(time it arrived, time it plays, samples) for everything played, silence included."""

    def audible(self, threshold: int = 200) -> tuple[float, float] | None:
        """When its first and last audible samples play."""
        first: float | None = None
        last: float | None = None
        for _, start, samples in self.sound:
            (loud,) = np.nonzero(np.abs(samples.astype(np.int32)) >= threshold)
            if len(loud):
                if first is None:
                    first = start + loud[0] / AGENT_RATE
                last = start + (loud[-1] + 1) / AGENT_RATE
        return None if first is None or last is None else (first, last)

    def loudest_between(self, start: float, end: float) -> int:
        """The loudest sample that plays between `start` and `end` (what a microphone hears)."""
        loudest = 0
        for _, at, samples in self.sound:
            first = max(0, int((start - at) * AGENT_RATE))
            last = min(len(samples), int((end - at) * AGENT_RATE))
            if first < last:
                loudest = max(loudest, int(np.abs(samples[first:last].astype(np.int32)).max()))
        return loudest

    def loudest_arriving_after(self, moment: float) -> int:
        """The loudest sample that arrived after `moment`."""
        late = [samples for arrived, _, samples in self.sound if arrived > moment]
        return max((int(np.abs(s.astype(np.int32)).max()) for s in late if len(s)), default=0)

    def pcm(self) -> bytes:
        """Everything played, in order."""
        return b"".join(samples.tobytes() for _, _, samples in self.sound)


@dataclass
class Run:
    """One pipeline run of the satellite."""

    started_at: float
    speech_ended_at: float | None = None
    events: list[tuple[float, PipelineEvent]] = field(default_factory=list)
    reply: PlayedReply | None = None
    continues: bool = False

    def at(self, event_type: PipelineEventType) -> float | None:
        """When the run's first event of that type came."""
        return next((t for t, e in self.events if e.type is event_type), None)

    def error(self) -> dict[str, Any] | None:
        """The run's error event data, if any."""
        return next(
            (e.data or {} for _, e in self.events if e.type is PipelineEventType.ERROR), None
        )


class EsphomeLikeSatellite(AssistSatelliteEntity):
    """Plays replies as ESPHome's voice assistant does (see the module docstring)."""

    _attr_name = "Kitchen satellite"
    _attr_unique_id = "kitchen_satellite"
    _attr_pipeline_entity_id = PIPELINE_SELECT

    def __init__(self, open_url: Callable[[str], Any]) -> None:
        self._attr_tts_options = {tts.ATTR_PREFERRED_FORMAT: "wav"}
        self._open_url = open_url
        self.runs: list[Run] = []
        self.turns_left = 0
        """How many more runs continued conversation may start."""
        self.idle = asyncio.Event()
        self._playing: set[asyncio.Task[None]] = set()
        self._starting: list[Run] = []
        """Runs asked for whose run-start has not come: events before it are the last run's
        (a cancelled run still reports its end)."""
        self._receiving: Run | None = None

    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        """No wake words (the test wakes it)."""
        return AssistSatelliteConfiguration(
            available_wake_words=[], active_wake_words=[], max_active_wake_words=0
        )

    async def async_set_configuration(self, config: AssistSatelliteConfiguration) -> None:
        """Nothing to configure."""

    async def wake(self, seconds: float = SPEECH_SECONDS, turns: int = 1) -> Run:
        """The wake word: a run with `seconds` of speech; continued conversation for `turns`."""
        self.turns_left = turns - 1
        self.idle.clear()
        return await self._listen(seconds)

    async def _listen(self, seconds: float) -> Run:
        loop = asyncio.get_running_loop()
        run = Run(loop.time())
        self.runs.append(run)
        self._starting.append(run)
        self.hass.async_create_task(
            self.async_accept_pipeline_from_satellite(_microphone(speech(seconds), run))
        )
        return run

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Record the event; fetch the reply when its URL comes (streaming or at tts-end)."""
        if event.type is PipelineEventType.RUN_START and self._starting:
            self._receiving = self._starting.pop(0)
        run = self._receiving or self.runs[-1]
        run.events.append((asyncio.get_running_loop().time(), event))
        data = event.data or {}
        if event.type is PipelineEventType.INTENT_END:
            run.continues = bool(data.get("intent_output", {}).get("continue_conversation"))
        url: str | None = None
        if event.type is PipelineEventType.TTS_END:
            url = data.get("tts_output", {}).get("url")
        elif event.type is PipelineEventType.INTENT_PROGRESS and data.get("tts_start_streaming"):
            start = next(e for _, e in run.events if e.type is PipelineEventType.RUN_START)
            url = (start.data or {}).get("tts_output", {}).get("url")
        if url and run.reply is None:
            run.reply = PlayedReply(
                asyncio.get_running_loop().time(),
                streamed=event.type is PipelineEventType.INTENT_PROGRESS,
            )
            task = self.hass.async_create_task(self._play(run, url))
            self._playing.add(task)
            task.add_done_callback(self._playing.discard)
        elif event.type is PipelineEventType.RUN_END and run.reply is None:
            self._done(run)

    async def _play(self, run: Run, url: str) -> None:
        reply = run.reply
        assert reply is not None
        loop = asyncio.get_running_loop()
        playhead = 0.0
        header = b""
        try:
            async with await self._open_url(yarl.URL(url).path_qs) as response:
                stream = response.content.iter_any()
                while True:
                    limit = HTTP_TIMEOUT
                    if reply.data_at is None:
                        limit = min(limit, reply.url_at + PLAYBACK_START_TIMEOUT - loop.time())
                    try:
                        async with asyncio.timeout(max(limit, 0.0)):
                            data = await anext(stream, None)
                    except TimeoutError:
                        reply.gave_up = (
                            "playback did not start" if reply.data_at is None else "HTTP timeout"
                        )
                        return
                    if data is None:
                        break
                    if len(header) < 44:
                        header, data = (header + data)[:44], (header + data)[44:]
                    if len(data) < 2:
                        continue
                    now = loop.time()
                    if reply.data_at is None:
                        reply.data_at = now
                    samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
                    playhead = max(playhead, now + SPEAKER_DELAY)
                    reply.sound.append((now, playhead, samples))
                    playhead += len(samples) / AGENT_RATE
            reply.ended_at = loop.time()
        finally:
            self.tts_response_finished()
            if run.continues and self.turns_left > 0 and reply.gave_up is None:
                self.turns_left -= 1
                await self._listen(SPEECH_SECONDS)
            else:
                self._done(run)

    def _done(self, run: Run) -> None:
        """A run is over; the satellite is idle if it was the latest one."""
        if run is self.runs[-1]:
            self.idle.set()

    async def stop_playing(self) -> None:
        """Cancel any reply still playing."""
        for task in list(self._playing):
            task.cancel()
        await asyncio.gather(*self._playing, return_exceptions=True)


async def _microphone(pcm: bytes, run: Run) -> AsyncGenerator[bytes]:
    """The satellite's microphone: 10 ms chunks at real-time speed, then the end of speech."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index, offset in enumerate(range(0, len(pcm), 320)):
        yield pcm[offset : offset + 320]
        await asyncio.sleep(max(0.0, start + (index + 1) * 0.01 - loop.time()))
    run.speech_ended_at = loop.time()


class LaggingVoice(ToneTextToSpeech):
    """The agent's voice, starting `lag` seconds after its text (a slow speech engine)."""

    def __init__(self, lag: float) -> None:
        super().__init__(ms_per_char=MS_PER_CHAR)
        self.lag = lag

    async def synthesize(self, text: str) -> AsyncGenerator[bytes]:
        """The tone, after the lag."""
        await asyncio.sleep(self.lag)
        async for chunk in super().synthesize(text):
            yield chunk


class SpeakingLog:
    """When the agent-speaking sensor turned on and off, and the turn_finished events."""

    def __init__(self, hass: HomeAssistant) -> None:
        self.changes: list[tuple[float, str]] = []
        self.turns: list[dict[str, Any]] = []

        @callback
        def record(event: Event[EventStateChangedData]) -> None:
            new = event.data["new_state"]
            if new is None:
                return
            if new.entity_id == AGENT_SPEAKING:
                self.changes.append((hass.loop.time(), new.state))
            elif new.attributes.get("event_type") == "turn_finished":
                self.turns.append(dict(new.attributes))

        self.remove = async_track_state_change_event(hass, [AGENT_SPEAKING, EVENTS], record)

    def spans(self) -> list[tuple[float, float]]:
        """(on, off) times of the sensor."""
        ons = [t for t, state in self.changes if state == STATE_ON]
        offs = [t for t, state in self.changes if state == STATE_OFF]
        return list(zip(ons, offs, strict=False))


@pytest.fixture
async def satellite(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> AsyncIterator[EsphomeLikeSatellite]:
    """An EsphomeLikeSatellite on the "Layercode" pipeline (the test starts the agent)."""
    await hass.config.async_update(internal_url="http://homeassistant.local:8123")
    clients: list[Any] = []

    async def open_url(path: str) -> Any:
        if not clients:  # Home Assistant's HTTP server starts with the agent's entry
            clients.append(await hass_client())
        return await clients[0].get(path)

    entity = EsphomeLikeSatellite(open_url)
    async with installed(hass, entity):
        yield entity
        await entity.stop_playing()


async def settle(satellite: EsphomeLikeSatellite) -> None:
    """Wait until the satellite has finished its runs and replies."""
    async with asyncio.timeout(WAIT):
        await satellite.idle.wait()


def assert_heard(run: Run) -> tuple[float, float]:
    """The run's reply was played and had the agent's tone in it; when it was audible."""
    reply = run.reply
    assert reply is not None, f"no reply: {run.error()}"
    assert reply.gave_up is None, reply.gave_up
    span = reply.audible()
    assert span is not None, "the reply was silent"
    return span


def assert_speaking_state_true(log: SpeakingLog, spans: list[tuple[float, float]]) -> None:
    """The speaking sensor's on/off follow the audio, with generous margins."""
    assert len(log.spans()) == len(spans)
    for (on, off), (audible, silent) in zip(log.spans(), spans, strict=True):
        assert audible - 0.6 <= on <= audible + 0.2
        assert silent - 0.3 <= off <= silent + 1.5


def long_answer(text: str) -> str:
    """An answer of over 60 characters."""
    return f"You said: {text}. That is all I have to say about that, really."


@pytest.mark.parametrize("lag", [0.3, 3.0, 8.0])
async def test_the_reply_is_heard_however_long_the_agent_takes(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite, lag: float
) -> None:
    """The stream starts at once and carries silence until the agent's voice comes.

    The reply is long enough (over 60 characters) that Home Assistant 2025.8+ opens the TTS
    stream while the agent is still speaking: the stream then waits for the agent's voice.
    """
    await start_agent(tts=LaggingVoice(lag), backend=EchoResponder(answer=long_answer))
    log = SpeakingLog(hass)
    run = await satellite.wake()
    await settle(satellite)
    span = assert_heard(run)
    reply = run.reply
    assert reply is not None and reply.data_at is not None
    assert reply.data_at - reply.url_at < PLAYBACK_START_TIMEOUT
    if reply.streamed:  # silence, then the voice
        assert span[0] - reply.url_at >= lag - 0.5
    assert dominant_frequency(reply.pcm(), AGENT_RATE) == pytest.approx(440, abs=3)
    await until(lambda: len(log.turns) == 1)
    assert_speaking_state_true(log, [span])
    log.remove()


async def test_twenty_continued_turns_never_hear_the_reply(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    start_agent: StartAgent,
    satellite: EsphomeLikeSatellite,
) -> None:
    """Continued conversation: the microphone reopens when the stream ends, never while the
    agent is audible; the speaking state and the turn timings follow every turn."""
    # Diagnostics registers its HTTP views: before the satellite's client starts the server.
    assert await async_setup_component(hass, "diagnostics", {})
    agent = await start_agent(
        tts=ToneTextToSpeech(ms_per_char=MS_PER_CHAR),
        backend=EchoResponder(answer=lambda text: f"You said {text}. Anything else?"),
    )
    log = SpeakingLog(hass)
    await satellite.wake(turns=20)
    await settle(satellite)
    runs = satellite.runs
    assert len(runs) == 20
    spans = [assert_heard(run) for run in runs]
    for run, following in itertools.pairwise(runs):
        assert run.reply is not None
        heard = run.reply.loudest_between(
            following.started_at, following.started_at + SPEECH_SECONDS
        )
        assert heard == 0, f"the microphone heard the reply (peak {heard})"
    await until(lambda: len(log.turns) == 20)
    assert_speaking_state_true(log, spans)
    for timings in log.turns:
        order = [
            timings["transcript_ms"],
            timings["first_text_ms"],
            timings["first_audio_ms"],
            timings["playback_end_ms"],
        ]
        assert None not in order and order == sorted(order), timings
    assert len(agent.server.recordings) == 1  # one session, twenty turns
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, agent.entry)
    recent = diagnostics["recent_turns"]
    assert len(recent) == 10
    assert recent[-1]["first_audio_ms"] == log.turns[-1]["first_audio_ms"]
    log.remove()


async def test_an_unreachable_agent_is_a_pipeline_error_and_the_next_turn_works(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """The server is gone: the run ends with an error at once; once it is back, a turn works."""
    agent = await start_agent()
    port = yarl.URL(agent.server.base_url).port
    await agent.server.stop()
    failed = await satellite.wake()
    await settle(satellite)
    error = failed.error()
    assert error is not None
    assert (failed.at(PipelineEventType.ERROR) or 0) - failed.started_at < 3.0 + SPEECH_SECONDS

    await agent.server.start(port=port or 0)
    working = await satellite.wake()
    await settle(satellite)
    assert_heard(working)


async def test_a_revoked_key_is_a_pipeline_error_and_the_next_turn_works(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """A 401 from authorize ends the run with an error; with the key valid again, a turn works."""
    agent = await start_agent()
    valid, agent.server.api_key = agent.server.api_key, "sk_rotated"
    failed = await satellite.wake()
    await settle(satellite)
    assert failed.error() is not None

    agent.server.api_key = valid
    working = await satellite.wake()
    await settle(satellite)
    assert_heard(working)


def is_failure_cue(pcm: bytes) -> bool:
    """Whether the end of what was played is the failure cue (660 Hz, then 440 Hz)."""
    return test_assist_pipeline.is_failure_cue(pcm, AGENT_RATE)


async def test_a_dropped_socket_mid_reply_ends_with_the_failure_cue(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """The connection drops while the agent speaks: what came is played, then the failure
    cue, soon after the drop; the session resumes and the next turn works."""
    agent = await start_agent(
        tts=ToneTextToSpeech(ms_per_char=100.0, frequencies=(880.0,)), pace_audio=True
    )
    runtime: LayercodeRuntime = agent.entry.runtime_data

    def agent_speaks() -> bool:
        turns = [c.session.agent_turn for c in runtime.conversations.values()]
        return any(turn is not None and turn.audio_bytes_received > 0 for turn in turns)

    run = await satellite.wake()
    await until(agent_speaks, WAIT)
    await asyncio.sleep(0.3)
    await agent.server.drop_connections()
    dropped = hass.loop.time()
    await settle(satellite)
    reply = run.reply
    assert reply is not None and reply.gave_up is None and reply.ended_at is not None
    assert test_assist_pipeline.ends_with_failure_cue(reply.pcm(), AGENT_RATE)
    span = reply.audible()
    assert span is not None and span[1] - dropped < 3.0

    working = await satellite.wake()
    await settle(satellite)
    assert_heard(working)


class SilentOnce:
    """An agent backend that never answers the first message, then echoes."""

    def __init__(self) -> None:
        self._echo = EchoResponder()
        self.silent = True

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        """Hang on the first message (until the server gives up on it)."""
        if event.get("type") == "message" and self.silent:
            self.silent = False
            await asyncio.sleep(WAIT)
            yield Speak("too late")
            return
        async for reply in self._echo.reply(event):
            yield reply

    async def data(self, event: Mapping[str, Any]) -> Any:
        """Echo data."""
        return await self._echo.data(event)


async def test_an_agent_that_never_answers_is_heard_as_a_failure(
    hass: HomeAssistant,
    start_agent: StartAgent,
    satellite: EsphomeLikeSatellite,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No answer within the bound: the user hears the failure cue (no fallback voice is set)
    and the agent's "did not answer" reply is in the run; the next turn works."""
    monkeypatch.setattr(runtime_module, "REPLY_TIMEOUT", 2.0)
    await start_agent(backend=SilentOnce())
    run = await satellite.wake()
    await settle(satellite)
    reply = run.reply
    assert reply is not None and reply.gave_up is None and reply.ended_at is not None
    intent_end = next(e for _, e in run.events if e.type is PipelineEventType.INTENT_END)
    response = (intent_end.data or {})["intent_output"]["response"]
    assert response["response_type"] == "error"
    assert response["speech"]["plain"]["speech"] == "The agent did not answer. Please try again."
    assert is_failure_cue(reply.pcm())
    intent_start = run.at(PipelineEventType.INTENT_START)
    span = reply.audible()
    assert intent_start is not None and span is not None
    assert span[0] - intent_start < 2.0 + 3.0

    working = await satellite.wake()
    await settle(satellite)
    assert_heard(working)


@pytest.mark.parametrize("streaming", [True, False], ids=["while-it-arrives", "all-arrived"])
async def test_a_new_run_stops_the_agent(
    hass: HomeAssistant,
    start_agent: StartAgent,
    satellite: EsphomeLikeSatellite,
    streaming: bool,
) -> None:
    """The wake word while the agent speaks: its stream ends and nothing of it comes after the
    new run starts, and the speaking state goes off then, whether its audio is still arriving
    (then its turn is also interrupted on the wire) or has all arrived and is still playing.

    The agent's audio can still be arriving while the satellite plays only where Home
    Assistant opens the TTS stream before the agent's turn has ended (2025.8+, replies over 60
    characters); before, the first case is the second.
    """
    agent = await start_agent(
        tts=ToneTextToSpeech(ms_per_char=40.0, frequencies=(880.0,)),
        backend=EchoResponder(answer=long_answer),
        pace_audio=streaming,
    )
    log = SpeakingLog(hass)
    first = await satellite.wake()
    await until(lambda: first.reply is not None and first.reply.audible() is not None, WAIT)
    second = await satellite.wake()
    await until(lambda: first.reply is not None and first.reply.ended_at is not None, WAIT)
    reply = first.reply
    assert reply is not None and reply.ended_at is not None
    audible = reply.audible()
    assert audible is not None and reply.ended_at < audible[1]  # cut before it played out
    assert reply.ended_at - second.started_at < 1.0
    assert reply.loudest_arriving_after(second.started_at + 0.3) == 0
    (off, _) = next((t, s) for t, s in log.changes if s == STATE_OFF)
    assert off - second.started_at < 1.0
    await settle(satellite)
    if streaming and reply.streamed:
        # The first conversation the agent answered in (the new run may have a new one).
        conversation = next(c for c in agent.server.conversations.values() if c.turns)
        await until(lambda: conversation.turns[0].interrupted, WAIT)
    assert_heard(second)
    assert log.changes[-1][1] == STATE_OFF
    log.remove()


async def test_an_automation_runs_when_the_agent_is_heard(
    hass: HomeAssistant, start_agent: StartAgent, satellite: EsphomeLikeSatellite
) -> None:
    """The README's automation: turn the TV down when the agent starts speaking."""
    calls = async_mock_service(hass, "test", "automation")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": {"trigger": "state", "entity_id": AGENT_SPEAKING, "to": "on"},
                "actions": {"action": "test.automation"},
            }
        },
    )
    await start_agent()
    await satellite.wake()
    await settle(satellite)
    await until(lambda: len(calls) == 1)
