"""A voice satellite whose pipeline is the agent's: its runs, and conversations it starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from typing import Any

from homeassistant.components import tts
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType
from homeassistant.components.assist_satellite import (
    AssistSatelliteAnnouncement,
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
    AssistSatelliteEntityFeature,
)
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
import yarl

from custom_components.layercode.const import DOMAIN
from local_agent_server import EchoResponder

from . import test_assist_pipeline
from .test_assist_pipeline import (
    TONE_SECONDS_PER_CHAR,
    StartAgent,
    chunks,
    connected_conversations,
    decode_mp3,
    dominant_frequency,
    fetch,
    finished_turns,
    speech,
    stalled_speech,
    voiced,
    wav_pcm,
)
from .test_setup_entities import TIMEOUT

start_agent = test_assist_pipeline.start_agent
"""The fixture that starts a local server, an entry and a pipeline named "Layercode"."""

SATELLITE_DOMAIN = "test_satellite"
SATELLITE = "assist_satellite.kitchen_satellite"
PIPELINE_SELECT = "select.kitchen_satellite_assistant"
"""The satellite's pipeline choice, as ESPHome and Wyoming satellites have one."""
WELCOME = "Hi, what can I do?"

type Play = Callable[[str], Awaitable[bytes]]


class MockSatellite(AssistSatelliteEntity):
    """A satellite that records its pipeline events and plays what Home Assistant sends it.

    Playing means downloading the URL to the end, as a speaker does: the TTS URL at tts-end,
    the announcement's media in `async_start_conversation` (which returns once played).
    """

    _attr_name = "Kitchen satellite"
    _attr_unique_id = "kitchen_satellite"
    _attr_supported_features = (
        AssistSatelliteEntityFeature.START_CONVERSATION | AssistSatelliteEntityFeature.ANNOUNCE
    )
    _attr_pipeline_entity_id = PIPELINE_SELECT

    def __init__(self, play: Play) -> None:
        self._attr_tts_options = {tts.ATTR_PREFERRED_FORMAT: "wav"}
        self._play = play
        self.events: list[PipelineEvent] = []
        self.announcements: list[AssistSatelliteAnnouncement] = []
        self.played: list[bytes] = []
        self.response_played = asyncio.Event()

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Record the event; play the reply once its URL is known."""
        self.events.append(event)
        if event.type is PipelineEventType.TTS_END and event.data:
            self.hass.async_create_task(self._play_response(event.data["tts_output"]["url"]))

    async def _play_response(self, url: str) -> None:
        self.played.append(await self._play(url))
        self.tts_response_finished()
        self.response_played.set()

    async def async_announce(self, announcement: AssistSatelliteAnnouncement) -> None:
        """Play the announcement."""
        self.announcements.append(announcement)
        self.played.append(await self._play(announcement.media_id))

    async def async_start_conversation(
        self, start_announcement: AssistSatelliteAnnouncement
    ) -> None:
        """Play the start announcement, then listen (the test runs the pipeline)."""
        self.announcements.append(start_announcement)
        self.played.append(await self._play(start_announcement.media_id))

    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        """No wake words."""
        return AssistSatelliteConfiguration(
            available_wake_words=[], active_wake_words=[], max_active_wake_words=0
        )

    async def async_set_configuration(self, config: AssistSatelliteConfiguration) -> None:
        """Nothing to configure."""

    def event_data(self, event_type: PipelineEventType) -> dict[str, Any]:
        """The data of the run's event of that type."""
        (data,) = [e.data or {} for e in self.events if e.type is event_type]
        return data


@pytest.fixture
async def satellite(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> AsyncIterator[MockSatellite]:
    """A MockSatellite of another integration's config entry, set to the "Layercode" pipeline.

    The test starts the agent and creates that pipeline (named "Layercode").
    """
    await hass.config.async_update(internal_url="http://homeassistant.local:8123")

    async def play(url: str) -> bytes:
        return await fetch(hass_client, yarl.URL(url).path_qs)

    entity = MockSatellite(play)
    async with installed(hass, entity):
        yield entity


@contextlib.asynccontextmanager
async def installed(hass: HomeAssistant, entity: AssistSatelliteEntity) -> AsyncIterator[None]:
    """`entity` as the satellite of another integration's config entry, on the pipeline named
    "Layercode" (which the test creates), like an ESPHome or Wyoming satellite."""

    async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, [Platform.ASSIST_SATELLITE])
        return True

    async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        return await hass.config_entries.async_unload_platforms(entry, [Platform.ASSIST_SATELLITE])

    async def async_setup_platform(
        hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
    ) -> None:
        async_add_entities([entity])

    mock_integration(
        hass,
        MockModule(
            SATELLITE_DOMAIN,
            async_setup_entry=async_setup_entry,
            async_unload_entry=async_unload_entry,
        ),
    )
    mock_platform(hass, f"{SATELLITE_DOMAIN}.config_flow")
    mock_platform(
        hass,
        f"{SATELLITE_DOMAIN}.assist_satellite",
        MockPlatform(async_setup_entry=async_setup_platform),
    )
    hass.states.async_set(PIPELINE_SELECT, "Layercode")
    with mock_config_flow(SATELLITE_DOMAIN, ConfigFlow):
        entry = MockConfigEntry(domain=SATELLITE_DOMAIN)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert hass.states.get(SATELLITE) is not None
        yield
        assert await hass.config_entries.async_unload(entry.entry_id)


def tone(wav: bytes) -> tuple[float, float]:
    """Seconds and dominant frequency of 16-bit mono WAV."""
    rate, pcm = wav_pcm(wav)
    pcm = voiced(pcm)
    return len(pcm) / 2 / rate, dominant_frequency(pcm, rate)


async def listen(satellite: MockSatellite, seconds: float) -> None:
    """The satellite streams `seconds` of speech and plays the reply."""
    satellite.response_played.clear()
    async with asyncio.timeout(TIMEOUT):
        await satellite.async_accept_pipeline_from_satellite(chunks(speech(seconds)))
        await satellite.response_played.wait()


async def test_satellite_run_plays_the_agents_reply(
    hass: HomeAssistant, start_agent: StartAgent, satellite: MockSatellite
) -> None:
    """A satellite run gets the agent's transcript and reply, and plays the agent's audio."""
    agent = await start_agent()
    await listen(satellite, 1.0)

    types = [event.type for event in satellite.events]
    assert PipelineEventType.ERROR not in types
    for event_type in (
        PipelineEventType.STT_END,
        PipelineEventType.INTENT_END,
        PipelineEventType.TTS_END,
    ):
        assert event_type in types
    stt_output = satellite.event_data(PipelineEventType.STT_END)["stt_output"]
    assert stt_output["text"] == "heard 1000 ms of audio"
    intent_output = satellite.event_data(PipelineEventType.INTENT_END)["intent_output"]
    reply = intent_output["response"]["speech"]["plain"]["speech"]
    assert reply == "You said: heard 1000 ms of audio"

    (audio,) = satellite.played
    seconds, frequency = tone(audio)
    (turn,) = await finished_turns(agent.server, 1)
    assert turn.agent_text == reply
    assert seconds == pytest.approx(turn.audio_bytes / 2 / 16000, abs=0.01)
    assert seconds == pytest.approx(len(reply) * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(440, abs=3)
    assert hass.states.get(SATELLITE).state == "idle"  # type: ignore[union-attr]


async def test_send_text_announces_the_agents_answer_on_a_satellite(
    hass: HomeAssistant, start_agent: StartAgent, satellite: MockSatellite
) -> None:
    """layercode.send_text with a satellite: the reply comes back, and the agent's own voice
    saying it is announced there, without a chime; twice, each turn its own audio."""
    assert await async_setup_component(hass, "media_source", {})  # default_config has it
    agent = await start_agent()
    for count, (text, frequency) in enumerate(
        (("Remind me to water the plants", 440), ("Remind me to water the plants", 660)),
        start=1,
    ):
        async with asyncio.timeout(TIMEOUT):
            response = await hass.services.async_call(
                DOMAIN,
                "send_text",
                {"config_entry_id": agent.entry.entry_id, "text": text, "satellite": SATELLITE},
                blocking=True,
                return_response=True,
            )
        assert response is not None
        assert response["text"] == f"You said: {text}"
        assert len(satellite.announcements) == count
        assert satellite.announcements[-1].preannounce_media_id is None
        # An announcement is played in Home Assistant's default format, mp3.
        seconds, heard = tone(await decode_mp3(satellite.played[-1]))
        turns = await finished_turns(agent.server, count)
        assert seconds == pytest.approx(turns[-1].audio_bytes / 2 / 16000, abs=0.15)
        assert heard == pytest.approx(frequency, abs=3)


async def test_start_conversation_speaks_the_agents_welcome_and_continues(
    hass: HomeAssistant, start_agent: StartAgent, satellite: MockSatellite
) -> None:
    """start_conversation without a message: the agent speaks first, then the user answers.

    The announcement is the agent's own welcome, and the satellite's next run continues the
    Layercode conversation that the welcome opened.
    """
    agent = await start_agent(backend=EchoResponder(welcome=WELCOME))
    async with asyncio.timeout(TIMEOUT):
        await hass.services.async_call(
            "assist_satellite",
            "start_conversation",
            {"entity_id": SATELLITE, "start_message": "", "preannounce": False},
            blocking=True,
        )
    (announcement,) = satellite.announcements
    assert announcement.message == ""
    assert announcement.media_id_source == "tts"
    (welcome_audio,) = satellite.played
    seconds, frequency = tone(welcome_audio)
    assert seconds == pytest.approx(len(WELCOME) * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(440, abs=3)

    await listen(satellite, 1.0)
    assert PipelineEventType.ERROR not in [event.type for event in satellite.events]
    intent_output = satellite.event_data(PipelineEventType.INTENT_END)["intent_output"]
    reply = intent_output["response"]["speech"]["plain"]["speech"]
    assert reply == "You said: heard 1000 ms of audio"
    seconds, frequency = tone(satellite.played[1])
    assert seconds == pytest.approx(len(reply) * TONE_SECONDS_PER_CHAR, abs=0.01)
    assert frequency == pytest.approx(660, abs=3)

    await finished_turns(agent.server, 2)
    (conversation,) = connected_conversations(agent.server)
    assert [(t.user_text, t.agent_text) for t in conversation.turns] == [
        (None, WELCOME),
        ("heard 1000 ms of audio", reply),
    ]


async def test_new_satellite_run_cancels_the_running_one(
    hass: HomeAssistant, start_agent: StartAgent, satellite: MockSatellite
) -> None:
    """The user speaks again while a run still streams: the satellite cancels that run.

    The new run continues the conversation, hears only its own audio and plays its own reply.
    """
    agent = await start_agent()
    await listen(satellite, 1.0)

    fed = asyncio.Event()
    satellite.events.clear()
    running = hass.async_create_task(
        satellite.async_accept_pipeline_from_satellite(stalled_speech(0.5, fed))
    )
    async with asyncio.timeout(TIMEOUT):
        await fed.wait()
    satellite.response_played.clear()
    async with asyncio.timeout(TIMEOUT):
        # Home Assistant cancels the running pipeline before it starts the new one.
        await satellite.async_accept_pipeline_from_satellite(chunks(speech(0.8)))
        await satellite.response_played.wait()
    assert running.done()

    stt_output = satellite.event_data(PipelineEventType.STT_END)["stt_output"]
    assert stt_output["text"] == "heard 800 ms of audio"
    intent_output = satellite.event_data(PipelineEventType.INTENT_END)["intent_output"]
    reply = intent_output["response"]["speech"]["plain"]["speech"]
    assert reply == "You said: heard 800 ms of audio"
    seconds, _ = tone(satellite.played[-1])
    assert seconds == pytest.approx(len(reply) * TONE_SECONDS_PER_CHAR, abs=0.01)

    await finished_turns(agent.server, 3)
    (conversation,) = connected_conversations(agent.server)
    assert [t.user_text for t in conversation.turns] == [
        "heard 1000 ms of audio",
        "heard 500 ms of audio",
        "heard 800 ms of audio",
    ]
    assert conversation.turns[-1].audio_bytes / 2 / 16000 == pytest.approx(seconds, abs=0.01)
