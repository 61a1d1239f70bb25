"""A LiveLayer agent behind the same entities and Assist pipeline as a Layercode agent.

The LiveKit room is the fake one in tests/fake_room.py (no LiveKit server can run here), with
a scripted agent in it; the session endpoint is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import patch

from homeassistant.components.assist_pipeline import PipelineEventType
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.layercode.const import (
    CONF_AGENT_ID,
    CONF_API_KEY,
    CONF_BASE_URL,
    CONF_PROVIDER,
    DOMAIN,
    Provider,
)

from ..conftest import StartApp, until
from ..fake_room import FakeRoom, RoomScript, ScriptedAgent
from ..session_endpoint import SessionEndpoint, serve_session_endpoint
from ..signals import dominant_frequency
from .conftest import AGENT_ID, API_KEY, setup, unload
from .test_assist_pipeline import (
    create_pipeline,
    fetch,
    run_voice_turn,
    speech,
    voiced,
    wav_pcm,
)
from .test_setup_entities import AGENT_SPEAKING, AGENT_STATE, CONNECTION, StateLog, send_text

REPLY = "The kitchen light is on."


@pytest.fixture
async def endpoint(start_app: StartApp) -> SessionEndpoint:
    return await serve_session_endpoint(start_app)


@pytest.fixture
def rooms() -> Iterator[RoomScript]:
    """Every LiveKit room the integration opens is a fake one with a scripted agent."""
    script = RoomScript()

    def factory(handler: Any) -> FakeRoom:
        room = script.factory(handler)
        ScriptedAgent(room, reply=REPLY)
        return room

    with patch(
        "custom_components.layercode.client.livelayer.session.default_room_factory", factory
    ):
        yield script


def livelayer_entry(endpoint: SessionEndpoint) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title=AGENT_ID,
        unique_id=f"livelayer_{AGENT_ID}",
        data={
            CONF_PROVIDER: Provider.LIVELAYER,
            CONF_AGENT_ID: AGENT_ID,
            CONF_BASE_URL: endpoint.url,
            CONF_API_KEY: API_KEY,
        },
    )


@pytest.fixture
async def livelayer(
    hass: HomeAssistant, endpoint: SessionEndpoint, rooms: RoomScript
) -> AsyncIterator[MockConfigEntry]:
    entry = livelayer_entry(endpoint)
    await setup(hass, entry)
    yield entry
    await unload(hass, entry)
    assert all(room.left for room in rooms.rooms)


async def test_voice_turn_through_a_livelayer_agent(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    livelayer: MockConfigEntry,
    endpoint: SessionEndpoint,
    rooms: RoomScript,
) -> None:
    """The satellite's words reach the room; the agent's words and voice come back."""
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, livelayer.entry_id)})
    assert device is not None and device.manufacturer == "LiveLayer"
    log = StateLog(hass, AGENT_STATE, AGENT_SPEAKING, CONNECTION)
    pipeline = await create_pipeline(hass)

    events = await run_voice_turn(hass, pipeline, speech(0.6))

    assert events[PipelineEventType.STT_END]["stt_output"]["text"] == "turn on the kitchen light"
    reply = events[PipelineEventType.INTENT_END]["intent_output"]["response"]["speech"]
    assert reply["plain"]["speech"] == REPLY
    rate, pcm = wav_pcm(
        await fetch(hass_client, events[PipelineEventType.TTS_END]["tts_output"]["url"])
    )
    assert rate == 16000
    assert dominant_frequency(voiced(pcm), rate) == pytest.approx(440, abs=3)
    assert len(voiced(pcm)) == pytest.approx(0.4 * 16000 * 2, abs=640)

    (room,) = rooms.rooms
    assert rooms.connects == [("wss://rooms.test/2", "token-2")]  # 1: the set-up check
    _, headers, body = endpoint.requests[-1]
    assert headers["x-api-key"] == API_KEY
    assert body == {"agentId": AGENT_ID}
    assert room.microphone is not None
    published = voiced(room.microphone.audio)
    assert len(published) == pytest.approx(0.6 * 16000 * 2, abs=640)
    assert dominant_frequency(published, 16000) == pytest.approx(300, abs=3)

    # The agent speaks until its reply has played out, then listens again.
    await until(lambda: log.states[AGENT_STATE][-1:] == ["listening"])
    assert log.states[AGENT_STATE] == ["listening", "thinking", "speaking", "listening"]
    assert log.states[AGENT_SPEAKING] == ["on", "off"]
    assert hass.states.get(CONNECTION).state == "connected"  # type: ignore[union-attr]


async def test_unloadable_livekit_stops_setup_with_the_reason(
    hass: HomeAssistant,
    endpoint: SessionEndpoint,
    rooms: RoomScript,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where LiveKit's native library does not load, the entry says why and does not retry."""
    monkeypatch.setenv("LIVEKIT_LIB_PATH", "/nonexistent/liblivekit_ffi.so")
    entry = livelayer_entry(endpoint)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert "liblivekit_ffi.so" in (entry.reason or "")
    assert endpoint.requests == []


@pytest.mark.parametrize(
    ("status", "code", "state"),
    [
        (401, "key_expired", ConfigEntryState.SETUP_ERROR),
        (403, "key_wrong_org", ConfigEntryState.SETUP_ERROR),
        (400, "agent_has_no_org", ConfigEntryState.SETUP_ERROR),
        (503, None, ConfigEntryState.SETUP_RETRY),
    ],
)
async def test_session_endpoint_errors_at_setup(
    hass: HomeAssistant,
    endpoint: SessionEndpoint,
    rooms: RoomScript,
    status: int,
    code: str | None,
    state: ConfigEntryState,
) -> None:
    """Expired or foreign keys ask for new credentials; an outage retries; the rest stops."""
    endpoint.status, endpoint.error_code = status, code
    entry = livelayer_entry(endpoint)
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is state
    reauth = [
        f
        for f in hass.config_entries.flow.async_progress()
        if f["context"]["source"] == SOURCE_REAUTH
    ]
    assert bool(reauth) == (code in ("key_expired", "key_wrong_org"))
    assert rooms.rooms == []


async def test_key_expiring_while_running_starts_reauth(
    hass: HomeAssistant, livelayer: MockConfigEntry, endpoint: SessionEndpoint, rooms: RoomScript
) -> None:
    """The key expires during a conversation: the room drops and the rejoin is refused, so the
    agent is unavailable and Home Assistant asks for a new key with the LiveLayer form."""
    assert (await send_text(hass, livelayer, "hello"))["text"] == REPLY
    endpoint.status, endpoint.error_code = 401, "key_expired"
    (room,) = rooms.rooms
    room.drop("SIGNAL_CLOSE")

    await until(lambda: hass.states.get(CONNECTION).state == STATE_UNAVAILABLE)  # type: ignore[union-attr]
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress()
    assert [(f["context"]["source"], f["step_id"]) for f in flows] == [
        (SOURCE_REAUTH, "reauth_livelayer")
    ]
    assert len(rooms.rooms) == 1  # the refused rejoin opened no room
