"""Constants for the Layercode integration."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

DOMAIN: Final = "layercode"

CONF_PROVIDER: Final = "provider"
"""Which service runs the agent (`Provider`); entries without it are Layercode's."""
CONF_AGENT_ID: Final = "agent_id"
CONF_API_KEY: Final = "api_key"

# Layercode agents.
CONF_AUTHORIZE_URL: Final = "authorize_url"
CONF_WEBSOCKET_URL: Final = "websocket_url"

# LiveLayer agents.
CONF_BASE_URL: Final = "base_url"
CONF_SESSION_ENDPOINT: Final = "session_endpoint"
DEFAULT_LIVELAYER_BASE_URL: Final = "https://livelayer.app"

CONF_METADATA: Final = "metadata"
CONF_TURN_TAKING: Final = "turn_taking"
CONF_IDLE_TIMEOUT: Final = "idle_timeout"
CONF_AUDIO_OUTPUT: Final = "audio_output"
CONF_FALLBACK_TTS: Final = "fallback_tts"
CONF_AGENT_TURN_DETECTION: Final = "agent_turn_detection"
CONF_LLM_HASS_API: Final = "llm_hass_api"
"""The LLM APIs whose tools the agent is offered; the core AI integrations' key."""
CONF_PROMPT: Final = "prompt"
"""Extra instructions sent to the agent's backend with the tools."""

DEFAULT_IDLE_TIMEOUT: Final = 300
"""Seconds without activity after which an open agent session is closed."""
MIN_IDLE_TIMEOUT: Final = 10
MAX_IDLE_TIMEOUT: Final = 3600
DEFAULT_AUDIO_OUTPUT: Final = True


class Provider(StrEnum):
    """The service behind a config entry."""

    LAYERCODE = "layercode"
    LIVELAYER = "livelayer"


class TurnTaking(StrEnum):
    """The turn-taking option: the agent's own setting, or an override."""

    AGENT = "agent"
    PUSH_TO_TALK = "push_to_talk"
    AUTOMATIC = "automatic"
