"""What the voice entities share: the languages they accept and the conversation they serve."""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers import chat_session

from .runtime import Conversation, LayercodeRuntime

SUPPORTED_LANGUAGES = sorted(
    LANGUAGES | {"en-US", "en-AU", "de-DE", "es-ES", "fr-FR", "it-IT", "nl-NL", "pt-PT"}
)
"""The agent, not Home Assistant, decides what it understands; accept every language."""


def current_conversation_id() -> str | None:
    """The Home Assistant conversation of the running pipeline (the same in STT, agent, TTS)."""
    session = chat_session.current_session.get()
    return session.conversation_id if session is not None else None


@callback
def bind_to_chat_session(
    hass: HomeAssistant, runtime: LayercodeRuntime, conversation: Conversation
) -> None:
    """Close the agent session when Home Assistant's chat session ends."""
    session = chat_session.current_session.get()
    if (
        session is None
        or conversation.chat_session_bound
        or session.conversation_id != conversation.conversation_id
    ):
        return
    conversation.chat_session_bound = True

    @callback
    def _cleanup() -> None:
        hass.async_create_task(
            runtime.async_end_conversation(conversation.conversation_id), eager_start=True
        )

    session.async_on_cleanup(_cleanup)
