"""Relay mode: the client library speaks Layercode to the local server, a LiveLayer agent answers.

Everything runs on 127.0.0.1 over real HTTP and WebSockets: the client library
(`LayercodeSession`), the local server in relay mode, and LiveLayer's session endpoint. The
LiveKit room is the fake one in tests/fake_room.py (no LiveKit server can run here), with a
scripted agent in it that answers whatever it hears.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import json
import logging
from pathlib import Path
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from custom_components.layercode.client import (
    AgentTurn,
    LayercodeConnectionError,
    SessionEvent,
    SessionStatus,
    TurnTrigger,
)
from custom_components.layercode.client.audio import rms_level
from custom_components.layercode.client.messages import (
    ResponseAudio,
    ResponseData,
    ResponseEnd,
    ResponseText,
    TurnEnd,
    TurnStart,
    UserTranscript,
)
from local_agent_server import LiveLayerOptions, LiveLayerRelay, LocalAgentServer
from local_agent_server.__main__ import _parse_args, _relay
from local_agent_server.layercode_client import default_room_factory

from ..client.test_session import next_agent_turn, play, speak
from ..conftest import MakeSession, StartApp, until
from ..fake_room import AGENT_IDENTITY, FakeRoom, RoomScript, ScriptedAgent
from ..session_endpoint import SessionEndpoint, serve_session_endpoint
from ..signals import dominant_frequency, tone
from .helpers import Connect

AGENT_ID = "ag_relay"
LIVELAYER_AGENT_ID = "ll_kitchen"
API_KEY = "ll_key_do_not_log_3141"
HEARD = "turn on the kitchen light"
REPLY = "The kitchen light is on."
REPLY_SECONDS = 0.4
TIMEOUT = 10.0
RATE = 16_000


@pytest.fixture
async def endpoint(start_app: StartApp) -> SessionEndpoint:
    return await serve_session_endpoint(start_app)


@pytest.fixture
def rooms() -> RoomScript:
    return RoomScript()


type StartRelay = Callable[..., Awaitable[LocalAgentServer]]


@pytest.fixture
async def start_relay(endpoint: SessionEndpoint, rooms: RoomScript) -> AsyncIterator[StartRelay]:
    """Local servers relaying to a scripted agent in a fake room; stopped after the test, when
    every room they opened must have been left."""
    servers: list[LocalAgentServer] = []

    def factory(handler: Any) -> FakeRoom:
        room = rooms.factory(handler)
        ScriptedAgent(room, heard=HEARD, reply=REPLY, reply_seconds=REPLY_SECONDS)
        return room

    async def start(
        *, trigger: TurnTrigger = TurnTrigger.AUTOMATIC, **relay: Any
    ) -> LocalAgentServer:
        options = LiveLayerOptions(LIVELAYER_AGENT_ID, endpoint.url, api_key=API_KEY)
        server = LocalAgentServer(
            agent_id=AGENT_ID,
            trigger=trigger,
            replay_timeout=5.0,
            relay=LiveLayerRelay(options, room_factory=factory, **relay),
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    assert all(room.left for room in rooms.rooms)
    async with asyncio.timeout(TIMEOUT):  # the agents finish what they were saying
        await asyncio.gather(*(room.agent.wait() for room in rooms.rooms if room.agent))


def voiced(frames: list[tuple[float, bytes]]) -> bytes:
    """The published microphone frames that are not silence."""
    return b"".join(pcm for _, pcm in frames if rms_level(pcm) > 0.01)


def assistant_turn_end(turn: AgentTurn) -> Callable[[SessionEvent], bool]:
    return lambda e: isinstance(e, TurnEnd) and e.role == "assistant" and e.turn_id == turn.turn_id


def wire(events: list[SessionEvent]) -> list[str]:
    """The server messages the client got, as `type[:role]`, runs of one type collapsed."""
    names: list[str] = []
    for event in events:
        match event:
            case TurnStart(role=role) | TurnEnd(role=role):
                name = f"{'turn.start' if isinstance(event, TurnStart) else 'turn.end'}:{role}"
            case UserTranscript():
                name = "user.transcript"
            case ResponseText():
                name = "response.text"
            case ResponseAudio():
                name = "response.audio"
            case ResponseData():
                name = "response.data"
            case ResponseEnd():
                name = "response.end"
            case _:
                continue
        if not names or names[-1] != name:
            names.append(name)
    return names


@pytest.mark.parametrize("trigger", list(TurnTrigger))
async def test_voice_turn(
    start_relay: StartRelay,
    make_session: MakeSession,
    rooms: RoomScript,
    trigger: TurnTrigger,
) -> None:
    """The user's speech reaches the room at 16 kHz; the agent's words and voice come back."""
    server = await start_relay(trigger=trigger)
    session, events = await make_session(server)
    room = rooms.rooms[0]

    turn = await next_agent_turn(session, speak(session, tone(0.6, frequency=500.0)))
    turn_end = session.expect(assistant_turn_end(turn))
    audio = await play(turn)
    await turn_end.wait(TIMEOUT)

    assert room.microphone is not None
    heard = voiced(room.microphone.frames)
    assert dominant_frequency(heard) == pytest.approx(500.0, abs=5)
    assert len(heard) / (2 * RATE) == pytest.approx(0.6, abs=0.03)
    transcripts = [e for e in events if isinstance(e, UserTranscript)]
    assert [t.content for t in transcripts] == [HEARD]
    assert turn.text == REPLY
    assert len(audio) == round(REPLY_SECONDS * RATE) * 2
    assert dominant_frequency(audio) == pytest.approx(440.0, abs=5)
    assert wire(events) == [
        "turn.start:user",
        "user.transcript",
        "turn.end:user",
        "turn.start:assistant",
        *wire([e for e in events if isinstance(e, ResponseText | ResponseAudio)]),
        "response.end",
        "turn.end:assistant",
    ]
    assert {"response.text", "response.audio"} <= set(wire(events))
    assert session.conversation_id is not None
    [record] = server.conversations[session.conversation_id].turns
    assert (record.user_text, record.agent_text) == (HEARD, REPLY)
    assert record.replay_finished
    sent = [m["type"] for m in server.recordings[0].messages]
    expected = "trigger.turn.start" if trigger is TurnTrigger.PUSH_TO_TALK else "vad_events"
    assert expected in sent


async def test_typed_text_is_chat_in_the_room(
    start_relay: StartRelay, make_session: MakeSession, rooms: RoomScript
) -> None:
    """Typed text closes a user turn at once and reaches the agent as chat; it answers."""
    server = await start_relay()
    session, events = await make_session(server)

    turn = await next_agent_turn(session, session.send_text("is the kitchen light on?"))
    turn_end = session.expect(assistant_turn_end(turn))
    await play(turn)
    await turn_end.wait(TIMEOUT)

    assert rooms.rooms[0].chat == ["is the kitchen light on?"]
    transcripts = [e.content for e in events if isinstance(e, UserTranscript)]
    assert transcripts == ["is the kitchen light on?"]
    assert turn.text == REPLY
    assert wire(events)[:4] == [
        "turn.start:user",
        "user.transcript",
        "turn.end:user",
        "turn.start:assistant",
    ]


async def test_data_both_ways(
    start_relay: StartRelay, make_session: MakeSession, rooms: RoomScript
) -> None:
    """The client's data is a data message in the room; the agent's comes back as response.data."""
    server = await start_relay()
    session, _ = await make_session(server)
    room = rooms.rooms[0]

    await session.send_data({"action": "open_card", "id": 7})
    await until(lambda: room.published, TIMEOUT)
    arrived = session.expect(lambda e: isinstance(e, ResponseData))
    room.send_data({"card": "weather", "temperature": 21})
    event = await arrived.wait(TIMEOUT)

    [(payload, _topic)] = room.published
    assert json.loads(payload) == {"action": "open_card", "id": 7}
    assert isinstance(event, ResponseData)
    assert event.content == {"card": "weather", "temperature": 21}


async def test_agent_text_cut_mid_word_arrives_whole(
    start_relay: StartRelay, make_session: MakeSession, rooms: RoomScript
) -> None:
    """The agent's text stream may split words; the client still gets its words unbroken."""
    server = await start_relay()
    session, events = await make_session(server)
    room = rooms.rooms[0]

    async def agent_speaks() -> None:
        room.set_agent_state("speaking")
        room.stream_text(AGENT_IDENTITY, "agent-x", ["The kit", "chen li", "ght is ", "on."])
        room.play(tone(0.2))

    turn = await next_agent_turn(session, agent_speaks())
    await until(lambda: "light" in turn.text, TIMEOUT)
    room.set_agent_state("listening")  # the last word goes out with the end of the turn
    await play(turn)

    assert turn.text == REPLY
    pieces = [e.content for e in events if isinstance(e, ResponseText)]
    assert "".join(pieces) == REPLY
    assert all(piece[-1].isspace() for piece in pieces[:-1])


async def test_barge_in_drops_the_reply(
    start_relay: StartRelay, make_session: MakeSession, rooms: RoomScript
) -> None:
    """User speech while the reply plays: user turn.start (the client stops playback), the
    session drops the rest of the agent's turn, and the reply gets no turn.end."""
    server = await start_relay()
    session, events = await make_session(server)

    turn = await next_agent_turn(session, session.send_text("tell me a long story"))
    await until(lambda: turn.audio_bytes_received > 0, TIMEOUT)
    user_start = session.expect(lambda e: isinstance(e, TurnStart) and e.role == "user")
    await session.begin_user_speech()
    await user_start.wait(TIMEOUT)

    assert session.conversation_id is not None
    await until(lambda: server.conversations[session.conversation_id or ""].turns, TIMEOUT)
    [record] = server.conversations[session.conversation_id].turns
    assert record.interrupted
    assert turn.interrupted
    assert not any(isinstance(e, TurnEnd) and e.role == "assistant" for e in events)


async def test_session_endpoint_error_fails_the_connect(
    start_relay: StartRelay,
    make_session: MakeSession,
    endpoint: SessionEndpoint,
    rooms: RoomScript,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An expired LiveLayer key: the WebSocket is refused with the reason, the client's connect
    fails at once, and the key is sent to the endpoint but never logged."""
    endpoint.status, endpoint.error_code = 401, "key_expired"
    server = await start_relay()
    session, _ = await make_session(server, connect=False)

    with caplog.at_level(logging.DEBUG), pytest.raises(LayercodeConnectionError, match="502"):
        async with asyncio.timeout(TIMEOUT):
            await session.connect()

    assert session.status is SessionStatus.ERROR
    assert rooms.rooms == []
    _, headers, body = endpoint.requests[0]
    assert headers["x-api-key"] == API_KEY
    assert body["agentId"] == LIVELAYER_AGENT_ID
    assert "key_expired" in caplog.text
    assert API_KEY not in caplog.text
    async with http.post(server.authorize_url, json={"agent_id": AGENT_ID}) as response:
        key = (await response.json())["client_session_key"]
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with http.get(
        server.websocket_url.replace("ws", "http", 1),
        params={"client_session_key": key},
        headers=upgrade,
    ) as response:
        assert response.status == 502
        assert "key_expired" in (await response.json())["error"]


async def test_room_that_cannot_be_joined_fails_the_connect(
    start_relay: StartRelay, make_session: MakeSession, rooms: RoomScript
) -> None:
    rooms.fail_connect = ConnectionError("no route to the LiveKit server")
    server = await start_relay()
    session, _ = await make_session(server, connect=False)

    with pytest.raises(LayercodeConnectionError, match="502"):
        async with asyncio.timeout(TIMEOUT):
            await session.connect()

    assert session.status is SessionStatus.ERROR
    assert [room.left for room in rooms.rooms] == [True]


@pytest.mark.parametrize("failure", ["AGENT_TIMEOUT", "ROOM_DISCONNECT"])
async def test_agent_lost_later_closes_the_socket_with_the_reason(
    start_relay: StartRelay,
    connect: Connect,
    endpoint: SessionEndpoint,
    rooms: RoomScript,
    failure: str,
) -> None:
    """No agent ever joins, or the room drops and cannot be rejoined: the client's socket
    closes with 1014 (bad gateway) and says why."""
    if failure == "AGENT_TIMEOUT":
        rooms.agent_joins = False
    server = await start_relay(agent_join_timeout=0.2, reconnect_delays=(0.01, 0.01))
    client = await connect(server)
    if failure == "ROOM_DISCONNECT":
        endpoint.status = 503
        rooms.rooms[0].drop()

    message = await client.ws.receive(timeout=TIMEOUT)

    assert message.type is aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.BAD_GATEWAY
    assert failure in message.extra
    await until(lambda: all(room.left for room in rooms.rooms), TIMEOUT)


async def test_client_disconnect_leaves_the_room(
    start_relay: StartRelay, make_session: MakeSession, rooms: RoomScript
) -> None:
    server = await start_relay()
    session, _ = await make_session(server)
    room = rooms.rooms[0]
    assert not room.left

    await session.disconnect()

    await until(lambda: room.left, TIMEOUT)
    await until(lambda: server.recordings[0].closed_at is not None, TIMEOUT)


async def test_server_stop_leaves_every_room(
    start_relay: StartRelay, connect: Connect, rooms: RoomScript
) -> None:
    """Nothing is left running: rooms left, sockets closed, no task of the relay's."""
    server = await start_relay()
    clients = [await connect(server), await connect(server)]
    await clients[0].send({"type": "client.response.text", "content": "hello"})
    await clients[0].until("turn.start", "assistant")

    async with asyncio.timeout(TIMEOUT):
        await server.stop()

    assert [room.left for room in rooms.rooms] == [True, True]
    for client in clients:
        async with asyncio.timeout(TIMEOUT):
            while (message := await client.ws.receive()).type is aiohttp.WSMsgType.TEXT:
                pass  # what was sent before the close
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(room.agent.wait() for room in rooms.rooms if room.agent))
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_command_line_relay_options() -> None:
    args = _parse_args(
        [
            "--agent-id",
            "my_agent",
            "--relay-livelayer",
            "https://livelayer.example",
            "--livelayer-agent-id",
            "ll_1",
            "--livelayer-api-key",
            "K",
            "--livelayer-session-endpoint",
            "/api/own/session",
        ]
    )
    relay = _relay(args)
    assert relay is not None
    assert relay.options == LiveLayerOptions(
        "ll_1", "https://livelayer.example", api_key="K", session_endpoint="/api/own/session"
    )
    assert str(relay.options.session_url) == "https://livelayer.example/api/own/session"
    assert relay.room_factory is default_room_factory
    assert _relay(_parse_args([])) is None
    for wrong in (
        ["--livelayer-agent-id", "ll_1"],
        ["--relay-livelayer", "https://livelayer.example"],
        [
            "--relay-livelayer",
            "https://x",
            "--livelayer-agent-id",
            "a",
            "--webhook-url",
            "http://y",
        ],
    ):
        with pytest.raises(SystemExit):
            _parse_args(wrong)


def test_relay_imports_neither_livekit_nor_home_assistant() -> None:
    """The relay runs in a bare venv; LiveKit is imported only when a real room is opened."""
    root = Path(__file__).parents[2]
    code = (
        "import sys\n"
        "sys.modules['homeassistant'] = None\n"
        "import local_agent_server.__main__, local_agent_server.relay\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('livekit', 'homeassistant')]\n"
        "assert bad == ['homeassistant'], bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
