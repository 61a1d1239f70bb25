"""Set-up, entities, actions, diagnostics and automations against the local agent server."""

from __future__ import annotations

import asyncio
from datetime import timedelta
import logging
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    EVENT_HOMEASSISTANT_STOP,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_mock_service,
    mock_restore_cache,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.layercode.const import (
    CONF_AGENT_ID,
    CONF_API_KEY,
    CONF_IDLE_TIMEOUT,
    DOMAIN,
)
from custom_components.layercode.runtime import InputSource, LayercodeRuntime
from local_agent_server import EchoResponder, LocalAgentServer, SendData, Speak
from local_agent_server.keys import SessionKeys

from ..conftest import until
from .conftest import AGENT_ID, API_KEY, make_entry, setup, unload

MUTE = "switch.ag_test_mute"
AUDIO_OUTPUT = "switch.ag_test_audio_output"
AGENT_SPEAKING = "binary_sensor.ag_test_agent_speaking"
USER_SPEAKING = "binary_sensor.ag_test_user_speaking"
CONNECTION = "sensor.ag_test_connection"
AGENT_STATE = "sensor.ag_test_agent_state"
USER_AMPLITUDE = "sensor.ag_test_user_audio_level"
AGENT_AMPLITUDE = "sensor.ag_test_agent_audio_level"
EVENTS = "event.ag_test_conversation"
TIMEOUT = 10.0


class StateLog:
    """Every state an entity takes, in order."""

    def __init__(self, hass: HomeAssistant, *entity_ids: str) -> None:
        self.states: dict[str, list[str]] = {entity_id: [] for entity_id in entity_ids}
        self.events: list[dict[str, Any]] = []

        @callback
        def record(event: Event[EventStateChangedData]) -> None:
            new: State | None = event.data["new_state"]
            if new is None:
                return
            self.states[event.data["entity_id"]].append(new.state)
            if new.entity_id == EVENTS and new.state != STATE_UNKNOWN:
                self.events.append(dict(new.attributes))

        self.remove = async_track_state_change_event(hass, list(entity_ids), record)

    def event_types(self) -> list[str]:
        """The event entity's event types, in order."""
        return [attrs["event_type"] for attrs in self.events]


async def send_text(hass: HomeAssistant, entry: MockConfigEntry, text: str, **extra: Any) -> Any:
    """Call layercode.send_text and return its response."""
    return await hass.services.async_call(
        DOMAIN,
        "send_text",
        {"config_entry_id": entry.entry_id, "text": text, **extra},
        blocking=True,
        return_response=True,
    )


def connected_conversations(server: LocalAgentServer) -> list[Any]:
    """The server's conversations that had a WebSocket (set-up only authorizes)."""
    return [c for c in server.conversations.values() if c.session_ids]


async def test_setup_creates_device_and_entities(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    """One service device; entities with their initial states; amplitudes disabled."""
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, loaded.entry_id)})
    assert device is not None
    assert device.entry_type is dr.DeviceEntryType.SERVICE
    assert device.name == AGENT_ID
    assert hass.states.get(MUTE).state == STATE_OFF  # type: ignore[union-attr]
    assert hass.states.get(AUDIO_OUTPUT).state == STATE_ON  # type: ignore[union-attr]
    assert hass.states.get(AGENT_SPEAKING).state == STATE_OFF  # type: ignore[union-attr]
    assert hass.states.get(USER_SPEAKING).state == STATE_OFF  # type: ignore[union-attr]
    assert hass.states.get(CONNECTION).state == "disconnected"  # type: ignore[union-attr]
    assert hass.states.get(EVENTS).state == STATE_UNKNOWN  # type: ignore[union-attr]
    registry = er.async_get(hass)
    for entity_id in (USER_AMPLITUDE, AGENT_AMPLITUDE):
        assert hass.states.get(entity_id) is None
        assert registry.async_get(entity_id).disabled_by is er.RegistryEntryDisabler.INTEGRATION  # type: ignore[union-attr]


async def test_setup_auth_failure_starts_reauth(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """A 401 at set-up is an auth failure: the entry asks for reauthentication."""
    entry = make_entry(agent_server)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_API_KEY: "sk_wrong"})
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress()
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]


async def test_key_revoked_while_running_starts_reauth(
    hass: HomeAssistant, loaded: MockConfigEntry, agent_server: LocalAgentServer
) -> None:
    """A key revoked after set-up: the next conversation fails with the reason, and Home
    Assistant asks for a new key once, however many conversations fail."""
    agent_server.api_key = "sk_rotated"
    for _ in range(2):
        with pytest.raises(HomeAssistantError) as info:
            await send_text(hass, loaded, "anyone there?")
        assert "HTTP 401" in str(info.value)
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress()
    assert [(f["context"]["source"], f["step_id"]) for f in flows] == [("reauth", "reauth_confirm")]
    assert hass.states.get(CONNECTION).state == STATE_UNAVAILABLE  # type: ignore[union-attr]


async def test_setup_unreachable_retries(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """An unreachable authorize endpoint makes the entry retry later."""
    entry = make_entry(agent_server)
    await agent_server.stop()
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_setup_agent_not_found_is_an_error(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """An agent that does not exist is a set-up error, not a retry."""
    entry = make_entry(agent_server)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_AGENT_ID: "ag_gone"})
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert not hass.config_entries.flow.async_progress()


async def test_send_text_conversation_and_entity_states(
    hass: HomeAssistant, loaded: MockConfigEntry, agent_server: LocalAgentServer
) -> None:
    """A typed conversation: the reply, the follow-up on the same agent conversation, states."""
    log = StateLog(hass, CONNECTION, AGENT_SPEAKING, USER_SPEAKING, EVENTS)
    response = await send_text(hass, loaded, "Hello there")
    assert response["text"] == "You said: Hello there"
    conversation_id = response["conversation_id"]
    await until(lambda: log.event_types().count("agent_response") == 1)

    again = await send_text(hass, loaded, "And again", conversation_id=conversation_id)
    assert again == {
        "text": "You said: And again",
        "conversation_id": conversation_id,
        "data": [],
    }
    assert len(connected_conversations(agent_server)) == 1
    await until(lambda: log.event_types().count("agent_response") == 2)

    assert log.states[CONNECTION] == ["connecting", "connected"]
    # Nobody plays an action's answer: the agent is never heard speaking.
    assert log.states[AGENT_SPEAKING] == []
    assert STATE_ON in log.states[USER_SPEAKING]
    assert log.event_types() == [
        "user_transcript",
        "agent_response",
        "user_transcript",
        "agent_response",
    ]
    first = log.events[0]
    assert (first["text"], first["conversation_id"]) == ("Hello there", conversation_id)
    assert log.events[1]["text"] == "You said: Hello there"

    await hass.services.async_call(
        DOMAIN, "end_conversation", {"config_entry_id": loaded.entry_id}, blocking=True
    )
    await hass.async_block_till_done()
    assert hass.states.get(CONNECTION).state == "disconnected"  # type: ignore[union-attr]
    log.remove()


async def test_send_data_fires_agent_data_and_automation(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    """An automation on agent_data events runs when the backend answers a data message."""
    calls = async_mock_service(hass, "test", "automation")
    assert await async_setup_component(
        hass,
        "automation",
        {
            "automation": {
                "triggers": {"trigger": "state", "entity_id": EVENTS},
                "conditions": [
                    "{{ trigger.to_state.attributes.event_type == 'agent_data' }}",
                    "{{ trigger.to_state.attributes.data.received.kind == 'ping' }}",
                ],
                "actions": {
                    "action": "test.automation",
                    "data": {"data": "{{ trigger.to_state.attributes.data }}"},
                },
            }
        },
    )
    response = await hass.services.async_call(
        DOMAIN,
        "send_data",
        {"config_entry_id": loaded.entry_id, "data": {"kind": "ping"}},
        blocking=True,
        return_response=True,
    )
    assert response is not None
    assert response["conversation_id"]
    await until(lambda: len(calls) == 1)
    assert calls[0].data["data"] == {"received": {"kind": "ping"}}


async def test_mute_keeps_the_microphone_off_the_wire(
    hass: HomeAssistant, loaded: MockConfigEntry, agent_server: LocalAgentServer
) -> None:
    """With mute on, audio handed to a session never reaches the agent."""
    await hass.services.async_call("switch", "turn_on", {"entity_id": MUTE}, blocking=True)
    assert hass.states.get(MUTE).state == STATE_ON  # type: ignore[union-attr]
    runtime: LayercodeRuntime = loaded.runtime_data
    conversation = await runtime.async_get_conversation()
    await conversation.session.begin_user_speech()
    await conversation.session.send_audio(bytes(32000))
    await conversation.session.end_user_speech()

    await hass.services.async_call("switch", "turn_off", {"entity_id": MUTE}, blocking=True)
    await conversation.session.begin_user_speech()
    await conversation.session.send_audio(bytes(32000))
    await conversation.session.end_user_speech()
    await until(
        lambda: (
            sum(1 for m in agent_server.recordings[-1].messages if m["type"] == "vad_events") == 2
        )
    )
    types = [m["type"] for m in agent_server.recordings[-1].messages]
    assert types.count("client.audio") == 9  # only the unmuted second of audio


async def test_mute_is_restored(hass: HomeAssistant, agent_server: LocalAgentServer) -> None:
    """The mute switch survives a restart."""
    mock_restore_cache(hass, [State(MUTE, STATE_ON)])
    entry = make_entry(agent_server)
    runtime = await setup(hass, entry)
    assert hass.states.get(MUTE).state == STATE_ON  # type: ignore[union-attr]
    assert runtime.muted
    conversation = await runtime.async_get_conversation()
    assert conversation.session.muted
    await unload(hass, entry)


async def test_audio_output_off_still_advances(
    hass: HomeAssistant, loaded: MockConfigEntry, agent_server: LocalAgentServer
) -> None:
    """Audio output off: the agent never 'speaks', yet each turn is reported played."""
    log = StateLog(hass, AGENT_SPEAKING)
    await hass.services.async_call("switch", "turn_off", {"entity_id": AUDIO_OUTPUT}, blocking=True)
    assert hass.states.get(AUDIO_OUTPUT).state == STATE_OFF  # type: ignore[union-attr]
    first = await send_text(hass, loaded, "one")
    await send_text(hass, loaded, "two", conversation_id=first["conversation_id"])
    (conversation,) = connected_conversations(agent_server)
    await until(
        lambda: len(conversation.turns) == 2 and all(t.replay_finished for t in conversation.turns)
    )
    assert log.states[AGENT_SPEAKING] == []


async def test_idle_conversation_is_closed(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """After the idle timeout the session is closed; the conversation resumes on next use."""
    entry = make_entry(agent_server, **{CONF_IDLE_TIMEOUT: 60})
    runtime = await setup(hass, entry)
    first = await send_text(hass, entry, "hello")
    layercode_id = runtime.conversations[first["conversation_id"]].session.conversation_id
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=61))
    await hass.async_block_till_done()
    await until(lambda: not runtime.conversations)
    assert hass.states.get(CONNECTION).state == "disconnected"  # type: ignore[union-attr]
    # Home Assistant's chat session (5 minutes) is still open: same conversation, resumed.
    again = await send_text(hass, entry, "back", conversation_id=first["conversation_id"])
    assert again["conversation_id"] == first["conversation_id"]
    assert runtime.conversations[first["conversation_id"]].session.conversation_id == layercode_id
    await unload(hass, entry)


async def test_chat_session_end_closes_the_session(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    """When Home Assistant's chat session expires, the agent session is closed with it."""
    first = await send_text(hass, loaded, "hello")
    runtime: LayercodeRuntime = loaded.runtime_data
    assert first["conversation_id"] in runtime.conversations
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=6))
    await hass.async_block_till_done()
    await until(lambda: first["conversation_id"] not in runtime.conversations)


async def test_concurrent_conversations_aggregate(
    hass: HomeAssistant, loaded: MockConfigEntry, agent_server: LocalAgentServer
) -> None:
    """Two conversations at once: separate agent conversations, events say which."""
    log = StateLog(hass, EVENTS)
    one, two = await asyncio.gather(send_text(hass, loaded, "one"), send_text(hass, loaded, "two"))
    assert one["text"] == "You said: one"
    assert two["text"] == "You said: two"
    assert one["conversation_id"] != two["conversation_id"]
    assert len(connected_conversations(agent_server)) == 2
    await until(lambda: log.event_types().count("agent_response") == 2)
    replies = {
        e["conversation_id"]: e["text"] for e in log.events if e["event_type"] == "agent_response"
    }
    assert replies == {
        one["conversation_id"]: "You said: one",
        two["conversation_id"]: "You said: two",
    }


@pytest.mark.parametrize(
    ("service", "data", "key"),
    [
        ("send_text", {"config_entry_id": "nope", "text": "hi"}, "entry_not_found"),
        ("send_text", {"text": "   "}, "empty_text"),
        ("send_data", {"data": [1, 2]}, "data_not_object"),
        ("send_data", {"data": "text"}, "data_not_object"),
        ("end_conversation", {"config_entry_id": "nope"}, "entry_not_found"),
    ],
)
async def test_action_validation_errors(
    hass: HomeAssistant, loaded: MockConfigEntry, service: str, data: dict[str, Any], key: str
) -> None:
    """Bad input raises translated ServiceValidationErrors."""
    with pytest.raises(ServiceValidationError) as info:
        await hass.services.async_call(
            DOMAIN,
            service,
            {"config_entry_id": loaded.entry_id, **data},
            blocking=True,
            return_response=service != "end_conversation",
        )
    assert info.value.translation_key == key
    assert info.value.translation_domain == DOMAIN


async def test_action_on_unloaded_entry(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """An entry that is not loaded cannot be talked to."""
    entry = make_entry(agent_server)
    await setup(hass, entry)
    await unload(hass, entry)
    with pytest.raises(ServiceValidationError) as info:
        await send_text(hass, entry, "hello")
    assert info.value.translation_key == "entry_not_loaded"


async def test_backend_data_reaches_the_reply(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """response.data of an agent turn comes back with send_text and as an agent_data event."""

    class Responder(EchoResponder):
        async def reply(self, event: Any) -> Any:  # type: ignore[override]
            if event.get("type") == "message":
                yield SendData({"continue": True})
                yield Speak("Anything else?")

    server = LocalAgentServer(agent_id=AGENT_ID, api_key=API_KEY, backend=Responder())
    await server.start()
    try:
        entry = make_entry(server)
        await setup(hass, entry)
        log = StateLog(hass, EVENTS)
        response = await send_text(hass, entry, "hi")
        assert response["text"] == "Anything else?"
        assert response["data"] == [{"continue": True}]
        await until(lambda: "agent_data" in log.event_types())
        await unload(hass, entry)
    finally:
        await server.stop()


async def test_diagnostics_and_logs_keep_secrets(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    loaded: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Diagnostics show the entry and open conversations; no API key or session key anywhere."""
    issued: list[str] = []
    real_issue = SessionKeys.issue

    def spy(self: SessionKeys, conversation_id: str) -> str:
        key = real_issue(self, conversation_id)
        issued.append(key)
        return key

    monkeypatch.setattr(SessionKeys, "issue", spy)
    caplog.set_level(logging.DEBUG)
    await send_text(hass, loaded, "hello")
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, loaded)
    assert diagnostics["entry"]["data"][CONF_API_KEY] == "**REDACTED**"  # type: ignore[index]
    assert diagnostics["entry"]["data"][CONF_AGENT_ID] == AGENT_ID  # type: ignore[index]
    assert diagnostics["runtime"]["status"] == "connected"  # type: ignore[index]
    assert len(diagnostics["conversations"]) == 1  # type: ignore[arg-type]
    assert issued
    for secret in (API_KEY, *issued):
        assert secret not in str(diagnostics)
        assert secret not in caplog.text
    for state in hass.states.async_all():
        for secret in (API_KEY, *issued):
            assert secret not in str(state.attributes)


async def test_unavailable_and_recovery_are_logged_once(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    agent_server: LocalAgentServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A lost agent makes the entities unavailable with one warning; recovery logs once."""
    port = int(agent_server.base_url.rsplit(":", 1)[1])
    await agent_server.stop()
    for _ in range(2):
        with pytest.raises(HomeAssistantError) as info:
            await send_text(hass, loaded, "anyone there?")
        assert info.value.translation_key == "conversation_failed"
        assert "Cannot reach" in str(info.value)
    await hass.async_block_till_done()
    assert hass.states.get(MUTE).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    assert hass.states.get(CONNECTION).state == STATE_UNAVAILABLE  # type: ignore[union-attr]
    assert caplog.text.count("The Layercode agent is unavailable") == 1

    await agent_server.start(port=port)
    for _ in range(2):
        assert (await send_text(hass, loaded, "back?"))["text"] == "You said: back?"
    await hass.async_block_till_done()
    assert hass.states.get(MUTE).state == STATE_OFF  # type: ignore[union-attr]
    assert caplog.text.count("The Layercode agent is available again") == 1


async def test_amplitude_sensors_are_throttled(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """Audio levels change every 112 ms frame; the sensors write at most once a second."""
    registry = er.async_get(hass)
    entry = make_entry(agent_server)
    entry.add_to_hass(hass)
    for key in ("user_amplitude", "agent_amplitude"):
        registry.async_get_or_create(
            "sensor",
            DOMAIN,
            f"{entry.entry_id}_{key}",
            config_entry=entry,
            disabled_by=None,
            suggested_object_id=f"{AGENT_ID}_{key.replace('amplitude', 'audio_level')}",
        )
    runtime = await setup(hass, entry)
    assert hass.states.get(USER_AMPLITUDE) is not None
    log = StateLog(hass, USER_AMPLITUDE)
    conversation = await runtime.async_get_conversation()
    session = conversation.session
    start = hass.loop.time()
    await session.begin_user_speech()
    loud = (np.sin(np.arange(1600) / 3) * 16000).astype("<i2").tobytes()
    for _ in range(30):  # 3 s of audio in 100 ms steps, about 27 frames of 112 ms
        await session.send_audio(loud)
        await asyncio.sleep(0.1)
    await session.end_user_speech()
    elapsed = hass.loop.time() - start
    await asyncio.sleep(1.1)  # the trailing write
    values = [float(v) for v in log.states[USER_AMPLITUDE] if v != STATE_UNKNOWN]
    assert 2 <= len(values) <= elapsed + 2
    assert values[-1] == pytest.approx(100 * session.user_amplitude, abs=0.1)
    assert max(values) > 30
    await unload(hass, entry)


async def test_send_text_to_a_busy_conversation(
    hass: HomeAssistant, loaded: MockConfigEntry
) -> None:
    """While a spoken turn waits for its answer, send_text on that conversation is refused."""
    runtime: LayercodeRuntime = loaded.runtime_data
    conversation = await runtime.async_get_conversation()
    runtime.async_begin_input(conversation, InputSource.VOICE)
    with pytest.raises(ServiceValidationError) as info:
        await send_text(hass, loaded, "hi", conversation_id=conversation.conversation_id)
    assert info.value.translation_key == "conversation_busy"
    assert (await send_text(hass, loaded, "hi"))["text"] == "You said: hi"


async def test_home_assistant_stopping_closes_the_sessions(
    hass: HomeAssistant,
    loaded: MockConfigEntry,
    agent_server: LocalAgentServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Home Assistant stops without unloading entries: the sessions close, none resumes."""
    runtime: LayercodeRuntime = loaded.runtime_data
    await runtime.async_get_conversation()
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    await until(lambda: all(r.closed_at is not None for r in agent_server.recordings))
    assert not runtime.conversations
    assert "resuming" not in caplog.text
