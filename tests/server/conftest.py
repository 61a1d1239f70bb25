"""Fixtures: servers that always stop, clients that always close.

`http` and `start_app` come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from local_agent_server import LocalAgentServer

from .helpers import Client, Connect, open_client


@pytest.fixture
async def connect(http: aiohttp.ClientSession) -> AsyncIterator[Connect]:
    """Connect a raw client to a server; every one is closed after the test."""
    clients: list[Client] = []

    async def connect(server: LocalAgentServer, **body: Any) -> Client:
        client = await open_client(http, server, **body)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.ws.close()
