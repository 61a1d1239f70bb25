"""Agent turns: welcome, playback handshake, barge-in, and failing backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from local_agent_server import EchoResponder, Reply, SendData, Speak, ToneTextToSpeech
from local_agent_server.layercode_client import TurnTrigger

from ..conftest import StartServer
from .helpers import Connect, StartApp, heard, loud_frames, webhook_event

TEXT = {"type": "client.response.text", "content": "hello"}
PTT_START = {"type": "trigger.turn.start", "role": "user"}
PTT_END = {"type": "trigger.turn.end", "role": "user"}


class SlowResponder(EchoResponder):
    """Answers after `delay` and notes when the server aborts the request."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay=delay)
        self.aborted = asyncio.Event()

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        try:
            async for reply in super().reply(event):
                yield reply
        except asyncio.CancelledError:
            self.aborted.set()
            raise


class DataOnlyResponder(EchoResponder):
    """Answers with data and no speech."""

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        if event["type"] == "message":
            yield SendData({"weather": "sunny"})


class FailingResponder(EchoResponder):
    """Speaks, then fails (the backend sends response.error and closes)."""

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        if event["type"] == "message":
            yield Speak("Oops")
            raise RuntimeError("boom")


async def test_welcome(start_server: StartServer, connect: Connect) -> None:
    server = await start_server(backend=EchoResponder(welcome="Hi"))
    client = await connect(server)
    turn = await client.agent_turn()
    assert turn["texts"] == ["Hi"]
    assert len(turn["audio"]) == 3200
    assert server.webhook_backend is not None
    start = server.webhook_backend.events[0]
    assert start["type"] == "session.start"
    assert start["turn_id"] == turn["turn_id"]
    record = server.conversations[client.conversation_id].turns[0]
    assert (record.user_text, record.agent_text, record.replay_finished) == (None, "Hi", True)


async def test_no_welcome_sends_nothing(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    assert await client.quiet_for(0.2) == []
    assert server.conversations[client.conversation_id].turns == []


async def test_turn_end_waits_for_replay_finished(
    start_server: StartServer, connect: Connect
) -> None:
    tts = ToneTextToSpeech(frequencies=(440.0, 660.0))
    server = await start_server(tts=tts)
    client = await connect(server)
    await client.send(TEXT)
    await client.until("response.end")
    assert await client.quiet_for(0.3) == []  # no turn.end before the audio played
    await client.replay_finished()
    await client.replay_finished()  # extras are tolerated
    end = await client.until("turn.end", "assistant")
    record = server.conversations[client.conversation_id].turns[-1]
    assert record.agent_turn_id == end["turn_id"]
    assert record.replay_finished

    await client.send(TEXT)
    second = await client.agent_turn()
    first_audio = next(m for m in client.received if m["type"] == "response.audio")
    assert second["audio"] != b""
    assert first_audio["turn_id"] != second["turn_id"]  # same text, another tone
    assert len(second["audio"]) == record.audio_bytes


async def test_replay_timeout_still_ends_the_turn(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(replay_timeout=0.2)
    client = await connect(server)
    await client.send(TEXT)
    await client.agent_turn(replay=False)
    record = server.conversations[client.conversation_id].turns[-1]
    assert not record.replay_finished
    assert record.audio_bytes > 0


async def test_turn_without_audio_needs_no_replay(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(backend=DataOnlyResponder())
    client = await connect(server)
    await client.send(TEXT)
    turn = await client.agent_turn(replay=False)
    data = [m for m in turn["messages"] if m["type"] == "response.data"]
    assert data == [
        {"type": "response.data", "content": {"weather": "sunny"}, "turn_id": turn["turn_id"]}
    ]
    assert turn["audio"] == b""


async def test_interruption_aborts_the_webhook(start_server: StartServer, connect: Connect) -> None:
    responder = SlowResponder(delay=10.0)
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK, backend=responder)
    client = await connect(server)
    await client.send(TEXT)
    agent = await client.until("turn.start", "assistant")
    await webhook_event(server, "message")  # the webhook is under way
    await client.send(PTT_START)
    user = await client.until("turn.start", "user")
    async with asyncio.timeout(2):
        await responder.aborted.wait()
    assert not [m for m in client.received if m["type"] in ("response.end", "turn.end")][1:]

    await client.send_audio(loud_frames(2))
    await client.send(PTT_END)
    await client.until("turn.end", "user")
    message = await webhook_event(server, "message", 2)
    assert message["text"] == heard(2)
    assert message["interruption_context"] == {
        "previous_turn_interrupted": True,
        "words_heard": 0,
        "text_heard": "",
        "assistant_turn_id": agent["turn_id"],
    }
    assert user["turn_id"] not in (agent["turn_id"], message["turn_id"])
    interrupted = server.conversations[client.conversation_id].turns[0]
    assert interrupted.interrupted
    assert interrupted.agent_turn_id == agent["turn_id"]


async def test_interruption_stops_audio(start_server: StartServer, connect: Connect) -> None:
    long_answer = "one two three four five six seven eight nine ten " * 2  # 5 s of audio
    server = await start_server(
        pace_audio=True, backend=EchoResponder(answer=lambda _: long_answer)
    )
    client = await connect(server)
    await client.send(TEXT)
    agent = await client.until("turn.start", "assistant")
    await client.until("response.audio")
    await asyncio.sleep(0.45)
    await client.send({"type": "vad_events", "event": "vad_start"})
    await client.until("turn.start", "user")
    late = await client.quiet_for(0.4)
    assert not [m for m in late if m.get("turn_id") == agent["turn_id"]]
    sent = [m for m in client.received if m["type"] == "response.audio"]
    assert 3 <= len(sent) <= 8  # about half a second of paced 100 ms chunks

    await client.send({"type": "vad_events", "event": "vad_end"})
    context = (await webhook_event(server, "message", 2))["interruption_context"]
    assert context["assistant_turn_id"] == agent["turn_id"]
    assert context["previous_turn_interrupted"] is True
    assert 1 <= context["words_heard"] <= 4
    assert long_answer.startswith(context["text_heard"])
    assert context["words_heard"] == len(context["text_heard"].split())
    record = server.conversations[client.conversation_id].turns[0]
    assert record.interrupted
    assert record.audio_bytes == 3200 * len(sent)


async def test_typed_text_interrupts(start_server: StartServer, connect: Connect) -> None:
    server = await start_server(backend=SlowResponder(delay=10.0))
    client = await connect(server)
    await client.send(TEXT)
    agent = await client.until("turn.start", "assistant")
    await webhook_event(server, "message")
    await client.send({"type": "client.response.text", "content": "never mind"})
    user = await client.until("turn.start", "user")
    transcript = await client.until("user.transcript")
    assert transcript == {
        "type": "user.transcript",
        "content": "never mind",
        "turn_id": user["turn_id"],
    }
    message = await webhook_event(server, "message", 2)
    assert message["text"] == "never mind"
    assert message["interruption_context"]["assistant_turn_id"] == agent["turn_id"]


async def test_no_interruption_when_disabled(start_server: StartServer, connect: Connect) -> None:
    server = await start_server(
        trigger=TurnTrigger.PUSH_TO_TALK, can_interrupt=False, backend=SlowResponder(delay=0.3)
    )
    client = await connect(server)
    await client.send(TEXT)
    first = await client.until("turn.start", "assistant")
    await client.send(PTT_START)  # all ignored while the agent has the turn
    await client.send_audio(loud_frames(3))
    await client.send(PTT_END)
    await client.send({"type": "client.response.text", "content": "ignored"})
    await client.until("response.end")
    await client.replay_finished()
    end = await client.until("turn.end", "assistant")
    assert end["turn_id"] == first["turn_id"]
    assert client.of_type("turn.start")[-1] == first
    assert await client.quiet_for(0.2) == []

    await client.send(PTT_START)  # the user's turn again
    await client.send_audio(loud_frames(3))
    await client.send(PTT_END)
    assert (await client.until("user.transcript"))["content"] == heard(3)
    await client.agent_turn()
    turns = server.conversations[client.conversation_id].turns
    assert [turn.user_text for turn in turns] == ["hello", heard(3)]
    assert not any(turn.interrupted for turn in turns)


async def test_response_error_still_ends_the_turn(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(backend=FailingResponder())
    client = await connect(server)
    await client.send(TEXT)
    turn = await client.agent_turn()
    assert turn["texts"] == ["Oops"]
    assert [m["type"] for m in turn["messages"]][-2:] == ["response.end", "turn.end"]


async def test_http_error_still_ends_the_turn(
    start_server: StartServer, connect: Connect, start_app: StartApp
) -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    app = web.Application()
    app.router.add_post("/webhook", fail)
    server = await start_server(webhook_url=await start_app(app) + "/webhook")
    client = await connect(server)
    await client.send(TEXT)
    turn = await client.agent_turn(replay=False)
    assert [m["type"] for m in turn["messages"]] == ["turn.start", "response.end", "turn.end"]


async def test_unreachable_backend_still_ends_the_turn(
    start_server: StartServer, connect: Connect, start_app: StartApp, http: aiohttp.ClientSession
) -> None:
    app = web.Application()
    url = await start_app(web.Application()) + "/nothing-here"  # 404
    del app
    server = await start_server(webhook_url="http://127.0.0.1:9/webhook")  # discard port: closed
    client = await connect(server)
    await client.send(TEXT)
    turn = await client.agent_turn(replay=False)
    assert [m["type"] for m in turn["messages"]] == ["turn.start", "response.end", "turn.end"]

    other = await start_server(webhook_url=url)
    client = await connect(other)
    await client.send(TEXT)
    turn = await client.agent_turn(replay=False)
    assert [m["type"] for m in turn["messages"]] == ["turn.start", "response.end", "turn.end"]
