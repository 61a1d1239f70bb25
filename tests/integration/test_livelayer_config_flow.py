"""The config flow for LiveLayer agents: the provider menu, the LiveLayer step with its
on-demand LiveKit check, LiveLayer reauthentication, reconfiguration and options.

The session endpoint is a real HTTP server on 127.0.0.1; LiveKit is the real package in the
test environment, made to fail through its own loader where a test needs that.
"""

from __future__ import annotations

from collections.abc import Iterator
import socket
import sys
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_REAUTH, SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.translation import async_get_translations
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.layercode import async_setup_entry as real_async_setup_entry, config_flow
from custom_components.layercode.const import (
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
    DEFAULT_LIVELAYER_BASE_URL,
    DOMAIN,
    Provider,
)
from custom_components.layercode.livekit import DATA_LIVEKIT_READY

from ..conftest import StartApp
from ..session_endpoint import AGENT_NAME, DEFAULT_PATH, SessionEndpoint, serve_session_endpoint
from .conftest import AuthorizeEndpoint

LL_AGENT = "ag_livelayer"
LL_KEY = "ll_key"
CUSTOM_PATH = "/custom/mint"
BAD_LIB = "/nonexistent/liblivekit_ffi.so"

pytestmark = pytest.mark.usefixtures("mock_setup_entry")


@pytest.fixture
async def endpoint(start_app: StartApp) -> SessionEndpoint:
    """A SessionEndpoint at the default path and at CUSTOM_PATH."""
    return await serve_session_endpoint(start_app, CUSTOM_PATH)


@pytest.fixture(autouse=True)
def fresh_livekit_check(hass: HomeAssistant) -> Iterator[None]:
    """Every test checks LiveKit afresh: no success remembered from elsewhere."""
    hass.data.pop(DATA_LIVEKIT_READY, None)
    yield
    hass.data.pop(DATA_LIVEKIT_READY, None)


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def ll_input(base_url: str, **extra: str) -> dict[str, Any]:
    """What the LiveLayer form sends."""
    return {CONF_AGENT_ID: LL_AGENT, CONF_BASE_URL: base_url, CONF_API_KEY: LL_KEY, **extra}


async def open_livelayer_form(hass: HomeAssistant) -> Any:
    """Open the user step's menu and pick LiveLayer; return the form."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "livelayer"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "livelayer"
    assert result["errors"] == {}
    return result


async def start_livelayer_flow(hass: HomeAssistant) -> str:
    return str((await open_livelayer_form(hass))["flow_id"])


def livelayer_entry(
    hass: HomeAssistant, base_url: str, *, api_key: str | None = "ll_old", **data: str
) -> MockConfigEntry:
    """A stored LiveLayer entry, as the flow creates it; not set up."""
    entry_data: dict[str, Any] = {
        CONF_PROVIDER: Provider.LIVELAYER.value,
        CONF_AGENT_ID: LL_AGENT,
        CONF_BASE_URL: base_url,
        **data,
    }
    if api_key is not None:
        entry_data[CONF_API_KEY] = api_key
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=AGENT_NAME,
        unique_id=f"livelayer_{LL_AGENT}",
        data=entry_data,
    )
    entry.add_to_hass(hass)
    return entry


def suggested_values(result: Any) -> dict[str, Any]:
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


def defaults(result: Any) -> dict[str, Any]:
    return {
        str(key): key.default()
        for key in result["data_schema"].schema
        if callable(getattr(key, "default", None)) and key.default() is not None
    }


# --- the menu ----------------------------------------------------------------------------


async def test_user_step_is_a_provider_menu(hass: HomeAssistant) -> None:
    """Adding the integration first asks which service runs the agent."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["step_id"] == "user"
    assert result["menu_options"] == ["layercode", "livelayer"]
    config = await async_get_translations(hass, "en", "config", [DOMAIN])
    for option in result["menu_options"]:
        assert config[f"component.{DOMAIN}.config.step.user.menu_options.{option}"]


async def test_layercode_branch_creates_an_entry(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, mock_setup_entry: AsyncMock
) -> None:
    """The Layercode branch is the former user form; its entries have no provider key."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "layercode"}
    )
    assert result["step_id"] == "layercode"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_AGENT_ID: "ag_lc", CONF_AUTHORIZE_URL: authorize_endpoint.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "ag_lc"
    assert CONF_PROVIDER not in result["data"]
    assert result["data"][CONF_WEBSOCKET_URL]
    assert result["result"].unique_id == f"ag_lc@{authorize_endpoint.url}"
    assert len(authorize_endpoint.requests) == 1
    assert len(mock_setup_entry.mock_calls) == 1


# --- the LiveLayer step ------------------------------------------------------------------


async def test_livelayer_success(
    hass: HomeAssistant, endpoint: SessionEndpoint, mock_setup_entry: AsyncMock
) -> None:
    """LiveKit checked, one room minted with the key and agent: the entry takes the agent's name."""
    result = await open_livelayer_form(hass)
    assert [str(key) for key in result["data_schema"].schema] == [
        CONF_AGENT_ID,
        CONF_BASE_URL,
        CONF_API_KEY,
        CONF_SESSION_ENDPOINT,
    ]
    assert defaults(result) == {CONF_BASE_URL: DEFAULT_LIVELAYER_BASE_URL}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_AGENT_ID: f" {LL_AGENT} ",
            CONF_BASE_URL: endpoint.url,
            CONF_API_KEY: LL_KEY,
            CONF_SESSION_ENDPOINT: "  ",
        },
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == AGENT_NAME
    assert result["data"] == {
        CONF_PROVIDER: Provider.LIVELAYER,
        CONF_AGENT_ID: LL_AGENT,
        CONF_BASE_URL: endpoint.url,
        CONF_API_KEY: LL_KEY,
    }
    assert result["result"].unique_id == f"livelayer_{LL_AGENT}"
    assert len(mock_setup_entry.mock_calls) == 1
    [(path, headers, body)] = endpoint.requests
    assert path == DEFAULT_PATH
    assert headers["x-api-key"] == LL_KEY
    assert "Authorization" not in headers
    assert body == {"agentId": LL_AGENT}
    # LiveKit was installed (already, here) and loaded, and that is remembered.
    assert hass.data[DATA_LIVEKIT_READY] is True


@pytest.mark.parametrize("form", ["path", "relative", "absolute"])
async def test_livelayer_session_endpoint_and_fallback_title(
    hass: HomeAssistant, endpoint: SessionEndpoint, form: str
) -> None:
    """The session endpoint is honoured (a path or a full URL); no key is sent when none is
    given; an agent without a name is titled by its ID."""
    session_endpoint = {
        "path": CUSTOM_PATH,
        "relative": CUSTOM_PATH.lstrip("/"),
        "absolute": endpoint.url + CUSTOM_PATH,
    }[form]
    endpoint.name = None
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_AGENT_ID: LL_AGENT,
            CONF_BASE_URL: "https://livelayer.invalid" if form == "absolute" else endpoint.url,
            CONF_SESSION_ENDPOINT: session_endpoint,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"LiveLayer {LL_AGENT}"
    assert result["data"][CONF_SESSION_ENDPOINT] == session_endpoint
    assert CONF_API_KEY not in result["data"]
    [(path, headers, body)] = endpoint.requests
    assert path == CUSTOM_PATH
    assert "x-api-key" not in headers
    assert body == {"agentId": LL_AGENT}


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (403, "key_wrong_org", "key_wrong_org"),
        (401, "key_expired", "key_expired"),
        (400, "agent_has_no_org", "agent_has_no_org"),
        (503, None, "cannot_connect"),
        (429, None, "cannot_connect"),
        (404, None, "session_failed"),
        (401, None, "session_failed"),
    ],
)
async def test_livelayer_session_errors_then_success(
    hass: HomeAssistant,
    endpoint: SessionEndpoint,
    status: int,
    code: str | None,
    error: str,
) -> None:
    """Each refusal is a translated form error, the form keeps what was entered, and the same
    flow then succeeds."""
    endpoint.status, endpoint.error_code = status, code
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "livelayer"
    assert result["errors"] == {"base": error}
    assert f"HTTP {status}" in result["description_placeholders"]["error"]
    assert suggested_values(result)[CONF_BASE_URL] == endpoint.url
    assert hass.config_entries.async_entries(DOMAIN) == []

    endpoint.succeed()
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == AGENT_NAME
    assert len(endpoint.requests) == 2


async def test_livelayer_unreachable_then_success(
    hass: HomeAssistant, endpoint: SessionEndpoint
) -> None:
    """Nothing listening at the base URL: cannot_connect with the cause; then success."""
    flow_id = await start_livelayer_flow(hass)
    unreachable = closed_port_url()
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(unreachable))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert "127.0.0.1" in result["description_placeholders"]["error"]

    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_BASE_URL] == endpoint.url


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"<html>Welcome</html>", "JSON object"),
        (b'["token", "url"]', "JSON object"),
        (b'{"token": "t", "url": "wss://rooms.invalid"}', "roomName"),
    ],
)
async def test_livelayer_not_a_session_then_success(
    hass: HomeAssistant, endpoint: SessionEndpoint, body: bytes, cause: str
) -> None:
    """A 200 that is not a session (a web page, garbage, a partial answer): session_failed,
    with what was wrong as the placeholder; then success."""
    endpoint.raw = body
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "session_failed"}
    assert cause in result["description_placeholders"]["error"]

    endpoint.succeed()
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({CONF_AGENT_ID: "  "}, {CONF_AGENT_ID: "invalid_agent_id"}),
        ({CONF_BASE_URL: "ftp://livelayer.invalid"}, {CONF_BASE_URL: "invalid_base_url"}),
        ({CONF_BASE_URL: "livelayer.app"}, {CONF_BASE_URL: "invalid_base_url"}),
        (
            {CONF_SESSION_ENDPOINT: "ws://livelayer.invalid/session"},
            {CONF_SESSION_ENDPOINT: "invalid_session_endpoint"},
        ),
        (
            {CONF_SESSION_ENDPOINT: "//livelayer.invalid/session"},
            {CONF_SESSION_ENDPOINT: "invalid_session_endpoint"},
        ),
    ],
)
async def test_livelayer_invalid_fields(
    hass: HomeAssistant, endpoint: SessionEndpoint, changes: dict[str, str], errors: dict[str, str]
) -> None:
    """Bad fields are field errors, found before anything is requested."""
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**ll_input(endpoint.url), **changes}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert endpoint.requests == []

    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_livelayer_already_configured(hass: HomeAssistant, endpoint: SessionEndpoint) -> None:
    """The same LiveLayer agent again aborts, whatever its base URL, without a request."""
    livelayer_entry(hass, "https://elsewhere.invalid")
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert endpoint.requests == []
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_livelayer_beside_a_layercode_agent_of_the_same_id(
    hass: HomeAssistant, endpoint: SessionEndpoint
) -> None:
    """A Layercode entry with the same agent ID is another agent."""
    MockConfigEntry(
        domain=DOMAIN,
        unique_id=f"{LL_AGENT}@https://api.layercode.invalid/authorize",
        data={CONF_AGENT_ID: LL_AGENT, CONF_AUTHORIZE_URL: "https://api.layercode.invalid"},
    ).add_to_hass(hass)
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert len(hass.config_entries.async_entries(DOMAIN)) == 2


# --- LiveKit missing ---------------------------------------------------------------------


async def test_livekit_native_library_does_not_load(
    hass: HomeAssistant, endpoint: SessionEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LiveKit's own loader fails (as on a musl system): a form error naming the cause, no
    session requested; once it loads, the same flow succeeds."""
    monkeypatch.setenv("LIVEKIT_LIB_PATH", BAD_LIB)
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "livelayer"
    assert result["errors"] == {"base": "livekit_unavailable"}
    reason = result["description_placeholders"]["error"]
    assert "native library" in reason
    assert BAD_LIB in reason
    assert endpoint.requests == []
    assert DATA_LIVEKIT_READY not in hass.data

    monkeypatch.delenv("LIVEKIT_LIB_PATH")
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert len(endpoint.requests) == 1


async def test_livekit_package_missing(
    hass: HomeAssistant, endpoint: SessionEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package cannot be imported: the form says it is not installed."""
    monkeypatch.setitem(sys.modules, "livekit.rtc._ffi_client", None)
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "livekit_unavailable"}
    assert "not installed" in result["description_placeholders"]["error"]
    assert endpoint.requests == []


async def test_livekit_check_is_done_once(
    hass: HomeAssistant, endpoint: SessionEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one successful check, LiveKit is not loaded again (the library stays loaded)."""
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, ll_input(endpoint.url))
    assert result["type"] is FlowResultType.CREATE_ENTRY

    monkeypatch.setenv("LIVEKIT_LIB_PATH", BAD_LIB)  # would fail if loaded again
    flow_id = await start_livelayer_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {**ll_input(endpoint.url), CONF_AGENT_ID: "ag_second"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == "livelayer_ag_second"


async def test_livekit_unavailable_translations(hass: HomeAssistant) -> None:
    """The form error and the exception both say what to do, with the reason."""
    config = await async_get_translations(hass, "en", "config", [DOMAIN])
    exceptions = await async_get_translations(hass, "en", "exceptions", [DOMAIN])
    for text in (
        config[f"component.{DOMAIN}.config.error.livekit_unavailable"],
        exceptions[f"component.{DOMAIN}.exceptions.livekit_unavailable.message"],
    ):
        assert "{error}" in text
        assert "relay" in text
        assert "Home Assistant OS" in text
    for error in (
        "key_wrong_org",
        "key_expired",
        "agent_has_no_org",
        "session_failed",
        "invalid_base_url",
        "invalid_session_endpoint",
    ):
        assert config[f"component.{DOMAIN}.config.error.{error}"]


# --- reauth and reconfigure --------------------------------------------------------------


async def test_reauth_after_key_expired_at_setup(
    hass: HomeAssistant, endpoint: SessionEndpoint
) -> None:
    """Set-up meets key_expired: Home Assistant asks for a new key with the LiveLayer form; a
    key still refused is an error; a good one is stored and the entry loads."""
    endpoint.status, endpoint.error_code = 401, "key_expired"
    entry = livelayer_entry(hass, endpoint.url)
    with patch("custom_components.layercode.async_setup_entry", real_async_setup_entry):
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_ERROR
        [flow] = [
            f
            for f in hass.config_entries.flow.async_progress()
            if f["context"]["source"] == SOURCE_REAUTH
        ]
        assert flow["step_id"] == "reauth_livelayer"

        result = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {CONF_API_KEY: "ll_also_expired"}
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "reauth_livelayer"
        assert result["errors"] == {"base": "key_expired"}
        placeholders = result["description_placeholders"]
        assert placeholders["agent_id"] == LL_AGENT
        assert placeholders["base_url"] == endpoint.url
        assert entry.data[CONF_API_KEY] == "ll_old"

        endpoint.succeed()
        result = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {CONF_API_KEY: " ll_new "}
        )
        await hass.async_block_till_done()
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reauth_successful"
        assert entry.data[CONF_API_KEY] == "ll_new"
        assert entry.data[CONF_PROVIDER] == Provider.LIVELAYER
        assert entry.state is ConfigEntryState.LOADED
        keys = [headers.get("x-api-key") for _, headers, _ in endpoint.requests]
        assert keys == ["ll_old", "ll_also_expired", "ll_new", "ll_new"]  # the last: set-up

        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


@pytest.mark.parametrize("failure", ["key_wrong_org", "cannot_connect"])
async def test_reauth_livelayer_errors(
    hass: HomeAssistant, endpoint: SessionEndpoint, failure: str
) -> None:
    """A LiveLayer reauth with a foreign key, or with the endpoint gone: the error, key kept."""
    if failure == "cannot_connect":
        entry = livelayer_entry(hass, closed_port_url())
    else:
        entry = livelayer_entry(hass, endpoint.url)
        endpoint.status, endpoint.error_code = 403, failure
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_livelayer"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: "ll_new"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": failure}
    assert result["description_placeholders"]["error"]
    assert entry.data[CONF_API_KEY] == "ll_old"


async def test_reconfigure_livelayer(
    hass: HomeAssistant, endpoint: SessionEndpoint, mock_setup_entry: AsyncMock
) -> None:
    """A LiveLayer entry is reconfigured with its own form; the stored key is never shown and
    kept when left empty; errors leave the entry unchanged."""
    entry = livelayer_entry(hass, "https://old.invalid", api_key="ll_stored")
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure_livelayer"
    assert [str(key) for key in result["data_schema"].schema] == [
        CONF_BASE_URL,
        CONF_API_KEY,
        CONF_SESSION_ENDPOINT,
    ]
    assert suggested_values(result) == {CONF_BASE_URL: "https://old.invalid"}
    assert result["description_placeholders"]["agent_id"] == LL_AGENT
    flow_id = result["flow_id"]

    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BASE_URL: "mailto:someone@example.invalid"}
    )
    assert result["errors"] == {CONF_BASE_URL: "invalid_base_url"}

    endpoint.status, endpoint.error_code = 400, "agent_has_no_org"
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BASE_URL: endpoint.url, CONF_SESSION_ENDPOINT: CUSTOM_PATH}
    )
    assert result["errors"] == {"base": "agent_has_no_org"}
    assert CONF_API_KEY not in suggested_values(result)
    assert entry.data[CONF_BASE_URL] == "https://old.invalid"

    endpoint.succeed()
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_BASE_URL: endpoint.url, CONF_SESSION_ENDPOINT: CUSTOM_PATH}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {
        CONF_PROVIDER: Provider.LIVELAYER,
        CONF_AGENT_ID: LL_AGENT,
        CONF_BASE_URL: endpoint.url,
        CONF_API_KEY: "ll_stored",
        CONF_SESSION_ENDPOINT: CUSTOM_PATH,
    }
    assert entry.unique_id == f"livelayer_{LL_AGENT}"
    assert entry.title == AGENT_NAME
    assert [(path, headers["x-api-key"]) for path, headers, _ in endpoint.requests] == [
        (CUSTOM_PATH, "ll_stored"),
        (CUSTOM_PATH, "ll_stored"),
    ]
    assert len(mock_setup_entry.mock_calls) == 1


# --- options -----------------------------------------------------------------------------


async def test_options_for_a_livelayer_entry(
    hass: HomeAssistant, endpoint: SessionEndpoint
) -> None:
    """The options form works for LiveLayer entries, without the Layercode-only options."""
    entry = livelayer_entry(hass, endpoint.url)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    fields = [str(key) for key in result["data_schema"].schema]
    assert fields == [
        CONF_IDLE_TIMEOUT,
        CONF_AUDIO_OUTPUT,
        CONF_FALLBACK_TTS,
        CONF_AGENT_TURN_DETECTION,
        CONF_PROMPT,
        CONF_LLM_HASS_API,
    ]
    assert CONF_METADATA not in fields and CONF_TURN_TAKING not in fields

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_IDLE_TIMEOUT: 90, CONF_AUDIO_OUTPUT: False}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {
        CONF_IDLE_TIMEOUT: 90,
        CONF_AUDIO_OUTPUT: False,
        CONF_AGENT_TURN_DETECTION: False,
    }
    assert endpoint.requests == []


def test_unique_id() -> None:
    assert config_flow.livelayer_unique_id("ag_1") == "livelayer_ag_1"
