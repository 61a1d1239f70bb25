"""Config flow for the voice agents: Layercode's (authorized sessions) and LiveLayer's (rooms).

The user step is a menu of the two providers. Reauthentication and reconfiguration branch on
the entry's provider; options are shared, less those only Layercode agents use.
"""

from __future__ import annotations

from collections.abc import Mapping
import json
import logging
from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import llm
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol
from yarl import URL

from .client import (
    LAYERCODE_AUTHORIZE_URL,
    LAYERCODE_WEBSOCKET_URL,
    TRANSIENT_ERRORS,
    AgentNotFoundError,
    Authorizer,
    BadRequestError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    LayercodeError,
)
from .client.livelayer import (
    ErrorCode,
    LiveLayerConnectionError,
    LiveLayerError,
    SessionGrant,
    request_session,
)
from .const import (
    CONF_AGENT_ID,
    CONF_AGENT_TURN_DETECTION,
    CONF_API_KEY,
    CONF_AUDIO_OUTPUT,
    CONF_AUTHORIZE_URL,
    CONF_BASE_URL,
    CONF_FALLBACK_TTS,
    CONF_IDLE_TIMEOUT,
    CONF_LLM_HASS_API,
    CONF_METADATA,
    CONF_PROMPT,
    CONF_PROVIDER,
    CONF_SESSION_ENDPOINT,
    CONF_TURN_TAKING,
    CONF_WEBSOCKET_URL,
    DEFAULT_AUDIO_OUTPUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LIVELAYER_BASE_URL,
    DOMAIN,
    MAX_IDLE_TIMEOUT,
    MIN_IDLE_TIMEOUT,
    Provider,
    TurnTaking,
)
from .livekit import LiveKitUnavailable, async_ensure_livekit
from .providers import entry_provider, livelayer_options

_LOGGER = logging.getLogger(__name__)

AUTHORIZE_URL_SCHEMES = frozenset({"http", "https"})
WEBSOCKET_URL_SCHEMES = frozenset({"ws", "wss"})
BASE_URL_SCHEMES = AUTHORIZE_URL_SCHEMES

URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
PASSWORD_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))

AGENT_ID_SELECTOR = TextSelector(TextSelectorConfig(autocomplete="off"))

STEP_USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_AGENT_ID): AGENT_ID_SELECTOR,
        vol.Required(CONF_AUTHORIZE_URL, default=LAYERCODE_AUTHORIZE_URL): URL_SELECTOR,
        vol.Optional(CONF_API_KEY): PASSWORD_SELECTOR,
        vol.Optional(CONF_WEBSOCKET_URL, default=LAYERCODE_WEBSOCKET_URL): URL_SELECTOR,
    }
)
STEP_RECONFIGURE_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_AUTHORIZE_URL): URL_SELECTOR,
        vol.Optional(CONF_API_KEY): PASSWORD_SELECTOR,
        vol.Optional(CONF_WEBSOCKET_URL, default=LAYERCODE_WEBSOCKET_URL): URL_SELECTOR,
    }
)
STEP_REAUTH_SCHEMA = vol.Schema({vol.Required(CONF_API_KEY): PASSWORD_SELECTOR})
"""The new API key; the same form for both providers."""

STEP_LIVELAYER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_AGENT_ID): AGENT_ID_SELECTOR,
        vol.Required(CONF_BASE_URL, default=DEFAULT_LIVELAYER_BASE_URL): URL_SELECTOR,
        vol.Optional(CONF_API_KEY): PASSWORD_SELECTOR,
        vol.Optional(CONF_SESSION_ENDPOINT): TextSelector(TextSelectorConfig(autocomplete="off")),
    }
)
STEP_RECONFIGURE_LIVELAYER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_BASE_URL): URL_SELECTOR,
        vol.Optional(CONF_API_KEY): PASSWORD_SELECTOR,
        vol.Optional(CONF_SESSION_ENDPOINT): TextSelector(TextSelectorConfig(autocomplete="off")),
    }
)


def _options_fields(*, layercode: bool) -> dict[vol.Optional, Any]:
    """The options form's fields; session metadata and turn-taking only for Layercode agents
    (a LiveLayer session request carries neither)."""
    fields: dict[vol.Optional, Any] = {}
    if layercode:
        fields[vol.Optional(CONF_METADATA)] = TextSelector(TextSelectorConfig(multiline=True))
        fields[vol.Optional(CONF_TURN_TAKING, default=TurnTaking.AGENT.value)] = SelectSelector(
            SelectSelectorConfig(
                options=[mode.value for mode in TurnTaking],
                translation_key=CONF_TURN_TAKING,
                mode=SelectSelectorMode.DROPDOWN,
            )
        )
    fields[vol.Optional(CONF_IDLE_TIMEOUT, default=DEFAULT_IDLE_TIMEOUT)] = NumberSelector(
        NumberSelectorConfig(
            min=MIN_IDLE_TIMEOUT,
            max=MAX_IDLE_TIMEOUT,
            step=1,
            unit_of_measurement="s",
            mode=NumberSelectorMode.BOX,
        )
    )
    fields[vol.Optional(CONF_AUDIO_OUTPUT, default=DEFAULT_AUDIO_OUTPUT)] = BooleanSelector()
    fields[vol.Optional(CONF_FALLBACK_TTS)] = EntitySelector(EntitySelectorConfig(domain="tts"))
    fields[vol.Optional(CONF_AGENT_TURN_DETECTION, default=False)] = BooleanSelector()
    fields[vol.Optional(CONF_PROMPT)] = TextSelector(TextSelectorConfig(multiline=True))
    # The APIs are filled in when the form is shown (`llm_api_options`).
    fields[vol.Optional(CONF_LLM_HASS_API)] = SelectSelector(
        SelectSelectorConfig(options=[], multiple=True)
    )
    return fields


OPTIONS_SCHEMA = vol.Schema(_options_fields(layercode=True))
LIVELAYER_OPTIONS_SCHEMA = vol.Schema(_options_fields(layercode=False))


def llm_api_options(hass: HomeAssistant) -> dict[vol.Optional, SelectSelector]:
    """ "Control Home Assistant": the LLM APIs Home Assistant offers now (none by default)."""
    apis = [SelectOptionDict(value=api.id, label=api.name) for api in llm.async_get_apis(hass)]
    return {
        vol.Optional(CONF_LLM_HASS_API): SelectSelector(
            SelectSelectorConfig(options=apis, multiple=True)
        )
    }


def _valid_url(value: str, schemes: frozenset[str]) -> bool:
    """Whether `value` is an absolute URL with one of `schemes` and a host."""
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.scheme in schemes and bool(url.host)


def normalize_url(value: str) -> str:
    """The URL as compared for uniqueness: lower-case scheme and host, no default port,
    no trailing slash, no fragment."""
    url = URL(value.strip()).with_fragment(None)
    return str(url.with_path(url.path.rstrip("/"), keep_query=True))


def unique_id_for(agent_id: str, authorize_url: str) -> str:
    """One config entry per agent and authorize endpoint."""
    return f"{agent_id}@{normalize_url(authorize_url)}"


def _clean(user_input: Mapping[str, Any], *keys: str) -> dict[str, str]:
    """The given text fields, stripped; empty ones left out."""
    cleaned: dict[str, str] = {}
    for key in keys:
        value = str(user_input.get(key) or "").strip()
        if value:
            cleaned[key] = value
    return cleaned


def _validate_urls(data: Mapping[str, str]) -> dict[str, str]:
    """Field errors for the authorize and WebSocket URLs."""
    errors: dict[str, str] = {}
    if not _valid_url(data.get(CONF_AUTHORIZE_URL, ""), AUTHORIZE_URL_SCHEMES):
        errors[CONF_AUTHORIZE_URL] = "invalid_authorize_url"
    if not _valid_url(data.get(CONF_WEBSOCKET_URL, ""), WEBSOCKET_URL_SCHEMES):
        errors[CONF_WEBSOCKET_URL] = "invalid_websocket_url"
    return errors


async def async_try_authorize(
    hass: HomeAssistant,
    authorize_url: str,
    agent_id: str,
    api_key: str | None,
    metadata: Mapping[str, Any] | None = None,
) -> str | None:
    """Authorize one session; return the translation key of the error, or None on success."""
    authorizer = Authorizer(authorize_url, agent_id, api_key=api_key, metadata=metadata or {})
    try:
        await authorizer(async_get_clientsession(hass))
    except InvalidApiKeyError:
        error = "invalid_auth"
    except InsufficientBalanceError:
        error = "insufficient_balance"
    except (AgentNotFoundError, BadRequestError):
        error = "agent_not_found"
    except TRANSIENT_ERRORS:
        error = "cannot_connect"
    except LayercodeError as err:
        _LOGGER.warning("Authorizing agent %s at %s failed: %s", agent_id, authorize_url, err)
        error = "unknown"
    except Exception:
        _LOGGER.exception("Unexpected error authorizing agent %s at %s", agent_id, authorize_url)
        error = "unknown"
    else:
        return None
    _LOGGER.debug("Authorizing agent %s at %s failed: %s", agent_id, authorize_url, error)
    return error


def _valid_session_endpoint(value: str) -> bool:
    """A path under the base URL, or an absolute http(s) URL."""
    try:
        url = URL(value)
    except ValueError:
        return False
    if url.is_absolute() or url.scheme:
        return url.scheme in BASE_URL_SCHEMES and bool(url.host)
    return True


def _validate_livelayer(data: Mapping[str, str]) -> dict[str, str]:
    """Field errors for the base URL and the session endpoint."""
    errors: dict[str, str] = {}
    if not _valid_url(data.get(CONF_BASE_URL, ""), BASE_URL_SCHEMES):
        errors[CONF_BASE_URL] = "invalid_base_url"
    endpoint = data.get(CONF_SESSION_ENDPOINT)
    if endpoint is not None and not _valid_session_endpoint(endpoint):
        errors[CONF_SESSION_ENDPOINT] = "invalid_session_endpoint"
    return errors


def livelayer_unique_id(agent_id: str) -> str:
    """One config entry per LiveLayer agent."""
    return f"livelayer_{agent_id}"


def _session_error_key(err: LiveLayerError) -> str:
    """The form error for a failed LiveLayer session request."""
    if err.code == ErrorCode.KEY_WRONG_ORG:
        return "key_wrong_org"
    if err.code == ErrorCode.KEY_EXPIRED:
        return "key_expired"
    if err.code == ErrorCode.AGENT_HAS_NO_ORG:
        return "agent_has_no_org"
    if isinstance(err, LiveLayerConnectionError):
        return "cannot_connect"
    return "session_failed"


class LayercodeConfigFlow(ConfigFlow, domain=DOMAIN):
    """Set up a Layercode or LiveLayer voice agent."""

    VERSION = 1
    MINOR_VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask which service runs the agent."""
        return self.async_show_menu(
            step_id="user", menu_options=[Provider.LAYERCODE.value, Provider.LIVELAYER.value]
        )

    async def async_step_layercode(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the Layercode agent and how to authorize its sessions."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _clean(
                user_input, CONF_AGENT_ID, CONF_AUTHORIZE_URL, CONF_API_KEY, CONF_WEBSOCKET_URL
            )
            data.setdefault(CONF_WEBSOCKET_URL, LAYERCODE_WEBSOCKET_URL)
            if CONF_AGENT_ID not in data:
                errors[CONF_AGENT_ID] = "invalid_agent_id"
            errors.update(_validate_urls(data))
            if not errors:
                await self.async_set_unique_id(
                    unique_id_for(data[CONF_AGENT_ID], data[CONF_AUTHORIZE_URL]),
                    raise_on_progress=False,
                )
                self._abort_if_unique_id_configured()
                error = await async_try_authorize(
                    self.hass,
                    data[CONF_AUTHORIZE_URL],
                    data[CONF_AGENT_ID],
                    data.get(CONF_API_KEY),
                )
                if error is None:
                    return self.async_create_entry(title=data[CONF_AGENT_ID], data=data)
                errors["base"] = error

        return self.async_show_form(
            step_id="layercode",
            data_schema=self.add_suggested_values_to_schema(STEP_USER_SCHEMA, user_input),
            errors=errors,
        )

    async def async_step_livelayer(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the LiveLayer agent; check that LiveKit works here and a room is granted."""
        errors: dict[str, str] = {}
        details = {"error": ""}
        if user_input is not None:
            data = _clean(
                user_input, CONF_AGENT_ID, CONF_BASE_URL, CONF_API_KEY, CONF_SESSION_ENDPOINT
            )
            if CONF_AGENT_ID not in data:
                errors[CONF_AGENT_ID] = "invalid_agent_id"
            errors.update(_validate_livelayer(data))
            if not errors:
                agent_id = data[CONF_AGENT_ID]
                await self.async_set_unique_id(
                    livelayer_unique_id(agent_id), raise_on_progress=False
                )
                self._abort_if_unique_id_configured()
                data = {CONF_PROVIDER: Provider.LIVELAYER.value, **data}
                try:
                    await async_ensure_livekit(self.hass)
                except LiveKitUnavailable as err:
                    errors["base"] = "livekit_unavailable"
                    details["error"] = err.reason
                else:
                    grant = await self._async_request_session(data, errors, details)
                    if grant is not None:
                        return self.async_create_entry(
                            title=grant.agent_config.name or f"LiveLayer {agent_id}", data=data
                        )

        return self.async_show_form(
            step_id="livelayer",
            data_schema=self.add_suggested_values_to_schema(STEP_LIVELAYER_SCHEMA, user_input),
            description_placeholders={"error": details["error"]},
            errors=errors,
        )

    async def _async_request_session(
        self, data: Mapping[str, Any], errors: dict[str, str], details: dict[str, str]
    ) -> SessionGrant | None:
        """Ask the LiveLayer session endpoint for a room, as the entry's sessions will.

        On failure, sets the form's base error and its text under `details["error"]`. Only a
        token is minted: no room is joined, so there is nothing to close.
        """
        options = livelayer_options(data)
        try:
            return await request_session(async_get_clientsession(self.hass), options)
        except LiveLayerError as err:
            _LOGGER.debug("Requesting a session at %s failed: %s", options.session_url, err)
            errors["base"] = _session_error_key(err)
            details["error"] = str(err)
        except Exception as err:
            _LOGGER.exception("Unexpected error requesting a session at %s", options.session_url)
            errors["base"] = "unknown"
            details["error"] = str(err)
        return None

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Start re-authentication when the agent's endpoint rejects the stored key."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new API key and check it."""
        errors: dict[str, str] = {}
        entry = self._get_reauth_entry()
        if entry_provider(entry) is Provider.LIVELAYER:
            return await self.async_step_reauth_livelayer(user_input)
        if user_input is not None:
            api_key = str(user_input.get(CONF_API_KEY) or "").strip()
            error = await async_try_authorize(
                self.hass,
                entry.data[CONF_AUTHORIZE_URL],
                entry.data[CONF_AGENT_ID],
                api_key or None,
                entry.options.get(CONF_METADATA),
            )
            if error is None:
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_API_KEY: api_key}
                )
            errors["base"] = error

        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=STEP_REAUTH_SCHEMA,
            description_placeholders={
                "agent_id": entry.data[CONF_AGENT_ID],
                "authorize_url": entry.data[CONF_AUTHORIZE_URL],
            },
            errors=errors,
        )

    async def async_step_reauth_livelayer(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for a new LiveLayer API key and check that it is granted a room."""
        errors: dict[str, str] = {}
        details = {"error": ""}
        entry = self._get_reauth_entry()
        if user_input is not None:
            api_key = str(user_input.get(CONF_API_KEY) or "").strip()
            data = {**entry.data, CONF_API_KEY: api_key}
            if await self._async_request_session(data, errors, details) is not None:
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_API_KEY: api_key}
                )

        return self.async_show_form(
            step_id="reauth_livelayer",
            data_schema=STEP_REAUTH_SCHEMA,
            description_placeholders={
                "agent_id": entry.data[CONF_AGENT_ID],
                "base_url": entry.data[CONF_BASE_URL],
                "error": details["error"],
            },
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change how sessions of the same agent are authorized and connected."""
        errors: dict[str, str] = {}
        entry = self._get_reconfigure_entry()
        if entry_provider(entry) is Provider.LIVELAYER:
            return await self.async_step_reconfigure_livelayer(user_input)
        agent_id: str = entry.data[CONF_AGENT_ID]
        if user_input is not None:
            data = _clean(user_input, CONF_AUTHORIZE_URL, CONF_API_KEY, CONF_WEBSOCKET_URL)
            data.setdefault(CONF_WEBSOCKET_URL, LAYERCODE_WEBSOCKET_URL)
            if CONF_API_KEY not in data and entry.data.get(CONF_API_KEY):
                data[CONF_API_KEY] = entry.data[CONF_API_KEY]
            errors.update(_validate_urls(data))
            if not errors:
                unique_id = unique_id_for(agent_id, data[CONF_AUTHORIZE_URL])
                if unique_id != entry.unique_id:
                    await self.async_set_unique_id(unique_id, raise_on_progress=False)
                    self._abort_if_unique_id_configured()
                error = await async_try_authorize(
                    self.hass,
                    data[CONF_AUTHORIZE_URL],
                    agent_id,
                    data.get(CONF_API_KEY),
                    entry.options.get(CONF_METADATA),
                )
                if error is None:
                    return self.async_update_reload_and_abort(
                        entry,
                        unique_id=unique_id,
                        data={CONF_AGENT_ID: agent_id, **data},
                    )
                errors["base"] = error

        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                STEP_RECONFIGURE_SCHEMA,
                _without_secret(user_input or entry.data),
            ),
            description_placeholders={"agent_id": agent_id},
            errors=errors,
        )

    async def async_step_reconfigure_livelayer(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change where the same LiveLayer agent's rooms are requested, and with which key."""
        errors: dict[str, str] = {}
        details = {"error": ""}
        entry = self._get_reconfigure_entry()
        agent_id: str = entry.data[CONF_AGENT_ID]
        if user_input is not None:
            data = _clean(user_input, CONF_BASE_URL, CONF_API_KEY, CONF_SESSION_ENDPOINT)
            if CONF_API_KEY not in data and entry.data.get(CONF_API_KEY):
                data[CONF_API_KEY] = entry.data[CONF_API_KEY]
            errors.update(_validate_livelayer(data))
            if not errors:
                data = {CONF_PROVIDER: Provider.LIVELAYER.value, CONF_AGENT_ID: agent_id, **data}
                if await self._async_request_session(data, errors, details) is not None:
                    return self.async_update_reload_and_abort(entry, data=data)

        return self.async_show_form(
            step_id="reconfigure_livelayer",
            data_schema=self.add_suggested_values_to_schema(
                STEP_RECONFIGURE_LIVELAYER_SCHEMA,
                _without_secret(user_input or entry.data),
            ),
            description_placeholders={"agent_id": agent_id, "error": details["error"]},
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> LayercodeOptionsFlow:
        """Options: metadata, turn-taking, idle timeout, audio output, fallback TTS."""
        return LayercodeOptionsFlow()


def _without_secret(values: Mapping[str, Any]) -> dict[str, Any]:
    """A form's suggested values: the API key is never sent back to the browser."""
    return {key: value for key, value in values.items() if key != CONF_API_KEY}


def _metadata_text(metadata: Any) -> str:
    """Stored metadata as the text the options form shows."""
    if not metadata:
        return ""
    return json.dumps(metadata, indent=2, ensure_ascii=False)


def _parse_metadata(text: str) -> dict[str, Any] | None:
    """A JSON object from the form; empty text is an empty object; None when invalid."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class LayercodeOptionsFlow(OptionsFlow):
    """Per-entry options; the integration reloads the entry when they change."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and store the options; a LiveLayer agent has no metadata or turn-taking."""
        errors: dict[str, str] = {}
        layercode = entry_provider(self.config_entry) is Provider.LAYERCODE
        if user_input is not None:
            options: dict[str, Any] = {}
            if layercode:
                metadata = _parse_metadata(str(user_input.get(CONF_METADATA) or ""))
                if metadata is None:
                    errors[CONF_METADATA] = "invalid_metadata"
                else:
                    options[CONF_METADATA] = metadata
                    options[CONF_TURN_TAKING] = TurnTaking(user_input[CONF_TURN_TAKING]).value
            if not errors:
                options[CONF_IDLE_TIMEOUT] = int(user_input[CONF_IDLE_TIMEOUT])
                options[CONF_AUDIO_OUTPUT] = bool(user_input[CONF_AUDIO_OUTPUT])
                options[CONF_AGENT_TURN_DETECTION] = bool(user_input[CONF_AGENT_TURN_DETECTION])
                if fallback_tts := user_input.get(CONF_FALLBACK_TTS):
                    options[CONF_FALLBACK_TTS] = fallback_tts
                if apis := [str(api) for api in user_input.get(CONF_LLM_HASS_API) or []]:
                    options[CONF_LLM_HASS_API] = apis
                if prompt := str(user_input.get(CONF_PROMPT) or "").strip():
                    options[CONF_PROMPT] = prompt
                return self.async_create_entry(data=options)
            suggested: Mapping[str, Any] = user_input
        else:
            current = self.config_entry.options
            suggested = {
                **current,
                CONF_METADATA: _metadata_text(current.get(CONF_METADATA)),
            }

        if not layercode:
            return self.async_show_form(
                step_id="init",
                data_schema=self.add_suggested_values_to_schema(
                    LIVELAYER_OPTIONS_SCHEMA.extend(llm_api_options(self.hass)), suggested
                ),
                errors=errors,
            )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(
                OPTIONS_SCHEMA.extend(llm_api_options(self.hass)), suggested
            ),
            errors=errors,
        )
