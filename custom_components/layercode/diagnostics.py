"""Diagnostics: the entry and its open conversations, with every secret redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from . import LayercodeConfigEntry
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
                "user_speaking": runtime.user_speaking,
            },
            "conversations": [
                {
                    "conversation_id": conversation.conversation_id,
                    "layercode_conversation_id": conversation.session.conversation_id,
                    "device_id": conversation.device_id,
                    "status": conversation.session.status.value,
                    "config": asdict(conversation.session.config),
                    "last_activity": conversation.last_activity.isoformat(),
                    "agent_turn": repr(conversation.session.agent_turn),
                }
                for conversation in runtime.conversations.values()
            ],
            "recent_turns": list(runtime.recent_turns),
        },
        TO_REDACT,
    )
