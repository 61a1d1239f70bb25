"""LiveLayer's session endpoint against throwaway HTTP servers: every answer and every failure."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import json
import socket
from typing import Any

import aiohttp
from aiohttp import web
import pytest

from custom_components.layercode.client import LayercodeConnectionError
from custom_components.layercode.client.livelayer import (
    AUTH_ERROR_CODES,
    DEFAULT_SESSION_ENDPOINT,
    AgentConfig,
    ErrorCode,
    LiveLayerConnectionError,
    LiveLayerError,
    LiveLayerOptions,
    SessionGrant,
    request_session,
)

from ..conftest import StartApp

GRANT = {
    "token": "lk-token-1",
    "url": "wss://rooms.example.test",
    "roomName": "room-abc",
    "agentConfig": {
        "name": "Kitchen agent",
        "avatarImageUrl": "https://cdn.example.test/avatar.png",
        "idleLoopUrl": "https://cdn.example.test/idle.mp4",
    },
}


@dataclass
class Endpoint:
    """A session endpoint that records each request and answers `body` with `status`."""

    status: int = 200
    body: str = json.dumps(GRANT)
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), await request.json()))
        return web.Response(status=self.status, text=self.body, content_type="application/json")


async def serve(start_app: StartApp, endpoint: Endpoint, *paths: str) -> str:
    """Serve `endpoint` at each path (default: LiveLayer's); returns the server's base URL."""
    app = web.Application()
    for path in paths or (DEFAULT_SESSION_ENDPOINT,):
        app.router.add_post(path, endpoint.handle)
    return await start_app(app)


async def test_grant_and_request(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """The default endpoint under base_url gets the agent id; the grant is read in full."""
    endpoint = Endpoint()
    base_url = await serve(start_app, endpoint)
    options = LiveLayerOptions(agent_id="ag_kitchen", base_url=base_url)

    grant = await request_session(http, options)

    assert grant == SessionGrant(
        token="lk-token-1",
        url="wss://rooms.example.test",
        room_name="room-abc",
        agent_config=AgentConfig(
            name="Kitchen agent",
            avatar_image_url="https://cdn.example.test/avatar.png",
            idle_loop_url="https://cdn.example.test/idle.mp4",
        ),
    )
    ((path, headers, body),) = endpoint.requests
    assert path == "/api/widget/session"
    assert body == {"agentId": "ag_kitchen"}
    assert headers["Content-Type"].startswith("application/json")
    assert "x-api-key" not in {name.lower() for name in headers}
    assert "lk-token-1" not in repr(grant)


async def test_api_key_session_body_and_prior_room(
    http: aiohttp.ClientSession, start_app: StartApp
) -> None:
    """x-api-key carries the key; session_body fields and priorRoomName join the body."""
    endpoint = Endpoint()
    base_url = await serve(start_app, endpoint)
    options = LiveLayerOptions(
        agent_id="ag_kitchen",
        base_url=base_url + "/",
        api_key="ll_secret",
        session_body={"userId": "u-7", "context": {"room": "kitchen"}},
    )

    await request_session(http, options, prior_room_name="room-old")

    ((_, headers, body),) = endpoint.requests
    assert headers["x-api-key"] == "ll_secret"
    assert body == {
        "agentId": "ag_kitchen",
        "priorRoomName": "room-old",
        "userId": "u-7",
        "context": {"room": "kitchen"},
    }
    assert "ll_secret" not in repr(options)
    assert "u-7" not in repr(options)


async def test_base_url_with_a_path_prefix(
    http: aiohttp.ClientSession, start_app: StartApp
) -> None:
    """The endpoint path is appended to a base URL that has a path of its own."""
    endpoint = Endpoint()
    base_url = await serve(start_app, endpoint, "/livelayer/api/widget/session")
    options = LiveLayerOptions(agent_id="ag", base_url=base_url + "/livelayer/")
    grant = await request_session(http, options)
    assert grant.room_name == "room-abc"
    assert [path for path, _, _ in endpoint.requests] == ["/livelayer/api/widget/session"]


@pytest.mark.parametrize("session_endpoint", ["/custom/session", "custom/session"])
async def test_custom_endpoint_path(
    http: aiohttp.ClientSession, start_app: StartApp, session_endpoint: str
) -> None:
    """A custom endpoint path replaces the default one under base_url."""
    endpoint = Endpoint()
    base_url = await serve(start_app, endpoint, "/custom/session")
    options = LiveLayerOptions(agent_id="ag", base_url=base_url, session_endpoint=session_endpoint)
    assert str(options.session_url) == base_url + "/custom/session"
    grant = await request_session(http, options)
    assert grant.token == "lk-token-1"
    assert [path for path, _, _ in endpoint.requests] == ["/custom/session"]


async def test_custom_endpoint_full_url(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """A full URL as endpoint is used as it is, whatever base_url says."""
    unused, endpoint = Endpoint(), Endpoint()
    base_url = await serve(start_app, unused)
    other = await serve(start_app, endpoint, "/mint")
    options = LiveLayerOptions(agent_id="ag", base_url=base_url, session_endpoint=other + "/mint")
    grant = await request_session(http, options)
    assert grant.url == "wss://rooms.example.test"
    assert unused.requests == []
    assert [path for path, _, _ in endpoint.requests] == ["/mint"]


@pytest.mark.parametrize(
    ("agent_config", "expected"),
    [
        (None, AgentConfig()),
        ("Kitchen agent", AgentConfig()),
        ({"name": "Kitchen agent"}, AgentConfig(name="Kitchen agent")),
        ({"name": "", "avatarImageUrl": 5, "idleLoopUrl": None}, AgentConfig()),
    ],
)
async def test_agent_config_is_optional(
    http: aiohttp.ClientSession, start_app: StartApp, agent_config: Any, expected: AgentConfig
) -> None:
    """A missing, malformed or partial agentConfig gives defaults for what is not a string."""
    answer: dict[str, Any] = {"token": "t", "url": "wss://r", "roomName": "room"}
    if agent_config is not None:
        answer["agentConfig"] = agent_config
    base_url = await serve(start_app, Endpoint(body=json.dumps(answer)))
    grant = await request_session(http, LiveLayerOptions(agent_id="ag", base_url=base_url))
    assert grant.agent_config == expected


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, ErrorCode.KEY_WRONG_ORG),
        (401, ErrorCode.KEY_EXPIRED),
        (400, ErrorCode.AGENT_HAS_NO_ORG),
    ],
)
async def test_documented_error_codes(
    http: aiohttp.ClientSession, start_app: StartApp, status: int, code: ErrorCode
) -> None:
    """Each documented errorCode comes back as a LiveLayerError with the server's words."""
    body = json.dumps({"error": f"scripted {code.value} failure", "errorCode": code.value})
    base_url = await serve(start_app, Endpoint(status=status, body=body))
    with pytest.raises(LiveLayerError) as info:
        await request_session(http, LiveLayerOptions(agent_id="ag", base_url=base_url))
    error = info.value
    assert type(error) is LiveLayerError
    assert error.code == code.value
    assert error.status == status
    assert f"scripted {code.value} failure" in str(error)
    assert f"HTTP {status}" in str(error)
    assert (code in AUTH_ERROR_CODES) is (code is not ErrorCode.AGENT_HAS_NO_ORG)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, "<html>No such agent</html>", "<html>No such agent</html>"),
        (400, '{"error": "bad', '{"error": "bad'),
        (400, '["not", "an", "object"]', '["not", "an", "object"]'),
        (403, "", "no details"),
        (400, '{"error": "agent disabled", "errorCode": "agent_disabled"}', "agent disabled"),
    ],
)
async def test_other_client_errors(
    http: aiohttp.ClientSession, start_app: StartApp, status: int, body: str, message: str
) -> None:
    """A 4xx without usable JSON still says what the server said; unknown codes pass through."""
    base_url = await serve(start_app, Endpoint(status=status, body=body))
    with pytest.raises(LiveLayerError) as info:
        await request_session(http, LiveLayerOptions(agent_id="ag", base_url=base_url))
    error = info.value
    assert type(error) is LiveLayerError
    assert error.status == status
    assert error.code == ("agent_disabled" if "errorCode" in body else None)
    assert message in str(error)


async def test_long_error_text_is_cut(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """A long non-JSON error page is cut to its first 200 characters."""
    page = "x" * 150 + "y" * 150
    base_url = await serve(start_app, Endpoint(status=400, body=page))
    with pytest.raises(LiveLayerError) as info:
        await request_session(http, LiveLayerOptions(agent_id="ag", base_url=base_url))
    assert str(info.value).endswith("x" * 150 + "y" * 50)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (500, "Internal Server Error", None),
        (502, "", None),
        (503, '{"error": "maintenance"}', None),
        (429, '{"error": "too many sessions", "errorCode": "rate_limited"}', "rate_limited"),
    ],
)
async def test_outages_and_rate_limits_are_retryable(
    http: aiohttp.ClientSession, start_app: StartApp, status: int, body: str, code: str | None
) -> None:
    """5xx and 429 are LiveLayerConnectionErrors (retry later), with the status and any code."""
    base_url = await serve(start_app, Endpoint(status=status, body=body))
    with pytest.raises(LiveLayerConnectionError) as info:
        await request_session(http, LiveLayerOptions(agent_id="ag", base_url=base_url))
    error = info.value
    assert isinstance(error, LayercodeConnectionError)
    assert error.status == status
    assert error.code == code
    assert f"HTTP {status}" in str(error)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("garbage", "did not answer with a JSON object"),
        ("[1, 2]", "did not answer with a JSON object"),
        ("null", "did not answer with a JSON object"),
        ('{"url": "wss://r", "roomName": "room"}', "lacks token"),
        ('{"token": "t", "roomName": "room"}', "lacks url"),
        ('{"token": "t", "url": "wss://r"}', "lacks roomName"),
        ('{"token": 5, "url": "", "roomName": "room"}', "lacks token, url"),
        ("{}", "lacks token, url, roomName"),
    ],
)
async def test_unusable_grants(
    http: aiohttp.ClientSession, start_app: StartApp, body: str, message: str
) -> None:
    """A 2xx that is no usable grant is a LiveLayerError saying what is wrong with it."""
    base_url = await serve(start_app, Endpoint(body=body))
    with pytest.raises(LiveLayerError, match=message) as info:
        await request_session(http, LiveLayerOptions(agent_id="ag", base_url=base_url))
    assert type(info.value) is LiveLayerError


async def test_unreachable_host(http: aiohttp.ClientSession) -> None:
    """Nothing listening on the port: a retryable connection error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = LiveLayerOptions(agent_id="ag", base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(LiveLayerConnectionError, match="Cannot reach the session endpoint") as info:
        await request_session(http, options)
    assert info.value.code == ErrorCode.CONNECT_FAILED
    assert info.value.status is None


async def test_timeout(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    """A server that never answers is cut off at the options' bound."""
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response(GRANT)

    app = web.Application()
    app.router.add_post(DEFAULT_SESSION_ENDPOINT, stuck)
    base_url = await start_app(app)
    options = LiveLayerOptions(agent_id="ag", base_url=base_url, timeout=0.2)
    try:
        async with asyncio.timeout(10):
            with pytest.raises(LiveLayerConnectionError, match="did not answer in time") as info:
                await request_session(http, options)
    finally:
        release.set()
    assert arrived.is_set()
    assert info.value.code == ErrorCode.CONNECT_FAILED
