"""Actions: talk to the agent by text, send it data, end conversations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv
import voluptuous as vol

from .const import DOMAIN

if TYPE_CHECKING:
    from .runtime import LayercodeRuntime

SERVICE_SEND_TEXT = "send_text"
SERVICE_SEND_DATA = "send_data"
SERVICE_END_CONVERSATION = "end_conversation"

ATTR_CONFIG_ENTRY_ID = "config_entry_id"
ATTR_TEXT = "text"
ATTR_DATA = "data"
ATTR_CONVERSATION_ID = "conversation_id"
ATTR_SATELLITE = "satellite"

_BASE = {
    vol.Required(ATTR_CONFIG_ENTRY_ID): cv.string,
    vol.Optional(ATTR_CONVERSATION_ID): cv.string,
}
SEND_TEXT_SCHEMA = vol.Schema(
    {
        **_BASE,
        vol.Required(ATTR_TEXT): cv.string,
        vol.Optional(ATTR_SATELLITE): cv.entity_domain("assist_satellite"),
    }
)
SEND_DATA_SCHEMA = vol.Schema({**_BASE, vol.Required(ATTR_DATA): object})
END_CONVERSATION_SCHEMA = vol.Schema(_BASE)


def _runtime(call: ServiceCall) -> LayercodeRuntime:
    """The runtime of the entry the call names, or a translated validation error."""
    entry_id: str = call.data[ATTR_CONFIG_ENTRY_ID]
    entry = call.hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_found",
            translation_placeholders={"entry_id": entry_id},
        )
    if entry.state is not ConfigEntryState.LOADED:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="entry_not_loaded",
            translation_placeholders={"title": entry.title},
        )
    runtime: LayercodeRuntime = entry.runtime_data
    return runtime


async def _send_text(call: ServiceCall) -> ServiceResponse:
    runtime = _runtime(call)
    text: str = call.data[ATTR_TEXT].strip()
    if not text:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="empty_text")
    reply = await runtime.async_send_text(
        text, call.data.get(ATTR_CONVERSATION_ID), call.context, call.data.get(ATTR_SATELLITE)
    )
    return {"text": reply.text, "conversation_id": reply.conversation_id, "data": reply.data}


async def _send_data(call: ServiceCall) -> ServiceResponse:
    runtime = _runtime(call)
    data: Any = call.data[ATTR_DATA]
    if not isinstance(data, dict):
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="data_not_object")
    conversation_id = await runtime.async_send_data(data, call.data.get(ATTR_CONVERSATION_ID))
    return {"conversation_id": conversation_id}


async def _end_conversation(call: ServiceCall) -> None:
    await _runtime(call).async_end_conversation(call.data.get(ATTR_CONVERSATION_ID))


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the actions once for the integration."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_TEXT,
        _send_text,
        schema=SEND_TEXT_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_SEND_DATA,
        _send_data,
        schema=SEND_DATA_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN, SERVICE_END_CONVERSATION, _end_conversation, schema=END_CONVERSATION_SCHEMA
    )
