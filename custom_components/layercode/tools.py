"""Home control by the agent: Home Assistant's LLM tools over Layercode's data channel.

With LLM APIs chosen in the options ("Control Home Assistant"), each conversation offers the
agent's backend its tools in one data message (``client.response.data``, a ``data`` webhook)::

    {"type": "ha.tools", "version": 1, "prompt": "...", "tools": [{"name", "description",
     "parameters": <JSON Schema>}]}

The backend calls one with a ``response.data`` ``{"type": "ha.tool_call", "id", "name",
"arguments"}``; the call runs through Home Assistant's LLM API with the conversation's context
(its satellite's device, its user, its language), so only exposed entities can be touched, and
the outcome goes back as ``{"type": "ha.tool_result", "id", "result"}`` or ``{..., "error"}``.
Every call is bounded in time and never raises; the runtime records it for the chat log and the
event entity.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, fields
import logging
from typing import Any

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import llm
import voluptuous as vol
from voluptuous_openapi import convert  # type: ignore[import-untyped]

from .compat import HA_2025_11, HA_2026_10
from .const import DOMAIN

_LOGGER = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
TOOLS_TYPE = "ha.tools"
TOOL_CALL_TYPE = "ha.tool_call"
TOOL_RESULT_TYPE = "ha.tool_result"
TOOL_TIMEOUT = 10.0
"""Seconds a tool call (including getting the API) may take before it fails."""
OFFER_TIMEOUT = 10.0
"""Seconds building the tool list may take."""


@dataclass(slots=True)
class ToolScope:
    """Who a conversation's tool calls act for: its device, user and language."""

    device_id: str | None = None
    user_id: str | None = None
    language: str | None = None
    offered: tuple[str | None, str | None, str | None] | None = None
    """The scope the tools were last offered for (offered again when it changes)."""
    records: list[ToolRecord] = field(default_factory=list)
    """Calls not yet written to the chat log."""

    @property
    def key(self) -> tuple[str | None, str | None, str | None]:
        """What the offered tools depend on."""
        return (self.device_id, self.user_id, self.language)


@dataclass(frozen=True, slots=True)
class ToolRecord:
    """One tool call of the agent and its outcome."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None = None

    def message(self) -> dict[str, Any]:
        """The `ha.tool_result` data message for the backend."""
        if self.error is not None:
            return {"type": TOOL_RESULT_TYPE, "id": self.call_id, "error": self.error}
        return {"type": TOOL_RESULT_TYPE, "id": self.call_id, "result": self.result}

    def attributes(self) -> dict[str, Any]:
        """The `agent_tool_call` event's attributes."""
        outcome = {"error": self.error} if self.error is not None else {"result": self.result}
        return {"id": self.call_id, "name": self.name, "arguments": self.arguments, **outcome}


def is_tool_call(content: Any) -> bool:
    """Whether a `response.data` content is a tool call."""
    return isinstance(content, dict) and content.get("type") == TOOL_CALL_TYPE


class HomeControl:
    """Offers the chosen LLM APIs' tools and runs the agent's calls of them."""

    def __init__(self, hass: HomeAssistant, api_ids: tuple[str, ...], extra_prompt: str) -> None:
        self.hass = hass
        self.api_ids = api_ids
        self.extra_prompt = extra_prompt.strip()

    @property
    def enabled(self) -> bool:
        """Whether any LLM API is chosen."""
        return bool(self.api_ids)

    def _llm_context(self, scope: ToolScope) -> llm.LLMContext:
        """The LLM context of a conversation, built with the fields this version has."""
        values: dict[str, Any] = {
            "platform": DOMAIN,
            "context": Context(user_id=scope.user_id),
            "user_prompt": None,
            "language": scope.language or self.hass.config.language,
            "assistant": conversation.DOMAIN,
            "device_id": scope.device_id,
        }
        known = {f.name for f in fields(llm.LLMContext)}
        return llm.LLMContext(**{k: v for k, v in values.items() if k in known})

    async def _instances(self, scope: ToolScope) -> list[llm.APIInstance]:
        context = self._llm_context(scope)
        return [await llm.async_get_api(self.hass, api_id, context) for api_id in self.api_ids]

    async def async_tools_message(self, scope: ToolScope) -> dict[str, Any]:
        """The `ha.tools` message for a conversation (raises if an API is missing)."""
        async with asyncio.timeout(OFFER_TIMEOUT):
            instances = await self._instances(scope)
        tools: list[dict[str, Any]] = []
        names: set[str] = set()
        for instance in instances:
            for tool in instance.tools:
                if tool.name in names:
                    continue
                names.add(tool.name)
                tools.append(
                    {
                        "name": tool.name,
                        "description": tool.description or "",
                        "parameters": convert(
                            tool.parameters, custom_serializer=instance.custom_serializer
                        ),
                    }
                )
        prompts = [i.api_prompt for i in instances if i.api_prompt]
        if self.extra_prompt:
            prompts.append(self.extra_prompt)
        return {
            "type": TOOLS_TYPE,
            "version": PROTOCOL_VERSION,
            "prompt": "\n".join(prompts),
            "tools": tools,
        }

    async def async_call(self, scope: ToolScope, content: dict[str, Any]) -> ToolRecord:
        """Run one `ha.tool_call`; every failure becomes an error outcome."""
        call_id = str(content.get("id") or "")
        name = str(content.get("name") or "")
        arguments = content.get("arguments")
        if arguments is None:
            arguments = {}
        if not self.enabled:
            return ToolRecord(call_id, name, {}, error="Home control is not enabled")
        if not call_id or not name:
            return ToolRecord(call_id, name, {}, error="A tool call needs an id and a name")
        if not isinstance(arguments, dict):
            return ToolRecord(call_id, name, {}, error="The arguments must be a JSON object")
        try:
            async with asyncio.timeout(TOOL_TIMEOUT):
                instances = await self._instances(scope)
                found = next(((i, t) for i in instances for t in i.tools if t.name == name), None)
                if found is None:
                    return ToolRecord(call_id, name, arguments, error=f'Tool "{name}" not found')
                instance, tool = found
                tool.parameters(arguments)  # bad arguments: vol.Invalid, before anything runs
                result = await instance.async_call_tool(
                    llm.ToolInput(tool_name=name, tool_args=arguments, id=call_id)
                )
        except TimeoutError:
            return ToolRecord(call_id, name, arguments, error="The tool call timed out")
        except (HomeAssistantError, vol.Invalid) as err:
            return ToolRecord(call_id, name, arguments, error=f"{type(err).__name__}: {err}")
        except Exception as err:  # a failing tool must never break the conversation
            _LOGGER.warning("Tool %s failed: %r", name, err)
            return ToolRecord(call_id, name, arguments, error=f"{type(err).__name__}: {err}")
        if HA_2026_10:
            if result.error:
                return ToolRecord(call_id, name, arguments, error=str(result.data))
            return ToolRecord(call_id, name, arguments, result=result.data)
        return ToolRecord(call_id, name, arguments, result=result)


def record_in_chat_log(
    chat_log: conversation.ChatLog, agent_id: str, records: list[ToolRecord]
) -> None:
    """Write tool calls and their outcomes to the chat log as Home Assistant records tool use.

    Before 2025.11 the chat log adds tool calls only by running them itself: the content is
    appended as it would have recorded it.
    """
    for record in records:
        call = conversation.AssistantContent(agent_id=agent_id, tool_calls=[_tool_input(record)])
        result = _tool_result(agent_id, record)
        if HA_2025_11:
            chat_log.async_add_assistant_content_without_tools(call)
            chat_log.async_add_assistant_content_without_tools(result)
        else:
            chat_log.content.extend((call, result))


def _tool_input(record: ToolRecord) -> llm.ToolInput:
    """The call as the chat log holds it; from 2025.11 marked as run outside the chat log."""
    if HA_2025_11:
        return llm.ToolInput(
            tool_name=record.name, tool_args=record.arguments, id=record.call_id, external=True
        )
    return llm.ToolInput(tool_name=record.name, tool_args=record.arguments, id=record.call_id)


def _tool_result(agent_id: str, record: ToolRecord) -> conversation.ToolResultContent:
    """The outcome as the chat log holds it (a ToolResult from 2026.10)."""
    outcome: Any = {"error": record.error} if record.error is not None else record.result
    if not isinstance(outcome, dict):
        outcome = {"result": outcome}
    if HA_2026_10:
        return conversation.ToolResultContent(
            agent_id=agent_id,
            tool_call_id=record.call_id,
            tool_name=record.name,
            result=llm.ToolResult(data=outcome, error=record.error is not None),
        )
    return conversation.ToolResultContent(
        agent_id=agent_id, tool_call_id=record.call_id, tool_name=record.name, tool_result=outcome
    )
