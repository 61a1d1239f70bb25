"""Diagnostics: the entry and its open conversations, with every secret redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from . import LayercodeConfigEntry
from .client import AgentSession, LayercodeSession
from .const import CONF_API_KEY

TO_REDACT = {CONF_API_KEY, "client_session_key", "api_key", "authorization"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: LayercodeConfigEntry
) -> dict[str, Any]:
    """The entry's settings and the state of every open conversation."""
    runtime = entry.runtime_data
    return async_redact_data(
        {
            "entry": {"data": dict(entry.data), "options": dict(entry.options)},
            "runtime": {
                "status": runtime.status.value,
                "available": runtime.available,
                "last_error": runtime.last_error,
                "muted": runtime.muted,
                "audio_output": runtime.audio_output,
                "agent_speaking": runtime.agent_speaking,
                "agent_state": runtime.agent_state.value,
                "user_speaking": runtime.user_speaking,
            },
            "conversations": [
                {
                    "conversation_id": conversation.conversation_id,
                    "agent_conversation_id": conversation.session.conversation_id,
                    "device_id": conversation.device_id,
                    "status": conversation.session.status.value,
                    "agent_state": conversation.session.agent_state.value,
                    "config": _session_config(conversation.session),
                    "last_activity": conversation.last_activity.isoformat(),
                    "agent_turn": repr(conversation.session.agent_turn),
                }
                for conversation in runtime.conversations.values()
            ],
            "recent_turns": list(runtime.recent_turns),
        },
        TO_REDACT,
    )


def _session_config(session: AgentSession) -> dict[str, Any]:
    """The agent's session config (Layercode's turn-taking and VAD); LiveLayer has none."""
    return asdict(session.config) if isinstance(session, LayercodeSession) else {}
