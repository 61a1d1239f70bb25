"""What the voice entities share: the languages they accept and the conversation they serve."""

from __future__ import annotations

from homeassistant.components import assist_pipeline
from homeassistant.core import HomeAssistant, callback
from homeassistant.generated.languages import LANGUAGES
from homeassistant.helpers import chat_session, issue_registry as ir

from .const import DOMAIN
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


@callback
def async_check_local_intents(hass: HomeAssistant, agent_entity_id: str | None) -> None:
    """Raise a repair issue for each pipeline that answers locally before asking the agent.

    With "prefer handling commands locally" on, Home Assistant answers every sentence it
    understands itself: the agent never hears it and its answer is not the agent's voice.
    """
    if agent_entity_id is None:
        return
    for pipeline in assist_pipeline.async_get_pipelines(hass):
        issue_id = f"prefer_local_intents_{pipeline.id}"
        if pipeline.conversation_engine == agent_entity_id and pipeline.prefer_local_intents:
            ir.async_create_issue(
                hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="prefer_local_intents",
                translation_placeholders={"pipeline": pipeline.name},
            )
        else:
            ir.async_delete_issue(hass, DOMAIN, issue_id)
