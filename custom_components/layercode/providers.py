"""The two providers behind an entry: how to check its agent and how to open its sessions.

Everything above this module (the runtime and the entities) sees only an `AgentSession`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import aiohttp
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import (
    ConfigEntryAuthFailed,
    ConfigEntryError,
    ConfigEntryNotReady,
)

from .client import (
    LAYERCODE_WEBSOCKET_URL,
    TRANSIENT_ERRORS,
    AgentSession,
    Authorizer,
    LayercodeError,
    LayercodeSession,
    TurnTrigger,
)
from .client.livelayer import (
    LiveLayerOptions,
    LiveLayerSession,
    Room,
    RoomHandler,
    request_session,
    session as livelayer_session,
)
from .const import (
    CONF_AGENT_ID,
    CONF_AGENT_TURN_DETECTION,
    CONF_API_KEY,
    CONF_AUTHORIZE_URL,
    CONF_BASE_URL,
    CONF_METADATA,
    CONF_PROVIDER,
    CONF_SESSION_ENDPOINT,
    CONF_TURN_TAKING,
    CONF_WEBSOCKET_URL,
    DOMAIN,
    Provider,
    TurnTaking,
)
from .livekit import LiveKitUnavailable, async_ensure_livekit
from .runtime import SessionFactory


def entry_provider(entry: ConfigEntry) -> Provider:
    """The entry's provider; entries from before LiveLayer are Layercode's."""
    return Provider(entry.data.get(CONF_PROVIDER, Provider.LAYERCODE))


def livelayer_options(data: dict[str, Any] | Any) -> LiveLayerOptions:
    """LiveLayer session options from an entry's (or a form's) data."""
    return LiveLayerOptions(
        agent_id=data[CONF_AGENT_ID],
        base_url=data[CONF_BASE_URL],
        api_key=data.get(CONF_API_KEY) or None,
        session_endpoint=data.get(CONF_SESSION_ENDPOINT) or None,
    )


def _authorizer(entry: ConfigEntry) -> Authorizer:
    return Authorizer(
        entry.data[CONF_AUTHORIZE_URL],
        entry.data[CONF_AGENT_ID],
        api_key=entry.data.get(CONF_API_KEY) or None,
        metadata=entry.options.get(CONF_METADATA) or {},
    )


async def async_check_agent(
    hass: HomeAssistant, http: aiohttp.ClientSession, entry: ConfigEntry
) -> None:
    """Set-up check: the agent authorizes (Layercode) or mints a room (LiveLayer).

    Raises the ConfigEntry error Home Assistant acts on: retry later, ask for new
    credentials, or give up with the reason.
    """
    try:
        if entry_provider(entry) is Provider.LIVELAYER:
            await async_ensure_livekit(hass)
            await request_session(http, livelayer_options(entry.data))
        else:
            await _authorizer(entry)(http)
    except LiveKitUnavailable as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="livekit_unavailable",
            translation_placeholders={"error": err.reason},
        ) from err
    except LayercodeError as err:
        if err.needs_new_credentials:
            raise _auth_failed(err) from err
        if isinstance(err, TRANSIENT_ERRORS):
            raise _not_ready(err) from err
        raise _failed(err) from err


def _auth_failed(err: LayercodeError) -> ConfigEntryAuthFailed:
    return ConfigEntryAuthFailed(
        translation_domain=DOMAIN,
        translation_key="invalid_auth",
        translation_placeholders={"error": str(err)},
    )


def _not_ready(err: LayercodeError) -> ConfigEntryNotReady:
    return ConfigEntryNotReady(
        translation_domain=DOMAIN,
        translation_key="cannot_connect",
        translation_placeholders={"error": str(err)},
    )


def _failed(err: LayercodeError) -> ConfigEntryError:
    return ConfigEntryError(
        translation_domain=DOMAIN,
        translation_key="authorize_failed",
        translation_placeholders={"error": str(err)},
    )


def session_factory(entry: ConfigEntry) -> SessionFactory:
    """How the runtime opens this entry's sessions."""
    if entry_provider(entry) is Provider.LIVELAYER:
        return partial(_livelayer_session, livelayer_options(entry.data))
    turn_taking = TurnTaking(entry.options.get(CONF_TURN_TAKING, TurnTaking.AGENT))
    return partial(
        LayercodeSession,
        authorizer=_authorizer(entry),
        websocket_url=entry.data.get(CONF_WEBSOCKET_URL) or LAYERCODE_WEBSOCKET_URL,
        trigger=None if turn_taking is TurnTaking.AGENT else TurnTrigger(turn_taking.value),
        server_turn_detection=bool(entry.options.get(CONF_AGENT_TURN_DETECTION, False)),
    )


def _livelayer_session(
    options: LiveLayerOptions,
    http: aiohttp.ClientSession,
    *,
    conversation_id: str | None,
    audio_output: bool,
    muted: bool,
    unconsumed_audio_timeout: float,
) -> AgentSession:
    """A LiveLayer session; each LiveLayer session is a room of its own (no resume by id)."""

    def room(handler: RoomHandler) -> Room:
        return livelayer_session.default_room_factory(handler)

    return LiveLayerSession(
        http,
        options,
        room_factory=room,
        audio_output=audio_output,
        muted=muted,
        unconsumed_audio_timeout=unconsumed_audio_timeout,
    )
