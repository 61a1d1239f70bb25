"""Fixtures: LocalAgentServers that always stop (`http` and `start_app` come from tests/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from local_agent_server import LocalAgentServer

type StartServer = Callable[..., Awaitable[LocalAgentServer]]


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
