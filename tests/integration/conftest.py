"""Fixtures for the Home Assistant integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

from aiohttp import web
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.layercode.const import (
    CONF_AGENT_ID,
    CONF_API_KEY,
    CONF_AUDIO_OUTPUT,
    CONF_AUTHORIZE_URL,
    CONF_IDLE_TIMEOUT,
    CONF_METADATA,
    CONF_TURN_TAKING,
    CONF_WEBSOCKET_URL,
    DOMAIN,
    TurnTaking,
)
from custom_components.layercode.runtime import LayercodeRuntime
from local_agent_server import LocalAgentServer

from ..conftest import StartApp

AGENT_ID = "ag_test"
API_KEY = "sk_test_key"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/layercode in every test."""


@pytest.fixture(autouse=True)
async def setup_core(hass: HomeAssistant) -> None:
    """Home Assistant's core integration, always there in a real instance (exposed entities)."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(autouse=True)
def remove_tts_cache_files(hass: HomeAssistant) -> Iterator[None]:
    """Delete the TTS cache files a test wrote.

    Home Assistant's TTS file cache is in the plugin's shared test config directory, so a file
    one test (or run) writes would be served to the next one from disk.
    """
    cache_dir = Path(hass.config.path("tts"))
    before = set(cache_dir.iterdir()) if cache_dir.is_dir() else set()
    yield
    if cache_dir.is_dir():
        for path in set(cache_dir.iterdir()) - before:
            path.unlink(missing_ok=True)


@pytest.fixture
def mock_setup_entry() -> Iterator[AsyncMock]:
    """Replace the entry set-up, so that flow tests create entries without starting them."""
    with patch("custom_components.layercode.async_setup_entry", return_value=True) as mock_setup:
        yield mock_setup


@pytest.fixture
async def agent_server() -> AsyncIterator[LocalAgentServer]:
    """A Layercode-compatible server for agent AGENT_ID that wants the API key API_KEY."""
    server = LocalAgentServer(agent_id=AGENT_ID, api_key=API_KEY)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class AuthorizeEndpoint:
    """A scriptable authorize endpoint: answers `status` (200: a valid session) or `body`."""

    url: str = ""
    status: int = 200
    body: bytes | None = None
    content_type: str = "application/json"
    hang: bool = False
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request, then answer as told."""
        self.requests.append((dict(request.headers), await request.json()))
        self.received.set()
        if self.hang:
            await self.release.wait()
        if self.body is not None:
            return web.Response(status=self.status, body=self.body, content_type=self.content_type)
        if self.status == 200:
            reply = {
                "client_session_key": f"key_{len(self.requests)}",
                "conversation_id": f"conv_{len(self.requests)}",
                "config": {"transcription": {"trigger": "push_to_talk"}},
            }
            return web.json_response(reply)
        return web.Response(
            status=self.status,
            text=json.dumps({"error": f"scripted HTTP {self.status}"}),
            content_type="application/json",
        )


@pytest.fixture
async def authorize_endpoint(start_app: StartApp) -> AsyncIterator[AuthorizeEndpoint]:
    """An AuthorizeEndpoint served on 127.0.0.1; a hanging request is released at the end."""
    endpoint = AuthorizeEndpoint()
    app = web.Application()
    app.router.add_post("/authorize", endpoint.handle)
    endpoint.url = await start_app(app) + "/authorize"
    yield endpoint
    endpoint.release.set()


def make_entry(server: LocalAgentServer, **options: Any) -> MockConfigEntry:
    """An entry for the server's agent, as the config flow stores it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=AGENT_ID,
        unique_id=f"{AGENT_ID}@{server.authorize_url}",
        data={
            CONF_AGENT_ID: AGENT_ID,
            CONF_AUTHORIZE_URL: server.authorize_url,
            CONF_API_KEY: API_KEY,
            CONF_WEBSOCKET_URL: server.websocket_url,
        },
        options={
            CONF_METADATA: {"home": "test"},
            CONF_TURN_TAKING: TurnTaking.AGENT,
            CONF_IDLE_TIMEOUT: 300,
            CONF_AUDIO_OUTPUT: True,
            **options,
        },
    )


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> LayercodeRuntime:
    """Add and set up the entry; returns its runtime."""
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime: LayercodeRuntime = entry.runtime_data
    return runtime


@pytest.fixture
async def loaded(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> AsyncIterator[MockConfigEntry]:
    """A loaded entry, unloaded (and checked to leave nothing running) after the test."""
    entry = make_entry(agent_server)
    await setup(hass, entry)
    yield entry
    await unload(hass, entry)


async def unload(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Unload and check that every session is closed."""
    runtime: LayercodeRuntime = entry.runtime_data
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert runtime.conversations == {}
