"""The config flow: user set-up, reauth, reconfigure and options, authorizing over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta
import json
import logging
from pathlib import Path
import socket
from typing import Any
from unittest.mock import AsyncMock

from homeassistant.config_entries import SOURCE_USER
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import llm
from homeassistant.helpers.translation import async_get_translations
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.layercode import config_flow
from custom_components.layercode.client import (
    LAYERCODE_AUTHORIZE_URL,
    LAYERCODE_WEBSOCKET_URL,
    SDK_VERSION,
)
from custom_components.layercode.const import (
    CONF_AGENT_ID,
    CONF_AGENT_TURN_DETECTION,
    CONF_API_KEY,
    CONF_AUDIO_OUTPUT,
    CONF_AUTHORIZE_URL,
    CONF_FALLBACK_TTS,
    CONF_IDLE_TIMEOUT,
    CONF_LLM_HASS_API,
    CONF_METADATA,
    CONF_PROMPT,
    CONF_TURN_TAKING,
    CONF_WEBSOCKET_URL,
    DEFAULT_IDLE_TIMEOUT,
    DOMAIN,
    TurnTaking,
)
from local_agent_server import LocalAgentServer

from .conftest import AGENT_ID, API_KEY, AuthorizeEndpoint

pytestmark = pytest.mark.usefixtures("mock_setup_entry")

COMPONENT_DIR = Path(config_flow.__file__).parent
WS_URL = "ws://127.0.0.1:1/v1/agents/web/websocket"


async def open_layercode_form(hass: HomeAssistant) -> Any:
    """Open the user step's menu and pick Layercode; return the form."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["step_id"] == "user"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "layercode"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "layercode"
    assert result["errors"] == {}
    return result


async def start_user_flow(hass: HomeAssistant) -> str:
    """Open the Layercode form through the user step's menu; return the flow id."""
    return str((await open_layercode_form(hass))["flow_id"])


def user_input(
    url: str, *, agent_id: str = AGENT_ID, api_key: str | None = API_KEY
) -> dict[str, Any]:
    """What the user step's form sends."""
    data = {CONF_AGENT_ID: agent_id, CONF_AUTHORIZE_URL: url, CONF_WEBSOCKET_URL: WS_URL}
    if api_key is not None:
        data[CONF_API_KEY] = api_key
    return data


def closed_port_url() -> str:
    """An authorize URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/authorize"


def add_entry(
    hass: HomeAssistant,
    url: str,
    *,
    api_key: str | None = "sk_old",
    options: dict[str, Any] | None = None,
) -> MockConfigEntry:
    """A stored entry for AGENT_ID at `url`, not set up."""
    data = {CONF_AGENT_ID: AGENT_ID, CONF_AUTHORIZE_URL: url, CONF_WEBSOCKET_URL: WS_URL}
    if api_key is not None:
        data[CONF_API_KEY] = api_key
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=AGENT_ID,
        unique_id=config_flow.unique_id_for(AGENT_ID, url),
        data=data,
        options=options or {},
    )
    entry.add_to_hass(hass)
    return entry


def suggested_values(result: Any) -> dict[str, Any]:
    """The suggested value of each field of a form."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


def defaults(result: Any) -> dict[str, Any]:
    """The default of each field of a form that has one."""
    return {
        str(key): key.default()
        for key in result["data_schema"].schema
        if callable(getattr(key, "default", None)) and key.default() is not None
    }


# --- user step ---------------------------------------------------------------------------


async def test_user_flow_success(
    hass: HomeAssistant, agent_server: LocalAgentServer, mock_setup_entry: AsyncMock
) -> None:
    """The form has the four fields; a working authorize creates the entry."""
    result = await open_layercode_form(hass)
    assert [str(key) for key in result["data_schema"].schema] == [
        CONF_AGENT_ID,
        CONF_AUTHORIZE_URL,
        CONF_API_KEY,
        CONF_WEBSOCKET_URL,
    ]
    assert defaults(result) == {
        CONF_AUTHORIZE_URL: LAYERCODE_AUTHORIZE_URL,
        CONF_WEBSOCKET_URL: LAYERCODE_WEBSOCKET_URL,
    }

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_AGENT_ID: f" {AGENT_ID} ",
            CONF_AUTHORIZE_URL: agent_server.authorize_url,
            CONF_API_KEY: API_KEY,
            CONF_WEBSOCKET_URL: agent_server.websocket_url,
        },
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == AGENT_ID
    assert result["data"] == {
        CONF_AGENT_ID: AGENT_ID,
        CONF_AUTHORIZE_URL: agent_server.authorize_url,
        CONF_API_KEY: API_KEY,
        CONF_WEBSOCKET_URL: agent_server.websocket_url,
    }
    entry = result["result"]
    assert entry.unique_id == f"{AGENT_ID}@{agent_server.authorize_url}"
    assert entry.options == {}
    assert len(mock_setup_entry.mock_calls) == 1
    # Exactly one session was authorized, with no metadata.
    assert [c.metadata for c in agent_server.conversations.values()] == [{}]


async def test_user_flow_defaults_and_request(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """No API key: none is stored or sent; the WebSocket URL defaults to Layercode's."""
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_AGENT_ID: AGENT_ID, CONF_AUTHORIZE_URL: authorize_endpoint.url}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {
        CONF_AGENT_ID: AGENT_ID,
        CONF_AUTHORIZE_URL: authorize_endpoint.url,
        CONF_WEBSOCKET_URL: LAYERCODE_WEBSOCKET_URL,
    }
    [(headers, body)] = authorize_endpoint.requests
    assert "Authorization" not in headers
    assert body == {"agent_id": AGENT_ID, "metadata": {}, "sdk_version": SDK_VERSION}


async def test_user_flow_sends_bearer_key(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """The API key goes to the authorize URL as a bearer token."""
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url, api_key="sk_bearer")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_API_KEY] == "sk_bearer"
    [(headers, _)] = authorize_endpoint.requests
    assert headers["Authorization"] == "Bearer sk_bearer"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "agent_not_found"),
        (401, "invalid_auth"),
        (402, "insufficient_balance"),
        (403, "unknown"),
        (404, "agent_not_found"),
        (429, "cannot_connect"),
        (500, "cannot_connect"),
        (503, "cannot_connect"),
    ],
)
async def test_user_flow_authorize_errors(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, status: int, error: str
) -> None:
    """Each refusal is a translated form error; the same form then succeeds."""
    authorize_endpoint.status = status
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "layercode"
    assert result["errors"] == {"base": error}
    # The form keeps what was entered.
    assert suggested_values(result)[CONF_AUTHORIZE_URL] == authorize_endpoint.url

    authorize_endpoint.status = 200
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == user_input(authorize_endpoint.url)
    assert len(authorize_endpoint.requests) == 2


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>not json</html>", "text/html"),
        (b'{"conversation_id": "c1"}', "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
async def test_user_flow_invalid_reply(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, body: bytes, content_type: str
) -> None:
    """A 200 that is not a session is `unknown`; a good reply then succeeds."""
    authorize_endpoint.body = body
    authorize_endpoint.content_type = content_type
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}

    authorize_endpoint.body = None
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_unexpected_error_is_logged(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """A reply that cannot even be decoded raises outside the client's errors: `unknown`."""
    authorize_endpoint.body = b"\xff\xfe\xfa not utf-8"
    authorize_endpoint.content_type = "text/plain"
    flow_id = await start_user_flow(hass)
    with caplog.at_level(logging.ERROR, logger=config_flow.__name__):
        result = await hass.config_entries.flow.async_configure(
            flow_id, user_input(authorize_endpoint.url)
        )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "unknown"}
    [record] = [r for r in caplog.records if r.name == config_flow.__name__]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], UnicodeDecodeError)

    authorize_endpoint.body = None
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_with_local_agent_server(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """Layercode-compatible 401 and 404 map to invalid_auth and agent_not_found."""
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(agent_server.authorize_url, api_key="sk_wrong")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(agent_server.authorize_url, agent_id="ag_missing")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "agent_not_found"}

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(agent_server.authorize_url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_AUTHORIZE_URL] == agent_server.authorize_url
    assert len(agent_server.conversations) == 1


async def test_user_flow_unreachable(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """Nothing listening on the port: cannot_connect; a reachable URL then succeeds."""
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(closed_port_url()))
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_AUTHORIZE_URL] == authorize_endpoint.url


async def test_user_flow_timeout(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """An authorize endpoint that never answers: cannot_connect once the timeout passes."""
    authorize_endpoint.hang = True
    flow_id = await start_user_flow(hass)
    configure = hass.async_create_task(
        hass.config_entries.flow.async_configure(flow_id, user_input(authorize_endpoint.url))
    )
    async with asyncio.timeout(5):
        await authorize_endpoint.received.wait()
    assert not configure.done()
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=11))
    async with asyncio.timeout(5):
        result = await configure
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    authorize_endpoint.release.set()

    authorize_endpoint.hang = False
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("authorize_url", "websocket_url", "errors"),
    [
        ("ftp://example.com/authorize", WS_URL, {CONF_AUTHORIZE_URL: "invalid_authorize_url"}),
        ("not a url", WS_URL, {CONF_AUTHORIZE_URL: "invalid_authorize_url"}),
        ("wss://example.com/authorize", WS_URL, {CONF_AUTHORIZE_URL: "invalid_authorize_url"}),
        ("https://", WS_URL, {CONF_AUTHORIZE_URL: "invalid_authorize_url"}),
        (None, "https://example.com/ws", {CONF_WEBSOCKET_URL: "invalid_websocket_url"}),
        (None, "ws://", {CONF_WEBSOCKET_URL: "invalid_websocket_url"}),
        (
            "http//missing-colon",
            "example.com",
            {
                CONF_AUTHORIZE_URL: "invalid_authorize_url",
                CONF_WEBSOCKET_URL: "invalid_websocket_url",
            },
        ),
    ],
)
async def test_user_flow_invalid_urls(
    hass: HomeAssistant,
    authorize_endpoint: AuthorizeEndpoint,
    authorize_url: str | None,
    websocket_url: str,
    errors: dict[str, str],
) -> None:
    """Bad URLs are field errors, found before any request; fixed URLs then succeed."""
    flow_id = await start_user_flow(hass)
    data = user_input(authorize_url or authorize_endpoint.url)
    data[CONF_WEBSOCKET_URL] = websocket_url
    result = await hass.config_entries.flow.async_configure(flow_id, data)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert authorize_endpoint.requests == []

    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_WEBSOCKET_URL] == WS_URL


async def test_user_flow_blank_agent_id(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """An agent ID of only spaces is a field error."""
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url, agent_id="   ")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_AGENT_ID: "invalid_agent_id"}
    assert authorize_endpoint.requests == []


async def test_user_flow_already_configured(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """The same agent at the same (normalised) URL aborts without authorizing."""
    add_entry(hass, authorize_endpoint.url)
    same_url = authorize_endpoint.url.replace("http://", "HTTP://") + "/"
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, user_input(same_url))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert authorize_endpoint.requests == []
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1


async def test_user_flow_same_agent_other_url(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """The same agent behind another authorize URL is a separate entry."""
    add_entry(hass, "https://backend.example/authorize")
    flow_id = await start_user_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input(authorize_endpoint.url)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert len(hass.config_entries.async_entries(DOMAIN)) == 2


def test_unique_id_normalisation() -> None:
    """Scheme and host case, default port, trailing slash and fragment do not matter."""
    expected = "ag_1@https://api.layercode.com/v1/agents/web/authorize_session"
    for url in (
        "https://api.layercode.com/v1/agents/web/authorize_session",
        "HTTPS://API.Layercode.com:443/v1/agents/web/authorize_session/",
        " https://api.layercode.com/v1/agents/web/authorize_session#top ",
    ):
        assert config_flow.unique_id_for("ag_1", url) == expected
    assert config_flow.unique_id_for("ag_1", "http://h:8080/a?x=1") == "ag_1@http://h:8080/a?x=1"


# --- reauth ------------------------------------------------------------------------------


async def test_reauth_success(
    hass: HomeAssistant, agent_server: LocalAgentServer, mock_setup_entry: AsyncMock
) -> None:
    """A new API key that authorizes is stored and the entry reloaded."""
    entry = add_entry(
        hass, agent_server.authorize_url, options={CONF_METADATA: {"room": "kitchen"}}
    )
    result = await entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    placeholders = result["description_placeholders"]
    assert placeholders["agent_id"] == AGENT_ID
    assert placeholders["authorize_url"] == agent_server.authorize_url

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: API_KEY}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data == {
        CONF_AGENT_ID: AGENT_ID,
        CONF_AUTHORIZE_URL: agent_server.authorize_url,
        CONF_API_KEY: API_KEY,
        CONF_WEBSOCKET_URL: WS_URL,
    }
    assert entry.unique_id == config_flow.unique_id_for(AGENT_ID, agent_server.authorize_url)
    assert len(mock_setup_entry.mock_calls) == 1
    # The check carried the entry's metadata option, as real sessions do.
    [conversation] = agent_server.conversations.values()
    assert conversation.metadata == {"room": "kitchen"}


async def test_reauth_errors(
    hass: HomeAssistant, agent_server: LocalAgentServer, mock_setup_entry: AsyncMock
) -> None:
    """A key that is still refused, then a server that is gone: errors; then success."""
    entry = add_entry(hass, agent_server.authorize_url)
    result = await entry.start_reauth_flow(hass)
    flow_id = result["flow_id"]

    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_API_KEY: "sk_bad"})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data[CONF_API_KEY] == "sk_old"

    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_API_KEY: API_KEY})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_API_KEY] == API_KEY
    assert len(mock_setup_entry.mock_calls) == 1


async def test_reauth_cannot_connect(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """An authorize endpoint failing with 5xx during reauth: cannot_connect, key unchanged."""
    entry = add_entry(hass, authorize_endpoint.url)
    authorize_endpoint.status = 502
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_API_KEY: "sk_new"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert entry.data[CONF_API_KEY] == "sk_old"
    [(headers, _)] = authorize_endpoint.requests
    assert headers["Authorization"] == "Bearer sk_new"


# --- reconfigure -------------------------------------------------------------------------


async def test_reconfigure_success(
    hass: HomeAssistant,
    authorize_endpoint: AuthorizeEndpoint,
    agent_server: LocalAgentServer,
    mock_setup_entry: AsyncMock,
) -> None:
    """Move the entry to another authorize URL, key and WebSocket URL."""
    entry = add_entry(hass, authorize_endpoint.url)
    result = await entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert [str(key) for key in result["data_schema"].schema] == [
        CONF_AUTHORIZE_URL,
        CONF_API_KEY,
        CONF_WEBSOCKET_URL,
    ]
    assert suggested_values(result) == {
        CONF_AUTHORIZE_URL: authorize_endpoint.url,
        CONF_WEBSOCKET_URL: WS_URL,
    }
    assert result["description_placeholders"] == {"agent_id": AGENT_ID}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {
            CONF_AUTHORIZE_URL: agent_server.authorize_url,
            CONF_API_KEY: API_KEY,
            CONF_WEBSOCKET_URL: agent_server.websocket_url,
        },
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {
        CONF_AGENT_ID: AGENT_ID,
        CONF_AUTHORIZE_URL: agent_server.authorize_url,
        CONF_API_KEY: API_KEY,
        CONF_WEBSOCKET_URL: agent_server.websocket_url,
    }
    assert entry.unique_id == config_flow.unique_id_for(AGENT_ID, agent_server.authorize_url)
    assert entry.title == AGENT_ID
    assert len(mock_setup_entry.mock_calls) == 1
    assert len(agent_server.conversations) == 1


async def test_reconfigure_keeps_the_api_key_unseen(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """The stored key is never sent to the form; left empty, it is kept and used."""
    entry = add_entry(hass, authorize_endpoint.url, api_key="sk_stored")
    unique_id = entry.unique_id
    result = await entry.start_reconfigure_flow(hass)
    assert CONF_API_KEY not in suggested_values(result)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_AUTHORIZE_URL: authorize_endpoint.url}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == {
        CONF_AGENT_ID: AGENT_ID,
        CONF_AUTHORIZE_URL: authorize_endpoint.url,
        CONF_API_KEY: "sk_stored",
        CONF_WEBSOCKET_URL: LAYERCODE_WEBSOCKET_URL,
    }
    assert entry.unique_id == unique_id
    [(headers, _)] = authorize_endpoint.requests
    assert headers["Authorization"] == "Bearer sk_stored"


async def test_reconfigure_errors(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, agent_server: LocalAgentServer
) -> None:
    """Refused, unreachable and malformed: errors, entry unchanged; then success."""
    entry = add_entry(hass, authorize_endpoint.url)
    before = dict(entry.data)
    result = await entry.start_reconfigure_flow(hass)
    flow_id = result["flow_id"]

    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_AUTHORIZE_URL: agent_server.authorize_url, CONF_API_KEY: "sk_bad"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    assert result["errors"] == {"base": "invalid_auth"}
    assert CONF_API_KEY not in suggested_values(result)

    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_AUTHORIZE_URL: closed_port_url(), CONF_API_KEY: API_KEY}
    )
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        flow_id,
        {
            CONF_AUTHORIZE_URL: "ws://127.0.0.1/authorize",
            CONF_WEBSOCKET_URL: "http://127.0.0.1/ws",
        },
    )
    assert result["errors"] == {
        CONF_AUTHORIZE_URL: "invalid_authorize_url",
        CONF_WEBSOCKET_URL: "invalid_websocket_url",
    }
    assert entry.data == before
    assert entry.unique_id == config_flow.unique_id_for(AGENT_ID, authorize_endpoint.url)

    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_AUTHORIZE_URL: agent_server.authorize_url, CONF_API_KEY: API_KEY}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_AUTHORIZE_URL] == agent_server.authorize_url


async def test_reconfigure_already_configured(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, agent_server: LocalAgentServer
) -> None:
    """Moving onto the URL of another entry of the same agent aborts, without authorizing."""
    entry = add_entry(hass, authorize_endpoint.url)
    add_entry(hass, agent_server.authorize_url)
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_AUTHORIZE_URL: agent_server.authorize_url + "/"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_AUTHORIZE_URL] == authorize_endpoint.url
    assert entry.unique_id == config_flow.unique_id_for(AGENT_ID, authorize_endpoint.url)
    assert agent_server.conversations == {}


# --- options -----------------------------------------------------------------------------


async def test_options_flow_success(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """Every option is stored with its own type."""
    entry = add_entry(hass, authorize_endpoint.url)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    assert [str(key) for key in result["data_schema"].schema] == [
        CONF_METADATA,
        CONF_TURN_TAKING,
        CONF_IDLE_TIMEOUT,
        CONF_AUDIO_OUTPUT,
        CONF_FALLBACK_TTS,
        CONF_AGENT_TURN_DETECTION,
        CONF_PROMPT,
        CONF_LLM_HASS_API,
    ]
    assert defaults(result) == {
        CONF_TURN_TAKING: TurnTaking.AGENT,
        CONF_IDLE_TIMEOUT: DEFAULT_IDLE_TIMEOUT,
        CONF_AUDIO_OUTPUT: True,
        CONF_AGENT_TURN_DETECTION: False,
    }

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            CONF_METADATA: '{"room": "kitchen", "floor": 1}',
            CONF_TURN_TAKING: "push_to_talk",
            CONF_IDLE_TIMEOUT: 120.0,
            CONF_AUDIO_OUTPUT: False,
            CONF_FALLBACK_TTS: "tts.piper",
            CONF_AGENT_TURN_DETECTION: True,
        },
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    expected = {
        CONF_METADATA: {"room": "kitchen", "floor": 1},
        CONF_TURN_TAKING: TurnTaking.PUSH_TO_TALK,
        CONF_IDLE_TIMEOUT: 120,
        CONF_AUDIO_OUTPUT: False,
        CONF_FALLBACK_TTS: "tts.piper",
        CONF_AGENT_TURN_DETECTION: True,
    }
    assert entry.options == expected
    assert type(entry.options[CONF_IDLE_TIMEOUT]) is int
    assert type(entry.options[CONF_TURN_TAKING]) is str
    # Options are not checked against the authorize endpoint.
    assert authorize_endpoint.requests == []

    # Opening the options again shows what is stored, metadata as JSON text.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    shown = suggested_values(result)
    assert json.loads(shown[CONF_METADATA]) == {"room": "kitchen", "floor": 1}
    assert {key: shown[key] for key in expected if key != CONF_METADATA} == {
        key: value for key, value in expected.items() if key != CONF_METADATA
    }
    await hass.config_entries.options.async_configure(result["flow_id"], {})
    await hass.async_block_till_done()
    # An emptied form: no metadata, no fallback engine, defaults for the rest.
    assert entry.options == {
        CONF_METADATA: {},
        CONF_TURN_TAKING: TurnTaking.AGENT,
        CONF_IDLE_TIMEOUT: DEFAULT_IDLE_TIMEOUT,
        CONF_AUDIO_OUTPUT: True,
        CONF_AGENT_TURN_DETECTION: False,
    }


async def test_options_flow_control_home_assistant(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint
) -> None:
    """ "Control Home Assistant" offers Home Assistant's LLM APIs (none by default), stored as a
    list with the extra instructions; emptied, both are gone and the other options stay."""
    entry = add_entry(hass, authorize_endpoint.url)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    selector = next(
        value for key, value in result["data_schema"].schema.items() if key == CONF_LLM_HASS_API
    )
    config = selector.config
    assert config["multiple"] is True
    offered = {option["value"]: option["label"] for option in config["options"]}
    assert offered == {api.id: api.name for api in llm.async_get_apis(hass)}
    assert llm.LLM_API_ASSIST in offered
    assert CONF_LLM_HASS_API not in defaults(result)

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_LLM_HASS_API: [llm.LLM_API_ASSIST], CONF_PROMPT: "  Answer briefly.  "},
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_LLM_HASS_API] == [llm.LLM_API_ASSIST]
    assert entry.options[CONF_PROMPT] == "Answer briefly."
    assert entry.options[CONF_TURN_TAKING] == TurnTaking.AGENT

    result = await hass.config_entries.options.async_init(entry.entry_id)
    shown = suggested_values(result)
    assert shown[CONF_LLM_HASS_API] == [llm.LLM_API_ASSIST]
    assert shown[CONF_PROMPT] == "Answer briefly."
    await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: [], CONF_PROMPT: ""}
    )
    await hass.async_block_till_done()
    assert CONF_LLM_HASS_API not in entry.options
    assert CONF_PROMPT not in entry.options


@pytest.mark.parametrize("metadata", ["not json", "[1, 2]", '"text"', "{'room': 1}", "42"])
async def test_options_flow_invalid_metadata(
    hass: HomeAssistant, authorize_endpoint: AuthorizeEndpoint, metadata: str
) -> None:
    """Metadata that is not a JSON object is a field error; a valid object then saves."""
    entry = add_entry(hass, authorize_endpoint.url)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_METADATA: metadata, CONF_IDLE_TIMEOUT: 60}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    assert result["errors"] == {CONF_METADATA: "invalid_metadata"}
    assert suggested_values(result)[CONF_METADATA] == metadata
    assert entry.options == {}

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_METADATA: '{"a": [1, 2]}', CONF_IDLE_TIMEOUT: 60}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options[CONF_METADATA] == {"a": [1, 2]}
    assert entry.options[CONF_IDLE_TIMEOUT] == 60


# --- translations ------------------------------------------------------------------------


def _strings() -> dict[str, Any]:
    return dict(json.loads((COMPONENT_DIR / "strings.json").read_text(encoding="utf-8")))


def test_translations_match_strings() -> None:
    """translations/en.json is strings.json; the turn-taking options are all translated."""
    strings = _strings()
    english = json.loads((COMPONENT_DIR / "translations" / "en.json").read_text(encoding="utf-8"))
    assert english == strings
    assert set(strings["selector"]["turn_taking"]["options"]) == {mode.value for mode in TurnTaking}
    config = strings["config"]
    assert set(config["step"]["layercode"]["data"]) == {
        CONF_AGENT_ID,
        CONF_AUTHORIZE_URL,
        CONF_API_KEY,
        CONF_WEBSOCKET_URL,
    }
    assert set(config["step"]["layercode"]["data_description"]) == set(
        config["step"]["layercode"]["data"]
    )
    assert set(strings["options"]["step"]["init"]["data"]) == {
        CONF_METADATA,
        CONF_TURN_TAKING,
        CONF_IDLE_TIMEOUT,
        CONF_AUDIO_OUTPUT,
        CONF_FALLBACK_TTS,
        CONF_AGENT_TURN_DETECTION,
        CONF_LLM_HASS_API,
        CONF_PROMPT,
    }


async def test_translations_load(hass: HomeAssistant) -> None:
    """Home Assistant finds every error and abort text the flows can show."""
    config = await async_get_translations(hass, "en", "config", [DOMAIN])
    prefix = f"component.{DOMAIN}.config"
    for error in (
        "cannot_connect",
        "invalid_auth",
        "insufficient_balance",
        "agent_not_found",
        "unknown",
        "invalid_agent_id",
        "invalid_authorize_url",
        "invalid_websocket_url",
    ):
        assert config[f"{prefix}.error.{error}"]
    for reason in ("already_configured", "reauth_successful", "reconfigure_successful"):
        assert config[f"{prefix}.abort.{reason}"]
    options = await async_get_translations(hass, "en", "options", [DOMAIN])
    assert options[f"component.{DOMAIN}.options.error.invalid_metadata"]
    selector = await async_get_translations(hass, "en", "selector", [DOMAIN])
    for mode in TurnTaking:
        assert selector[f"component.{DOMAIN}.selector.turn_taking.options.{mode.value}"]
