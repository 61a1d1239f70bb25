"""The built-in agent backend, driven by hand-signed webhook requests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
import time
from typing import Any

import aiohttp
from aiohttp import web

from local_agent_server import (
    SIGNATURE_HEADER,
    EchoResponder,
    Reply,
    SendData,
    Speak,
    WebhookBackend,
    encode_body,
    sign,
)
from local_agent_server.sse import iter_sse_json

from .helpers import StartApp

SECRET = "whsec_backend"


class FailingResponder(EchoResponder):
    """Says one thing, then fails."""

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        yield Speak("Let me think")
        raise RuntimeError("model unavailable")


class DataResponder(EchoResponder):
    """Sends data, then speaks."""

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        yield SendData({"step": 1})
        yield Speak("done")


async def _backend_url(start_app: StartApp, backend: WebhookBackend) -> str:
    app = web.Application()
    app.router.add_post("/webhook", backend.handle)
    return await start_app(app) + "/webhook"


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    event: dict[str, Any],
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> tuple[int, Any]:
    body = encode_body(event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, int(time.time()) if timestamp is None else timestamp),
    }
    async with http.post(url, data=body, headers=headers) as response:
        if response.content_type == "text/event-stream":
            return response.status, [e async for e in iter_sse_json(response.content.iter_any())]
        return response.status, await response.json()


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "session_id": "sess_1", "conversation_id": "conv_1", **fields}


async def test_echo_replies(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    backend = WebhookBackend(SECRET)
    url = await _backend_url(start_app, backend)

    assert await _post(http, url, _event("session.start", turn_id="t1")) == (
        200,
        [{"type": "response.end", "turn_id": "t1"}],
    )
    assert await _post(http, url, _event("message", turn_id="t2", text="Héllo")) == (
        200,
        [
            {"type": "response.tts", "content": "You said: Héllo", "turn_id": "t2"},
            {"type": "response.end", "turn_id": "t2"},
        ],
    )
    assert await _post(http, url, _event("data", turn_id="t2", data={"x": [1]})) == (
        200,
        {"received": {"x": [1]}},
    )
    assert (await _post(http, url, _event("session.end", transcript=[], duration=5)))[0] == 200
    assert (await _post(http, url, _event("session.update")))[0] == 200
    assert [e["type"] for e in backend.events] == [
        "session.start",
        "message",
        "data",
        "session.end",
        "session.update",
    ]


async def test_welcome_and_custom_answers(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    responder = EchoResponder(
        welcome="Hi there", answer=str.upper, data_answer=lambda data: {"echo": data}
    )
    url = await _backend_url(start_app, WebhookBackend(SECRET, responder))
    _, events = await _post(http, url, _event("session.start", turn_id="t1"))
    assert events[0] == {"type": "response.tts", "content": "Hi there", "turn_id": "t1"}
    _, events = await _post(http, url, _event("message", turn_id="t2", text="loud"))
    assert events[0]["content"] == "LOUD"
    assert await _post(http, url, _event("data", turn_id="t2", data=3)) == (200, {"echo": 3})


async def test_signature_checks(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    backend = WebhookBackend(SECRET)
    url = await _backend_url(start_app, backend)
    message = _event("message", turn_id="t1", text="hi")
    status, body = await _post(http, url, message, secret="whsec_wrong")
    assert (status, body) == (401, {"error": "invalid signature"})
    assert (await _post(http, url, message, timestamp=int(time.time()) - 301))[0] == 401
    async with http.post(url, json=message) as response:
        assert response.status == 401
    body_bytes = encode_body(message)
    tampered = body_bytes.replace(b"hi", b"ho")
    headers = {SIGNATURE_HEADER: sign(SECRET, body_bytes, int(time.time()))}
    async with http.post(url, data=tampered, headers=headers) as response:
        assert response.status == 401
    assert backend.events == []


async def test_rejects_malformed_events(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    url = await _backend_url(start_app, WebhookBackend(SECRET))
    assert (await _post(http, url, _event("mystery", turn_id="t")))[0] == 400
    assert (await _post(http, url, _event("message", text="no turn id")))[0] == 400
    assert (await _post(http, url, _event("session.start")))[0] == 400
    assert (await _post(http, url, _event("data")))[0] == 400
    assert (await _post(http, url, _event("message", turn_id="t")))[0] == 400


async def test_failing_responder_sends_response_error(
    http: aiohttp.ClientSession, start_app: StartApp
) -> None:
    url = await _backend_url(start_app, WebhookBackend(SECRET, FailingResponder()))
    status, events = await _post(http, url, _event("message", turn_id="t1", text="hi"))
    assert status == 200
    assert events == [
        {"type": "response.tts", "content": "Let me think", "turn_id": "t1"},
        {"type": "response.error", "error": "model unavailable"},
    ]


async def test_responder_sending_data(http: aiohttp.ClientSession, start_app: StartApp) -> None:
    url = await _backend_url(start_app, WebhookBackend(SECRET, DataResponder()))
    _, events = await _post(http, url, _event("message", turn_id="t1", text="hi"))
    assert events == [
        {"type": "response.data", "content": {"step": 1}, "turn_id": "t1"},
        {"type": "response.tts", "content": "done", "turn_id": "t1"},
        {"type": "response.end", "turn_id": "t1"},
    ]
