"""Home control by the agent: Home Assistant's tools over Layercode's data channel.

The local server's `HomeControlResponder` is the agent's backend: it turns "turn on the kitchen
light" into an `ha.tool_call`, waits for the `ha.tool_result` data webhook and speaks the outcome.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.core import Context, HomeAssistant, callback
from homeassistant.helpers import chat_session, llm
from homeassistant.setup import async_setup_component
import jsonschema
import pytest
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
import voluptuous as vol

from custom_components.layercode.const import CONF_LLM_HASS_API, CONF_PROMPT
from custom_components.layercode.runtime import LayercodeRuntime
from custom_components.layercode.tools import HomeControl, ToolScope
from local_agent_server.home_control import HomeControlResponder, ToolCall

from . import test_assist_pipeline
from .test_assist_pipeline import (
    AGENT_ENTITY,
    RUN_TIMEOUT,
    StartAgent,
    fetch,
    reply_of,
    run_voice_turn,
    speech,
    tts_url_of,
)

start_agent = test_assist_pipeline.start_agent
KITCHEN = "input_boolean.kitchen_light"
PORCH = "input_boolean.porch_light"
TEST_API = "layercode_test_api"


class RaisingTool(llm.Tool):
    """A tool that fails with an unexpected exception."""

    name = "Explode"
    description = "Always fails."

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> Any:
        raise RuntimeError("boom")


class HangingTool(llm.Tool):
    """A tool that never returns."""

    name = "Hang"
    description = "Never answers."
    parameters = vol.Schema({vol.Required("seconds"): vol.Coerce(float)})

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> Any:
        await asyncio.sleep(3600)


class FaultyAPI(llm.API):
    """An LLM API with tools that misbehave."""

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        return llm.APIInstance(
            api=self,
            api_prompt="Faulty tools.",
            llm_context=llm_context,
            tools=[RaisingTool(), HangingTool()],
        )


@pytest.fixture(autouse=True)
async def home(hass: HomeAssistant) -> None:
    """Two switchable entities ("lights"): the kitchen light exposed, the porch light not."""
    assert await async_setup_component(hass, "intent", {})
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {"kitchen_light": {"name": "Kitchen light"}, "porch_light": {}}},
    )
    await hass.async_block_till_done()
    hass.states.async_set(PORCH, "off", {"friendly_name": "Porch light"})
    async_expose_entity(hass, conversation.DOMAIN, KITCHEN, True)
    async_expose_entity(hass, conversation.DOMAIN, PORCH, False)


async def converse(hass: HomeAssistant, text: str, user_id: str | None = None) -> str:
    """Typed text to the agent; its spoken answer."""
    async with asyncio.timeout(RUN_TIMEOUT):
        result = await conversation.async_converse(
            hass,
            text=text,
            conversation_id="home-control",
            context=Context(user_id=user_id),
            language="en",
            agent_id=AGENT_ENTITY,
        )
    return str(result.response.speech["plain"]["speech"])


def tool_events(hass: HomeAssistant, recorded: list[dict[str, Any]]) -> None:
    """Record the event entity's `agent_tool_call` events."""

    @callback
    def listener(event: Any) -> None:
        new = event.data.get("new_state")
        if new is not None and new.attributes.get("event_type") == "agent_tool_call":
            recorded.append(dict(new.attributes))

    hass.bus.async_listen("state_changed", listener)


def chat_log_content(hass: HomeAssistant, conversation_id: str) -> list[Any]:
    with (
        chat_session.async_get_chat_session(hass, conversation_id) as session,
        conversation.async_get_chat_log(hass, session) as chat_log,
    ):
        return list(chat_log.content)


async def test_agent_turns_on_an_exposed_light_and_the_chat_log_records_it(
    hass: HomeAssistant, start_agent: StartAgent
) -> None:
    """The backend gets the tools, calls HassTurnOn; the light switches, the reply follows."""
    backend = HomeControlResponder()
    await start_agent(
        backend=backend,
        options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST], CONF_PROMPT: "Be brief."},
    )
    events: list[dict[str, Any]] = []
    tool_events(hass, events)

    assert await converse(hass, "turn on the kitchen light") == "Done."

    assert hass.states.get(KITCHEN).state == "on"  # type: ignore[union-attr]
    names = {tool["name"] for tool in backend.tools}
    assert {"HassTurnOn", "HassTurnOff"} <= names
    assert backend.prompt.endswith("Be brief.")
    (result,) = backend.results
    assert result["type"] == "ha.tool_result"
    assert "error" not in result
    assert result["result"]["response_type"] == "action_done"

    (event,) = events
    assert event["name"] == "HassTurnOn"
    assert event["arguments"] == {"name": "kitchen light"}
    assert event["result"]["response_type"] == "action_done"

    content = chat_log_content(hass, "home-control")
    roles = [c.role for c in content]
    call_at = next(i for i, c in enumerate(content) if c.role == "assistant" and c.tool_calls)
    assert content[call_at].tool_calls[0].tool_name == "HassTurnOn"
    assert content[call_at + 1].role == "tool_result"
    assert content[call_at + 1].tool_call_id == content[call_at].tool_calls[0].id
    assert content[call_at + 2].role == "assistant"
    assert content[call_at + 2].content == "Done."
    assert roles.index("user") < call_at


async def test_unexposed_entity_cannot_be_switched(
    hass: HomeAssistant, start_agent: StartAgent
) -> None:
    """Only entities exposed to voice assistants can be touched."""
    backend = HomeControlResponder()
    await start_agent(backend=backend, options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]})

    answer = await converse(hass, "turn on the porch light")

    assert answer.startswith("That did not work")
    assert hass.states.get(PORCH).state == "off"  # type: ignore[union-attr]
    assert "error" in backend.results[0]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (("NoSuchTool", {}), 'Tool "NoSuchTool" not found'),
        (("Hang", {"seconds": "soon"}), "Invalid"),
        (("Explode", {}), "RuntimeError: boom"),
        (("Hang", {"seconds": 1}), "The tool call timed out"),
    ],
    ids=["unknown-tool", "bad-arguments", "tool-raises", "tool-hangs"],
)
async def test_failing_tool_calls_end_cleanly(
    hass: HomeAssistant, start_agent: StartAgent, call: ToolCall, error: str
) -> None:
    """Each failure is an error result to the backend and an event, never an exception."""
    unregister = llm.async_register_api(hass, FaultyAPI(hass=hass, id=TEST_API, name="Faulty"))
    backend = HomeControlResponder(intent=lambda _text: call)
    events: list[dict[str, Any]] = []
    tool_events(hass, events)
    with patch("custom_components.layercode.tools.TOOL_TIMEOUT", 0.5):
        await start_agent(
            backend=backend, options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST, TEST_API]}
        )
        answer = await converse(hass, "do it")

    assert answer.startswith("That did not work")
    assert error in backend.results[0]["error"]
    assert error in events[0]["error"]
    assert hass.states.get(KITCHEN).state == "off"  # type: ignore[union-attr]
    unregister()


async def test_without_an_llm_api_no_tools_are_offered_and_calls_are_refused(
    hass: HomeAssistant, start_agent: StartAgent
) -> None:
    """Home control is off by default: no `ha.tools`, and every call gets an error result."""
    backend = HomeControlResponder()
    agent = await start_agent(backend=backend)

    answer = await converse(hass, "turn on the kitchen light")

    assert answer == "That did not work: Home control is not enabled"
    assert backend.tools == []
    assert hass.states.get(KITCHEN).state == "off"  # type: ignore[union-attr]
    data_webhooks = [e["data"] for e in agent.server.webhook_backend.events if e["type"] == "data"]  # type: ignore[union-attr]
    assert not any(d.get("type") == "ha.tools" for d in data_webhooks)


async def test_backend_that_gets_no_result_answers_in_time(
    hass: HomeAssistant, start_agent: StartAgent
) -> None:
    """A result that never comes: the backend's wait is bounded and the turn ends cleanly."""
    backend = HomeControlResponder(result_timeout=0.3)
    agent = await start_agent(backend=backend, options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]})
    runtime: LayercodeRuntime = agent.entry.runtime_data

    async def never(_scope: ToolScope, _content: dict[str, Any]) -> Any:
        await asyncio.sleep(3600)

    with patch.object(runtime.home_control, "async_call", never):
        assert await converse(hass, "turn on the kitchen light") == "Home Assistant did not answer."


async def test_voice_turn_switches_the_light(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, start_agent: StartAgent
) -> None:
    """A spoken turn through the Assist pipeline: the agent's tool call switches the light."""
    backend = HomeControlResponder(intent=lambda _text: ("HassTurnOn", {"name": "kitchen light"}))
    agent = await start_agent(backend=backend, options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]})

    events = await run_voice_turn(hass, agent.pipeline_id, speech(1.0))

    assert reply_of(events) == "Done."
    assert await fetch(hass_client, tts_url_of(events))  # the agent's own voice says it
    assert hass.states.get(KITCHEN).state == "on"  # type: ignore[union-attr]
    assert backend.tools


async def test_assist_tools_are_valid_json_schema(hass: HomeAssistant) -> None:
    """The converted parameters of every Assist tool are valid JSON Schema."""
    control = HomeControl(hass, (llm.LLM_API_ASSIST,), "Extra.")
    message = await control.async_tools_message(ToolScope(language="en"))
    assert message["type"] == "ha.tools"
    assert message["version"] == 1
    assert message["prompt"].endswith("Extra.")
    assert len(message["tools"]) > 3
    for tool in message["tools"]:
        assert set(tool) == {"name", "description", "parameters"}
        jsonschema.Draft202012Validator.check_schema(tool["parameters"])
