"""The conversation agent: returns the agent's own answer to what the user said or typed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
import logging
from typing import Literal

from homeassistant.components import conversation
from homeassistant.components.conversation import AssistantContentDeltaDict
from homeassistant.const import MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import intent
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.translation import async_get_translations

from . import LayercodeConfigEntry
from .client import AgentTurn
from .const import DOMAIN
from .entity import LayercodeEntity
from .runtime import ACTION_INPUT, Conversation, InputSource
from .tools import record_in_chat_log
from .voice import async_check_local_intents, bind_to_chat_session, current_conversation_id

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0
CONTINUE_KEY = "continue_conversation"
"""A `response.data` object with this key (true/false) says whether the agent expects an
answer; without one, a reply that ends in a question mark does."""

NO_ANSWER_MESSAGE = "The agent did not answer. Please try again."
"""What the user hears when the agent does not answer, where no translation is found."""

CONVERSATION_DESCRIPTION = EntityDescription(key="conversation")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the conversation agent."""
    async_add_entities([LayercodeConversationEntity(entry, CONVERSATION_DESCRIPTION)])


def expects_answer(turn: AgentTurn) -> bool:
    """Whether the agent asked something: its own flag first, else a trailing question mark."""
    for data in reversed(turn.data):
        if isinstance(data, dict) and isinstance(data.get(CONTINUE_KEY), bool):
            return bool(data[CONTINUE_KEY])
    return turn.text.rstrip().endswith("?")


class LayercodeConversationEntity(LayercodeEntity, conversation.ConversationEntity):
    """Answers with the Layercode agent's own reply for the turn.

    A spoken turn was already sent by the STT entity: its answer is waiting. Typed input goes
    to the agent as text. The reply is streamed into the chat log as it arrives, so that
    Home Assistant (2025.8+) can start the TTS stream while the agent is still talking.
    """

    _attr_name = None
    _attr_supports_streaming = True

    async def async_added_to_hass(self) -> None:
        """Check the pipelines that use this agent."""
        await super().async_added_to_hass()
        self.runtime.agent_entity_id = self.entity_id
        async_check_local_intents(self.hass, self.entity_id)

    async def async_prepare(self, language: str | None = None) -> None:
        """Open the agent session while the user still speaks (a run's start, the Assist
        dialog opening), so that the first turn after a long idle is not a cold start."""
        await self.runtime.async_prepare(current_conversation_id())

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        """Any language: the agent decides."""
        return MATCH_ALL

    async def _async_handle_message(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> conversation.ConversationResult:
        """Wait (bounded) for the agent's answer to this turn and record it."""
        async_check_local_intents(self.hass, self.entity_id)
        runtime = self.runtime
        conv = await runtime.async_get_conversation(
            chat_log.conversation_id,
            device_id=user_input.device_id,
            user_id=user_input.context.user_id,
            language=user_input.language,
        )
        bind_to_chat_session(self.hass, runtime, conv)
        pending = runtime.async_pending_voice_input(conv, user_input.text)
        if pending is None:
            source = ACTION_INPUT.get() or InputSource.ASSIST
            pending = runtime.async_begin_input(conv, source)
            pending.text = user_input.text
        turn = await runtime.async_answer(conv, pending)
        pending.answered = True
        if turn is None:
            self._record_tool_calls(conv, user_input, chat_log)
            return await self._no_answer(user_input, chat_log)
        try:
            async for _content in chat_log.async_add_delta_content_stream(
                user_input.agent_id,
                _deltas(turn, lambda: self._record_tool_calls(conv, user_input, chat_log)),
            ):
                pass
        except asyncio.CancelledError:
            # The run was cancelled while the agent spoke (the satellite started a new one,
            # which gets a new conversation): the reply stops too, here and on the wire.
            runtime.async_interrupt(conv, on_wire=True)
            raise
        intent_response = intent.IntentResponse(language=user_input.language)
        intent_response.async_set_speech(turn.text)
        return conversation.ConversationResult(
            response=intent_response,
            conversation_id=chat_log.conversation_id,
            continue_conversation=expects_answer(turn),
        )

    @staticmethod
    def _record_tool_calls(
        conv: Conversation,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> None:
        """Put the agent's tool calls of this turn in the chat log (the Assist debug view)."""
        records, conv.tools.records = conv.tools.records, []
        record_in_chat_log(chat_log, user_input.agent_id, records)

    async def _no_answer(
        self, user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
    ) -> conversation.ConversationResult:
        """Say, in the user's language, that the agent did not answer (the TTS makes it heard)."""
        translations = await async_get_translations(
            self.hass, user_input.language, "exceptions", [DOMAIN]
        )
        message = translations.get(
            f"component.{DOMAIN}.exceptions.no_answer.message", NO_ANSWER_MESSAGE
        )
        chat_log.async_add_assistant_content_without_tools(
            conversation.AssistantContent(agent_id=user_input.agent_id, content=message)
        )
        intent_response = intent.IntentResponse(language=user_input.language)
        intent_response.async_set_error(intent.IntentResponseErrorCode.UNKNOWN, message)
        return conversation.ConversationResult(
            response=intent_response, conversation_id=chat_log.conversation_id
        )


async def _deltas(
    turn: AgentTurn, before_text: Callable[[], None]
) -> AsyncGenerator[AssistantContentDeltaDict]:
    """The agent's text as chat-log deltas, as it arrives (bounded).

    `before_text` runs once before the text starts, when the tool calls the agent made before
    it spoke are known (a backend speaks after their results), so that they come first.
    """
    started = False
    async with aclosing(turn.text_deltas()) as pieces:
        async for piece in pieces:
            if not started:
                started = True
                before_text()
                yield {"role": "assistant"}
            yield {"content": piece}
    if not started:
        before_text()
        yield {"role": "assistant"}
