"""Authorize against throwaway HTTP servers: every reply shape and every failure."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
from aiohttp import web
import pytest

from custom_components.layercode.client import (
    SDK_VERSION,
    AgentNotFoundError,
    AuthorizeError,
    Authorizer,
    BadRequestError,
    ConcurrencyLimitError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    InvalidResponseError,
    LayercodeConnectionError,
    LayercodeTimeoutError,
    ServerError,
    TurnTrigger,
)

from ..conftest import StartApp


async def serve(start_app: StartApp, status: int, body: str, seen: list[Any]) -> str:
    """An authorize endpoint that records each request and answers `body` with `status`."""

    async def handler(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.json()))
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/authorize", handler)
    return await start_app(app) + "/authorize"


async def test_request_body_and_headers(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """The body the browser SDK sends, plus the bearer key and extra headers."""
    seen: list[Any] = []
    reply = {"client_session_key": "k1", "conversation_id": "c1"}
    url = await serve(start_app, 200, json.dumps(reply), seen)
    authorizer = Authorizer(
        url, "ag_1", api_key="sk_secret", metadata={"room": "kitchen"}, headers={"X-A": "b"}
    )
    auth = await authorizer(http)
    assert (auth.client_session_key, auth.conversation_id) == ("k1", "c1")
    assert auth.config.trigger is TurnTrigger.AUTOMATIC
    headers, body = seen[0]
    assert body == {"agent_id": "ag_1", "metadata": {"room": "kitchen"}, "sdk_version": SDK_VERSION}
    assert headers["Authorization"] == "Bearer sk_secret"
    assert headers["X-A"] == "b"
    await authorizer(http, "c1")
    assert seen[1][1]["conversation_id"] == "c1"
    assert "sk_secret" not in repr(authorizer)
    assert "k1" not in repr(auth)


async def test_no_api_key_sends_no_authorization(
    http: aiohttp.ClientSession, start_app: StartApp
) -> None:
    """A user's own backend may need no bearer at all."""
    seen: list[Any] = []
    url = await serve(start_app, 200, '{"client_session_key": "k", "conversation_id": "c"}', seen)
    await Authorizer(url, "ag")(http)
    assert "Authorization" not in seen[0][0]


@pytest.mark.parametrize(
    "reply",
    [
        {"clientSessionKey": "k", "conversationId": "c"},
        {"client_session_key": "k", "session_id": "c"},
        {"clientSessionKey": "k", "sessionId": "c", "config": None},
    ],
)
async def test_reply_variants(
    http: aiohttp.ClientSession, start_app: StartApp, reply: dict[str, Any]
) -> None:
    """camelCase and the older session_id are accepted; a missing config gets defaults."""
    url = await serve(start_app, 200, json.dumps(reply), [])
    auth = await Authorizer(url, "ag")(http)
    assert (auth.client_session_key, auth.conversation_id) == ("k", "c")
    assert auth.config.trigger is TurnTrigger.AUTOMATIC


async def test_config_is_read(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """The agent's turn-taking comes from the reply's config."""
    reply = {
        "client_session_key": "k",
        "conversation_id": "c",
        "config": {"transcription": {"trigger": "push_to_talk", "can_interrupt": False}},
    }
    url = await serve(start_app, 200, json.dumps(reply), [])
    auth = await Authorizer(url, "ag")(http)
    assert auth.config.trigger is TurnTrigger.PUSH_TO_TALK
    assert auth.config.can_interrupt is False


@pytest.mark.parametrize(
    ("status", "error", "body", "message"),
    [
        (400, BadRequestError, '{"error": "bad conversation id"}', "bad conversation id"),
        (401, InvalidApiKeyError, '{"error": "invalid API key"}', "invalid API key"),
        (402, InsufficientBalanceError, '{"error": "insufficient balance"}', "insufficient"),
        (404, AgentNotFoundError, '{"error": "agent not found"}', "agent not found"),
        (429, ConcurrencyLimitError, '{"error": "too many sessions"}', "too many sessions"),
        (500, ServerError, "<html>Internal   Server Error</html>", "<html>Internal Server"),
        (503, ServerError, "", "HTTP 503"),
        (418, AuthorizeError, '{"message": "teapot"}', "teapot"),
    ],
)
async def test_errors_are_typed_and_carry_the_message(
    http: aiohttp.ClientSession,
    start_app: StartApp,
    status: int,
    error: type[AuthorizeError],
    body: str,
    message: str,
) -> None:
    """Each documented status maps to its error class with the server's own words."""
    url = await serve(start_app, status, body, [])
    with pytest.raises(error) as info:
        await Authorizer(url, "ag")(http)
    assert type(info.value) is error
    assert info.value.status == status
    assert message in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        "garbage",
        "[]",
        '{"conversation_id": "c"}',
        '{"client_session_key": "k"}',
        '{"client_session_key": 5}',
    ],
)
async def test_garbage_replies(http: aiohttp.ClientSession, start_app: StartApp, body: str) -> None:
    """A 200 that is not a usable reply is an InvalidResponseError."""
    url = await serve(start_app, 200, body, [])
    with pytest.raises(InvalidResponseError):
        await Authorizer(url, "ag")(http)


async def test_unreachable_host(http: aiohttp.ClientSession) -> None:
    """Nothing listening: a connection error naming the URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/authorize"
    with pytest.raises(LayercodeConnectionError, match="Cannot reach"):
        await Authorizer(url, "ag")(http)


async def test_timeout(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """A server that never answers is cut off at the bound."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/authorize", slow)
    url = await start_app(app) + "/authorize"
    with pytest.raises(LayercodeTimeoutError, match="timed out"):
        await Authorizer(url, "ag", timeout=0.2)(http)
    release.set()
