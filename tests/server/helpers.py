"""A raw aiohttp client for the local server, and audio to feed it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
import json
from typing import Any

import aiohttp
from aiohttp import web
import numpy as np

from local_agent_server import LocalAgentServer
from local_agent_server.layercode_client import FRAME_BYTES, WIRE_INPUT_RATE, to_pcm

type StartApp = Callable[[web.Application], Awaitable[str]]
"""The `start_app` fixture of tests/conftest.py."""

FRAME_SAMPLES = FRAME_BYTES // 2
FRAME_MS = FRAME_SAMPLES * 1000 // WIRE_INPUT_RATE  # 112


def loud_frames(count: int) -> list[bytes]:
    """Frames of a 300 Hz tone at 30 % of full scale (clearly speech to an energy detector)."""
    n = np.arange(count * FRAME_SAMPLES)
    pcm = to_pcm(0.3 * 32768 * np.sin(2 * np.pi * 300 * n / WIRE_INPUT_RATE))
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def quiet_frames(count: int) -> list[bytes]:
    """Frames of digital silence."""
    return [bytes(FRAME_BYTES)] * count


def heard(frames: int) -> str:
    """What the deterministic STT says for `frames` full frames."""
    return f"heard {frames * FRAME_SAMPLES // 8} ms of audio"


class Client:
    """One WebSocket connection, keeping every message it received."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, authorization: dict[str, Any]):
        self.ws = ws
        self.authorization = authorization
        self.received: list[dict[str, Any]] = []

    @property
    def conversation_id(self) -> str:
        return str(self.authorization["conversation_id"])

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def send_audio(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.send(
                {"type": "client.audio", "content": base64.b64encode(frame).decode("ascii")}
            )

    async def replay_finished(self) -> None:
        await self.send({"type": "trigger.response.audio.replay_finished", "reason": "completed"})

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        message: dict[str, Any] = json.loads(msg.data)
        self.received.append(message)
        return message

    async def until(
        self, kind: str, role: str | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Read until a message of `kind` (and `role`) arrives; earlier ones stay in received."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next()
                if message["type"] == kind and (role is None or message.get("role") == role):
                    return message

    async def quiet_for(self, seconds: float) -> list[dict[str, Any]]:
        """Every message that arrives within `seconds`."""
        messages: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(seconds):
                while True:
                    messages.append(await self.next())
        except TimeoutError:
            pass
        return messages

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == kind]

    async def agent_turn(self, *, replay: bool = True) -> dict[str, Any]:
        """Read one whole agent turn up to its turn.end; returns a summary."""
        start = await self.until("turn.start", "assistant")
        first = len(self.received)
        await self.until("response.end")
        if replay:
            await self.replay_finished()
        end = await self.until("turn.end", "assistant")
        messages = self.received[first - 1 :]
        turn_id = start["turn_id"]
        assert end["turn_id"] == turn_id
        audio = b"".join(
            base64.b64decode(m["content"])
            for m in messages
            if m["type"] == "response.audio" and m["turn_id"] == turn_id
        )
        texts = [m["content"] for m in messages if m["type"] == "response.text"]
        return {"turn_id": turn_id, "texts": texts, "audio": audio, "messages": messages}


async def webhook_event(server: LocalAgentServer, kind: str, count: int = 1) -> dict[str, Any]:
    """The `count`-th webhook of type `kind` the built-in backend got, once it has arrived.

    The server sends `turn.start` before it posts the webhook, so a client cannot tell by
    itself whether the backend has it yet.
    """
    assert server.webhook_backend is not None
    async with asyncio.timeout(5):
        while True:
            events = [e for e in server.webhook_backend.events if e["type"] == kind]
            if len(events) >= count:
                return events[count - 1]
            await asyncio.sleep(0.01)


async def authorize(
    http: aiohttp.ClientSession, server: LocalAgentServer, **body: Any
) -> dict[str, Any]:
    async with http.post(
        server.authorize_url, json={"agent_id": server.agent_id, **body}
    ) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


type Connect = Callable[..., Awaitable[Client]]
"""The `connect` fixture: `await connect(server, **authorize_body)`."""


async def open_client(http: aiohttp.ClientSession, server: LocalAgentServer, **body: Any) -> Client:
    """Authorize, open the socket and send client.ready, like the browser SDK."""
    authorization = await authorize(http, server, **body)
    ws = await http.ws_connect(
        server.websocket_url, params={"client_session_key": authorization["client_session_key"]}
    )
    client = Client(ws, authorization)
    await client.send({"type": "client.ready"})
    return client
