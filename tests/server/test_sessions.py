"""Connection lifecycle: session webhooks, resume, bad frames, dropping and stopping."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
from aiohttp import web

from local_agent_server import EchoResponder, LocalAgentServer, WebhookBackend

from ..conftest import StartServer
from .helpers import Connect, StartApp, webhook_event

TEXT = {"type": "client.response.text", "content": "hello"}


async def test_session_webhooks(
    start_server: StartServer, connect: Connect, start_app: StartApp
) -> None:
    received_headers: list[str | None] = []
    backend = WebhookBackend("whsec_external", EchoResponder(welcome="Welcome"))

    async def handle(request: web.Request) -> web.StreamResponse:
        received_headers.append(request.headers.get("x-tenant"))
        return await backend.handle(request)

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = await start_server(
        webhook_url=await start_app(app) + "/hook", webhook_secret="whsec_external"
    )
    assert server.webhook_backend is None
    opened = time.time()
    client = await connect(
        server,
        custom_metadata={"tenant": "t1"},
        custom_headers={"x-tenant": "t1"},
    )
    await client.agent_turn()  # the welcome
    await client.send(TEXT)
    await client.agent_turn()
    await client.ws.close()
    async with asyncio.timeout(5):
        while backend.events[-1]["type"] != "session.end":
            await asyncio.sleep(0.01)

    start, message, end = backend.events
    session_id = server.recordings[0].session_id
    for event in backend.events:
        assert event["session_id"] == session_id
        assert event["conversation_id"] == client.conversation_id
        assert event["custom_metadata"] == {"tenant": "t1"}
    assert received_headers == ["t1"] * 3
    assert start["type"] == "session.start"
    assert isinstance(start["turn_id"], str)
    assert message["type"] == "message"
    assert message["text"] == "hello"
    assert "turn_id" not in end
    assert isinstance(end["duration"], int)
    assert 0 < end["duration"] < (time.time() - opened) * 1000 + 100
    assert [(item["role"], item["text"]) for item in end["transcript"]] == [
        ("assistant", "Welcome"),
        ("user", "hello"),
        ("assistant", "You said: hello"),
    ]
    for item in end["transcript"]:
        assert set(item) == {"role", "text", "timestamp"}
        assert abs(item["timestamp"] / 1000 - opened) < 10
    assert end["agent_id"] == "ag_test"
    assert end["tts_duration_seconds"] == (len("Welcome") + len("You said: hello")) * 0.05
    assert end["ip_address"] == "127.0.0.1"


async def test_reconnect_gets_a_new_session_id(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    first = await connect(server)
    await webhook_event(server, "session.start")
    await first.ws.close()
    second = await connect(server, conversation_id=first.conversation_id)
    starts = [await webhook_event(server, "session.start", n) for n in (1, 2)]
    assert starts[0]["session_id"] != starts[1]["session_id"]
    assert {s["conversation_id"] for s in starts} == {first.conversation_id}
    await second.ws.close()
    assert [r.conversation_id for r in server.recordings] == [first.conversation_id] * 2


async def test_bad_frames_are_survived(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    for raw in (
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": 5}',
        '{"type": "speech_send_tracking"}',
        '{"type": "client.audio", "content": "!!not base64!!"}',
        '{"type": "client.audio"}',
        '{"type": "vad_events", "event": "vad_maybe"}',
        '{"type": "client.response.text", "content": 42}',
    ):
        await client.ws.send_str(raw)
    await client.ws.send_bytes(b"\x00\x01")
    assert await client.quiet_for(0.2) == []
    await client.send(TEXT)
    assert (await client.agent_turn())["texts"] == ["You said: hello"]

    frames = server.recordings[0].frames
    assert [f.raw for f in frames[1:5]] == ["not json", "[1, 2]", '{"no": "type"}', '{"type": 5}']
    assert all(f.message is None for f in frames[1:5])
    assert frames[5].message == {"type": "speech_send_tracking"}
    assert frames[10].raw == b"\x00\x01"
    assert frames[10].message is None
    times = [f.at for f in frames]
    assert times == sorted(times)
    assert [m["type"] for m in server.recordings[0].messages][:1] == ["client.ready"]


async def test_recordings_keep_audio_in_order(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    chunks = [bytes([n]) * 4 for n in range(3)]
    for chunk in chunks:
        await client.send({"type": "client.audio", "content": base64.b64encode(chunk).decode()})
    await client.replay_finished()
    await client.ws.close()
    await asyncio.sleep(0.05)
    messages = server.recordings[0].messages
    assert [base64.b64decode(m["content"]) for m in messages[1:4]] == chunks
    assert messages[4] == {"type": "trigger.response.audio.replay_finished", "reason": "completed"}
    assert server.recordings[0].closed_at is not None


async def test_send_raw(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    clients = [await connect(server) for _ in range(2)]
    await asyncio.sleep(0.05)
    await server.send_raw('{"type":"speech_end_tracking"}')
    for client in clients:
        assert await client.next() == {"type": "speech_end_tracking"}


async def test_drop_connections(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    await client.send(TEXT)
    await client.until("response.end")
    await server.drop_connections()
    message = await client.ws.receive(timeout=2)
    assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    await webhook_event(server, "session.end")
    resumed = await connect(server, conversation_id=client.conversation_id)
    await resumed.send(TEXT)
    await resumed.agent_turn()
    assert len(server.conversations[client.conversation_id].turns) == 2


async def test_stop_leaves_nothing_running(connect: Connect) -> None:
    server = LocalAgentServer(agent_id="ag_test", backend=EchoResponder(delay=30.0))
    # Not the start_server fixture: this test stops the server itself.
    await server.start()
    client = await connect(server)
    await client.send(TEXT)
    await client.until("turn.start", "assistant")
    await webhook_event(server, "message")  # a slow webhook is in flight
    async with asyncio.timeout(5):
        await server.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    message = await client.ws.receive(timeout=2)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert server.webhook_backend is not None
    assert server.webhook_backend.events[-1]["type"] == "session.end"
    await server.stop()  # twice is harmless


def test_never_imports_home_assistant() -> None:
    root = Path(__file__).parents[2]
    code = (
        "import sys, local_agent_server, local_agent_server.__main__\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'homeassistant'\n"
        "       or m == 'custom_components.layercode']\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


def test_command_line_runs_until_ctrl_c() -> None:
    root = Path(__file__).parents[2]
    args = ["--port", "0", "--agent-id", "ag_cli", "--trigger", "push_to_talk", "--api-key", "K"]
    process = subprocess.Popen(
        [sys.executable, "-m", "local_agent_server", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        assert url.endswith("/v1/agents/web/authorize_session")
        request = urllib.request.Request(
            url,
            data=json.dumps({"agent_id": "ag_cli"}).encode(),
            headers={"Authorization": "Bearer K", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            config = json.load(response)["config"]
        assert config["transcription"]["trigger"] == "push_to_talk"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
