"""A built-in agent backend: a real webhook receiver that answers like a Layercode backend.

It verifies `layercode-signature` (401 otherwise) and replies the way the official Node
server SDK does: `session.start` and `message` get an SSE stream of `response.tts` /
`response.data` events closed by `response.end`, each with the request's `turn_id`; a
responder that raises gets `response.error {error}` and the stream closes without
`response.end`. `data` gets a plain JSON reply; `session.end` and `session.update` a 200.

What to say is up to a `Responder`; `EchoResponder` is the default.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
import json
import logging
from typing import Any, Protocol

from aiohttp import web

from .signing import SIGNATURE_HEADER, TOLERANCE_SECONDS, verify

_LOGGER = logging.getLogger(__name__)

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


@dataclass(frozen=True, slots=True)
class Speak:
    """Say `text` (a `response.tts` event)."""

    text: str


@dataclass(frozen=True, slots=True)
class SendData:
    """Send `content` to the client (a `response.data` event)."""

    content: Any


type Reply = Speak | SendData


class Responder(Protocol):
    """Decides what the agent answers."""

    def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        """The replies to a `session.start` or `message` event; raising makes `response.error`."""
        ...

    async def data(self, event: Mapping[str, Any]) -> Any:
        """The JSON reply to a `data` event."""
        ...


def _you_said(text: str) -> str:
    return f"You said: {text}"


def _received(data: Any) -> Any:
    return {"received": data}


class EchoResponder:
    """Repeats what the user said; optionally greets first and answers slowly."""

    def __init__(
        self,
        *,
        welcome: str | None = None,
        answer: Callable[[str], str] = _you_said,
        data_answer: Callable[[Any], Any] = _received,
        delay: float = 0.0,
    ) -> None:
        """`delay` holds back each answer to a `message` (a slow agent, e.g. to interrupt)."""
        self._welcome = welcome
        self._answer = answer
        self._data_answer = data_answer
        self._delay = delay

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        """The welcome for `session.start` (if any), the answer for `message`."""
        if event.get("type") == "session.start":
            if self._welcome:
                yield Speak(self._welcome)
            return
        if self._delay:
            await asyncio.sleep(self._delay)
        yield Speak(self._answer(str(event.get("text", ""))))

    async def data(self, event: Mapping[str, Any]) -> Any:
        """`{"received": <data>}` by default."""
        return self._data_answer(event.get("data"))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _sse(event: Mapping[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


class WebhookBackend:
    """The webhook receiver; mount `handle` on a POST route.

    `events` keeps every verified event in arrival order, so tests can check what a
    Layercode-compatible server sent.
    """

    def __init__(
        self,
        secret: str,
        responder: Responder | None = None,
        *,
        tolerance: float = TOLERANCE_SECONDS,
    ) -> None:
        self._secret = secret
        self._responder: Responder = responder or EchoResponder()
        self._tolerance = tolerance
        self.events: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One webhook request."""
        body = await request.read()
        header = request.headers.get(SIGNATURE_HEADER)
        if not verify(self._secret, body, header, tolerance=self._tolerance):
            _LOGGER.warning("Rejecting a webhook with a bad or missing signature")
            return _error(401, "invalid signature")
        try:
            event = json.loads(body)
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(event, dict):
            return _error(400, "body is not a JSON object")
        self.events.append(event)
        kind = event.get("type")
        if kind in ("session.end", "session.update"):
            return web.json_response({"ok": True})
        if kind not in ("session.start", "message", "data"):
            return _error(400, f"unknown event type {kind!r}")
        if not isinstance(event.get("turn_id"), str):
            return _error(400, f"{kind} without a turn_id")
        if kind == "data":
            return web.json_response(await self._responder.data(event))
        if kind == "message" and not isinstance(event.get("text"), str):
            return _error(400, "message without a text")
        return await self._stream(request, event)

    async def _stream(self, request: web.Request, event: dict[str, Any]) -> web.StreamResponse:
        turn_id = event["turn_id"]
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        try:
            async with aclosing(self._responder.reply(event)) as replies:
                async for reply in replies:
                    if isinstance(reply, Speak):
                        out = {"type": "response.tts", "content": reply.text, "turn_id": turn_id}
                    else:
                        out = {
                            "type": "response.data",
                            "content": reply.content,
                            "turn_id": turn_id,
                        }
                    await response.write(_sse(out))
        except ConnectionResetError:
            _LOGGER.debug("The server closed the %s webhook of turn %s", event["type"], turn_id)
            return response
        except Exception as err:  # any failure is reported, as the Node SDK does
            _LOGGER.warning("Responder failed on %s of turn %s: %r", event["type"], turn_id, err)
            await response.write(_sse({"type": "response.error", "error": str(err)}))
        else:
            await response.write(_sse({"type": "response.end", "turn_id": turn_id}))
        with suppress(ConnectionResetError):  # the server aborted it meanwhile
            await response.write_eof()
        return response
