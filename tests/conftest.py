"""Fixtures shared by every test: an HTTP client, throwaway HTTP servers on 127.0.0.1, and
client library sessions against them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
import pytest

from custom_components.layercode.client import Authorizer, LayercodeSession, SessionEvent
from local_agent_server import LocalAgentServer

type StartApp = Callable[[web.Application], Awaitable[str]]
type StartServer = Callable[..., Awaitable[LocalAgentServer]]
type MakeSession = Callable[..., Awaitable[tuple[LayercodeSession, list[SessionEvent]]]]


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait (bounded) for something that happens on the other side of a socket."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Allow real sockets; pytest-homeassistant-custom-component still limits them to 127.0.0.1."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """Serve aiohttp applications on free loopback ports; returns each one's base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start a LocalAgentServer on a free port; every one is stopped after the test."""
    servers: list[LocalAgentServer] = []

    async def start(**kwargs: Any) -> LocalAgentServer:
        kwargs.setdefault("agent_id", "ag_test")
        server = LocalAgentServer(**kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def make_session(http: aiohttp.ClientSession) -> AsyncIterator[MakeSession]:
    """Connected client sessions recording their events; all disconnected after the test."""
    sessions: list[LayercodeSession] = []

    async def make(
        server: LocalAgentServer, *, connect: bool = True, api_key: str | None = None, **kwargs: Any
    ) -> tuple[LayercodeSession, list[SessionEvent]]:
        authorizer = Authorizer(server.authorize_url, server.agent_id, api_key=api_key)
        kwargs.setdefault("reconnect_delays", (0.05, 0.1, 0.2))
        session = LayercodeSession(http, authorizer, websocket_url=server.websocket_url, **kwargs)
        events: list[SessionEvent] = []
        session.add_listener(events.append)
        sessions.append(session)
        if connect:
            await session.connect()
        return session, events

    yield make
    for session in sessions:
        await session.disconnect()
