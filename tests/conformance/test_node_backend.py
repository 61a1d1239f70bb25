"""The official backend SDK, `@layercode/node-server-sdk`, behind the local server.

webhook_backend.mjs is an agent backend written with the SDK's `verifySignature` and
`streamResponse`. The local server drives it as Layercode drives a backend (signed webhooks,
SSE replies), while the project's Python client holds the conversation on the other side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
import json
import os
import shutil
import time
from typing import Any

import aiohttp
import numpy as np
import pytest

from custom_components.layercode.client import (
    AgentTurn,
    AgentTurnStarted,
    Authorizer,
    LayercodeSession,
    SessionEvent,
    SessionStatus,
)
from custom_components.layercode.client.messages import (
    ResponseAudio,
    ResponseData,
    ResponseEnd,
    ResponseText,
    TurnEnd,
    TurnStart,
)
from local_agent_server import LocalAgentServer, encode_body, sign
from local_agent_server.layercode_client import TurnTrigger

from ..conftest import until
from .harness import HERE

SECRET = "whsec_conformance_node"
WELCOME = "Hello from the Node server SDK."
TIMEOUT = 10.0


@dataclass
class NodeBackend:
    """The running webhook_backend.mjs."""

    url: str

    async def received(self, http: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Every request it got: {type, verified, reparsedVerified, status, body}."""
        async with http.get(self.url + "/received") as response:
            result: list[dict[str, Any]] = await response.json()
            return result

    async def post(
        self, http: aiohttp.ClientSession, body: bytes, signature: str | None
    ) -> tuple[int, str]:
        """A webhook straight from the test: its status and body."""
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["layercode-signature"] = signature
        async with http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()


@pytest.fixture
async def node_backend(node_sdk: None) -> AsyncIterator[NodeBackend]:
    """webhook_backend.mjs on a free 127.0.0.1 port, stopped after the test."""
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "webhook_backend.mjs"),
        cwd=HERE,
        env={**os.environ, "LAYERCODE_WEBHOOK_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            line = await process.stdout.readline()
        port = json.loads(line)["port"]
        yield NodeBackend(f"http://127.0.0.1:{port}")
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(5):
                _, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            _, stderr = await process.communicate()
    assert not stderr.strip(), stderr.decode(errors="replace")


@pytest.fixture
async def node_server(node_backend: NodeBackend) -> AsyncIterator[LocalAgentServer]:
    """A local server whose agent backend is the Node one."""
    server = LocalAgentServer(
        agent_id="ag_node",
        trigger=TurnTrigger.PUSH_TO_TALK,
        webhook_url=node_backend.url,
        webhook_secret=SECRET,
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session(
    http: aiohttp.ClientSession, node_server: LocalAgentServer
) -> AsyncIterator[tuple[LayercodeSession, list[SessionEvent]]]:
    """The Python client, not yet connected, recording its events."""
    client = LayercodeSession(
        http,
        Authorizer(node_server.authorize_url, node_server.agent_id),
        websocket_url=node_server.websocket_url,
    )
    events: list[SessionEvent] = []
    client.add_listener(events.append)
    yield client, events
    await client.disconnect()


def tone(seconds: float) -> bytes:
    """16 kHz audio for a push-to-talk turn (the local speech-to-text only counts it)."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()


async def agent_turn(session: LayercodeSession, action: Callable[[], Any]) -> AgentTurn:
    """Run `action`; return the agent turn that answers it, read to its end."""
    started = session.expect(lambda e: isinstance(e, AgentTurnStarted))
    ended = session.expect(lambda e: isinstance(e, TurnEnd) and e.role == "assistant")
    await action()
    event = await started.wait(TIMEOUT)
    assert isinstance(event, AgentTurnStarted)
    async with asyncio.timeout(TIMEOUT):
        async for _ in event.turn.audio_stream():
            pass
    await ended.wait(TIMEOUT)
    return event.turn


async def test_node_backend_drives_a_conversation(
    http: aiohttp.ClientSession,
    node_backend: NodeBackend,
    node_server: LocalAgentServer,
    session: tuple[LayercodeSession, list[SessionEvent]],
) -> None:
    """Welcome, a spoken turn, non-ASCII text, data: every webhook verifies, every reply plays."""
    client, _ = session
    welcome = await agent_turn(client, client.connect)
    assert welcome.text == WELCOME
    assert welcome.audio_bytes_received > 0

    async def speak() -> None:
        await client.begin_user_speech()
        for i in range(0, 32000, 320):
            await client.send_audio(tone(1.0)[i : i + 320])
        await client.end_user_speech()

    spoken = await agent_turn(client, speak)
    assert spoken.text == "Node heard: heard 1000 ms of audio"
    assert spoken.data == [{"echo": "heard 1000 ms of audio"}]

    text = "Héllo, ça va? 👋 «quotes» \u2028 and \\ back"
    typed = await agent_turn(client, lambda: client.send_text(text))
    assert typed.text == f"Node heard: {text}"
    assert typed.data == [{"echo": text}]

    reply = client.expect(lambda e: isinstance(e, ResponseData))
    await client.send_data({"kind": "ping", "note": "ça va"})
    data = await reply.wait(TIMEOUT)
    assert isinstance(data, ResponseData)
    assert data.content == {"node_received": {"kind": "ping", "note": "ça va"}}

    await client.disconnect()
    await until(lambda: node_server.recordings[-1].closed_at is not None)
    received = await node_backend.received(http)
    for _ in range(50):
        if received[-1]["type"] == "session.end":
            break
        await asyncio.sleep(0.05)
        received = await node_backend.received(http)

    # Everything the server signed verifies: on the raw body, and re-serialised as the
    # SDK's examples do it (compact JSON, non-ASCII unescaped, U+2028 included).
    assert [(r["type"], r["verified"], r["reparsedVerified"], r["status"]) for r in received] == [
        ("session.start", True, True, 200),
        ("message", True, True, 200),
        ("message", True, True, 200),
        ("data", True, True, 200),
        ("session.end", True, True, 200),
    ]
    bodies = {r["type"]: r["body"] for r in received}
    for kind in ("session.start", "message", "data"):
        assert isinstance(bodies[kind]["turn_id"], str)
    assert "turn_id" not in bodies["session.end"]
    assert isinstance(bodies["session.end"]["duration"], int)
    assert [set(item) for item in bodies["session.end"]["transcript"]] == [
        {"role", "text", "timestamp"}
    ] * 5
    assert received[2]["body"]["text"] == text


async def test_a_failing_handler_still_ends_the_turn(
    http: aiohttp.ClientSession,
    node_backend: NodeBackend,
    session: tuple[LayercodeSession, list[SessionEvent]],
) -> None:
    """streamResponse's response.error: the client still gets response.end and turn.end."""
    client, events = session
    await agent_turn(client, client.connect)
    start = len(events)
    failed = await agent_turn(client, lambda: client.send_text("please fail now"))
    assert (failed.text, failed.data, failed.audio_bytes_received) == ("", [], 0)
    kinds = [
        type(e).__name__ + (f":{e.role}" if isinstance(e, (TurnStart, TurnEnd)) else "")
        for e in events[start:]
        if isinstance(e, (TurnStart, TurnEnd, ResponseText, ResponseAudio, ResponseEnd))
    ]
    assert kinds == [
        "TurnStart:user",
        "TurnEnd:user",
        "TurnStart:assistant",
        "ResponseEnd",
        "TurnEnd:assistant",
    ]
    (error,) = [r for r in await node_backend.received(http) if r["type"] == "message"]
    assert error["verified"]
    # The conversation goes on.
    again = await agent_turn(client, lambda: client.send_text("still there?"))
    assert again.text == "Node heard: still there?"
    assert client.status is SessionStatus.CONNECTED


async def test_the_sdks_verifier_rejects_what_it_should(
    http: aiohttp.ClientSession, node_backend: NodeBackend
) -> None:
    """Posted straight to the backend: a good signature passes; tampering, a wrong secret or
    an old timestamp do not."""
    event = {
        "type": "message",
        "session_id": "sess_direct",
        "conversation_id": "conv_direct",
        "turn_id": "turn_direct",
        "text": "Héllo 👋",
    }
    body = encode_body(event)
    now = int(time.time())

    status, reply = await node_backend.post(http, body, sign(SECRET, body, now))
    assert status == 200
    assert [json.loads(line[6:]) for line in reply.splitlines() if line.startswith("data: ")] == [
        {"type": "response.tts", "content": "Node heard: Héllo 👋", "turn_id": "turn_direct"},
        {"type": "response.data", "content": {"echo": "Héllo 👋"}, "turn_id": "turn_direct"},
        {"type": "response.end", "turn_id": "turn_direct"},
    ]
    assert (await node_backend.post(http, body, sign(SECRET, body, now - 290)))[0] == 200

    tampered = body.replace("Héllo".encode(), b"Hello")
    assert (await node_backend.post(http, tampered, sign(SECRET, body, now)))[0] == 401
    assert (await node_backend.post(http, body, sign("whsec_wrong", body, now)))[0] == 401
    assert (await node_backend.post(http, body, sign(SECRET, body, now - 301)))[0] == 401
    assert (await node_backend.post(http, body, sign(SECRET, body, now + 400)))[0] == 401
    assert (await node_backend.post(http, body, None))[0] == 401
    received = await node_backend.received(http)
    assert [r["verified"] for r in received] == [True, True, False, False, False, False, False]
