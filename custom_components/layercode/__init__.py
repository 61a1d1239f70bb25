"""Hosted voice agents (Layercode, LiveLayer) as Assist voice assistants."""

from __future__ import annotations

from functools import partial

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from .const import (
    CONF_AGENT_TURN_DETECTION,
    CONF_AUDIO_OUTPUT,
    CONF_FALLBACK_TTS,
    CONF_IDLE_TIMEOUT,
    CONF_LLM_HASS_API,
    CONF_PROMPT,
    DEFAULT_AUDIO_OUTPUT,
    DEFAULT_IDLE_TIMEOUT,
    DOMAIN,
)
from .providers import async_check_agent, session_factory
from .runtime import LayercodeRuntime, RuntimeSettings
from .services import async_setup_services

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.CONVERSATION,
    Platform.EVENT,
    Platform.SENSOR,
    Platform.STT,
    Platform.SWITCH,
    Platform.TTS,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

type LayercodeConfigEntry = ConfigEntry[LayercodeRuntime]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's actions."""
    async_setup_services(hass)
    return True


def settings_from_entry(entry: ConfigEntry) -> RuntimeSettings:
    """The runtime settings stored in the entry's data and options."""
    return RuntimeSettings(
        new_session=session_factory(entry),
        idle_timeout=float(entry.options.get(CONF_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT)),
        audio_output=bool(entry.options.get(CONF_AUDIO_OUTPUT, DEFAULT_AUDIO_OUTPUT)),
        fallback_tts=entry.options.get(CONF_FALLBACK_TTS) or None,
        agent_turn_detection=bool(entry.options.get(CONF_AGENT_TURN_DETECTION, False)),
        llm_apis=tuple(entry.options.get(CONF_LLM_HASS_API) or ()),
        llm_prompt=entry.options.get(CONF_PROMPT) or "",
    )


async def async_setup_entry(hass: HomeAssistant, entry: LayercodeConfigEntry) -> bool:
    """Check the agent, then start the runtime and its entities."""
    http = async_get_clientsession(hass)
    settings = settings_from_entry(entry)
    await async_check_agent(hass, http, entry)

    entry.runtime_data = runtime = LayercodeRuntime(
        hass, http, settings, reauth=partial(entry.async_start_reauth, hass)
    )
    entry.async_on_unload(entry.add_update_listener(_async_reload_on_update))

    async def _async_close_on_stop(_event: Event) -> None:
        """Home Assistant stops without unloading entries: close the sessions cleanly."""
        await runtime.async_shutdown()

    entry.async_on_unload(
        hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, _async_close_on_stop)
    )
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def _async_reload_on_update(hass: HomeAssistant, entry: LayercodeConfigEntry) -> None:
    """Options changed: start again with the new settings."""
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: LayercodeConfigEntry) -> bool:
    """Close every session; nothing is left running."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.async_shutdown()
    return unloaded
