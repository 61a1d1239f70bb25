"""A LiveLayer session in a fake LiveKit room, its session endpoint a real server on 127.0.0.1.

The room is `tests/fake_room.py`'s (no LiveKit server can run here): tests make it report what
a LiveKit server would (participants, attributes, data, transcriptions, text streams, the
agent's audio, drops), or put a `ScriptedAgent` in it that answers what it hears.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
import json
import logging
from typing import Any

import aiohttp
import numpy as np
import pytest

from custom_components.layercode.client import (
    AgentSpeakingChanged,
    AgentState,
    AgentStateChanged,
    AgentTurn,
    AgentTurnStarted,
    AmplitudeChanged,
    Connected,
    SessionClosedError,
    SessionEvent,
    SessionFailed,
    SessionStatus,
    StatusChanged,
    UserSpeakingChanged,
)
from custom_components.layercode.client.audio import rms_level
from custom_components.layercode.client.events import TranscriptEntry, TranscriptUpdated
from custom_components.layercode.client.livelayer import (
    AUDIO_RATE,
    AgentConfig,
    ConnectionState,
    ErrorCode,
    LiveLayerConnectionError,
    LiveLayerError,
    LiveLayerOptions,
    LiveLayerSession,
    RoomHandler,
)
from custom_components.layercode.client.livelayer.session import CATCH_UP, RESUME_WINDOW
from custom_components.layercode.client.messages import ResponseData, ResponseEnd, UserTranscript

from ..conftest import StartApp, until
from ..fake_room import (
    AGENT_IDENTITY,
    FRAME_BYTES,
    USER_IDENTITY,
    FakeRoom,
    RoomScript,
    ScriptedAgent,
    tone,
)
from ..session_endpoint import SessionEndpoint, serve_session_endpoint
from ..signals import dominant_frequency, rms

TIMEOUT = 5.0
AGENT_ID = "ag_kitchen"
API_KEY = "ll_secret"
FRAME_SECONDS = FRAME_BYTES / 2 / AUDIO_RATE


class Clock:
    """The session's clock for the resume window, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A session with its rooms, clock and every event it emitted."""

    session: LiveLayerSession
    script: RoomScript
    clock: Clock
    events: list[SessionEvent] = field(default_factory=list)
    connection_states: list[ConnectionState] = field(default_factory=list)

    @property
    def room(self) -> FakeRoom:
        """The room the session joined last."""
        return self.script.rooms[-1]

    def of[T](self, kind: type[T]) -> list[T]:
        return [event for event in self.events if isinstance(event, kind)]

    def agent_states(self) -> list[AgentState]:
        return [event.state for event in self.of(AgentStateChanged)]

    def on_event(self, event: SessionEvent) -> None:
        self.events.append(event)
        if isinstance(event, StatusChanged):
            self.connection_states.append(self.session.connection_state)


type Make = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def endpoint(start_app: StartApp) -> SessionEndpoint:
    return await serve_session_endpoint(start_app)


@pytest.fixture
async def make(http: aiohttp.ClientSession, endpoint: SessionEndpoint) -> AsyncIterator[Make]:
    """LiveLayer sessions on fake rooms (a ScriptedAgent in each with `agent`); all closed after."""
    harnesses: list[Harness] = []

    async def make(
        *,
        connect: bool = True,
        script: RoomScript | None = None,
        agent: dict[str, Any] | None = None,
        room_factory: Callable[[RoomHandler], FakeRoom] | None = None,
        **kwargs: Any,
    ) -> Harness:
        script = script or RoomScript()

        def factory(handler: RoomHandler) -> FakeRoom:
            room = script.factory(handler)
            if agent is not None:
                ScriptedAgent(room, **agent)
            return room

        clock = Clock()
        kwargs.setdefault("reconnect_delays", (0.01, 0.02))
        kwargs.setdefault("end_of_speech_silence", 1.0)
        session = LiveLayerSession(
            http,
            LiveLayerOptions(agent_id=AGENT_ID, base_url=endpoint.url, api_key=API_KEY),
            room_factory=room_factory or factory,
            clock=clock,
            **kwargs,
        )
        harness = Harness(session, script, clock)
        session.add_listener(harness.on_event)
        harnesses.append(harness)
        if connect:
            await session.connect()
        return harness

    yield make
    for harness in harnesses:
        await harness.session.disconnect()
        assert all(room.left for room in harness.script.rooms)
    await asyncio.sleep(0)
    assert microphone_tasks() == []


def microphone_tasks() -> list[asyncio.Task[Any]]:
    """The sessions' microphone publishing tasks still running."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("livelayer microphone") and not task.done()
    ]


async def next_event[T](session: LiveLayerSession, kind: type[T], action: Awaitable[Any]) -> T:
    """Run `action` and return the first `kind` event from then on."""
    waiter = session.expect(lambda event: isinstance(event, kind), across_drops=True)
    await action
    event = await waiter.wait(TIMEOUT)
    assert isinstance(event, kind)
    return event


async def nothing() -> None:
    """No action: the event comes from the session or the room on its own."""


async def call(function: Callable[..., Any], *args: Any) -> None:
    """An action that makes the room report something (its calls are synchronous)."""
    function(*args)


async def play(turn: AgentTurn) -> bytes:
    """Read a turn's audio to its end, as a player would."""
    async with asyncio.timeout(TIMEOUT):
        return b"".join([chunk async for chunk in turn.audio_stream()])


async def agent_audio_read(room: FakeRoom) -> None:
    """Wait until the session has taken every frame the agent played into the room."""
    await until(room._audio.empty, TIMEOUT)
    await asyncio.sleep(0)


# -- connecting --------------------------------------------------------------------------


async def test_connect_requests_a_room_and_joins_it(make: Make, endpoint: SessionEndpoint) -> None:
    """connect() posts the session request, joins the granted room, reports Connected."""
    h = await make(connect=False)
    session = h.session
    assert session.connection_state is ConnectionState.IDLE
    assert not session.can_resume()

    await session.connect()

    assert h.connection_states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    assert [e.status for e in h.of(StatusChanged)] == [
        SessionStatus.CONNECTING,
        SessionStatus.CONNECTED,
    ]
    assert h.of(Connected) == [Connected("room-1", resumed=False)]
    assert endpoint.bodies == [{"agentId": AGENT_ID}]
    assert endpoint.requests[0].headers["x-api-key"] == API_KEY
    assert h.script.connects == [("wss://rooms.test/1", "token-1")]
    assert h.room.connected
    assert h.room.microphone is not None
    assert session.room is h.room
    assert session.room_name == session.conversation_id == "room-1"
    assert session.agent_config == AgentConfig(name="Kitchen agent")
    assert session.agent_identity == AGENT_IDENTITY
    assert session.agent_state is AgentState.LISTENING
    assert session.error is None

    await session.connect()  # already connected: nothing happens
    assert len(endpoint.requests) == 1
    assert len(h.script.rooms) == 1


async def test_connect_with_token_makes_no_request(make: Make, endpoint: SessionEndpoint) -> None:
    """A token minted elsewhere joins its room directly; the session endpoint is not asked."""
    h = await make(connect=False)
    await h.session.connect_with_token("wss://elsewhere.test", "minted-token")
    assert endpoint.requests == []
    assert h.script.connects == [("wss://elsewhere.test", "minted-token")]
    assert h.connection_states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    assert h.of(Connected) == [Connected("", resumed=False)]
    assert h.session.connected
    assert h.session.agent_state is AgentState.LISTENING


async def test_reconnect_resumes_only_within_five_minutes(
    make: Make, endpoint: SessionEndpoint
) -> None:
    """priorRoomName goes with a connect within the resume window of the last, not after it."""
    h = await make()
    session = h.session
    await session.disconnect()
    assert session.can_resume()

    h.clock.now += RESUME_WINDOW - 1
    assert session.can_resume()
    await session.connect()
    assert endpoint.bodies[1] == {"agentId": AGENT_ID, "priorRoomName": "room-1"}
    assert h.of(Connected)[-1] == Connected("room-2", resumed=True)
    await session.disconnect()

    h.clock.now += RESUME_WINDOW  # counted from the last connect
    assert not session.can_resume()
    await session.connect()
    assert endpoint.bodies[2] == {"agentId": AGENT_ID}
    assert h.of(Connected)[-1] == Connected("room-3", resumed=False)
    assert session.room_name == "room-3"
    assert [room.left for room in h.script.rooms] == [True, True, False]


async def test_disconnect_leaves_and_clears_the_transcript(make: Make) -> None:
    """disconnect() leaves the room and forgets the transcript; twice is harmless."""
    h = await make()
    room = h.room
    room.transcribe(USER_IDENTITY, "u1", "hello", True)
    assert len(h.session.transcript) == 1

    await h.session.disconnect()
    assert room.left
    assert h.session.room is None
    assert h.session.transcript == []
    assert h.session.connection_state is ConnectionState.DISCONNECTED
    assert h.session.status is SessionStatus.DISCONNECTED
    assert h.session.agent_state is AgentState.IDLE
    events = len(h.events)

    await h.session.disconnect()
    assert len(h.events) == events
    assert h.session.connection_state is ConnectionState.DISCONNECTED
    with pytest.raises(SessionClosedError):
        await h.session.send_data({"late": True})


async def test_disconnect_when_never_connected(make: Make, endpoint: SessionEndpoint) -> None:
    """A session that never connected disconnects quietly and stays idle."""
    h = await make(connect=False)
    await h.session.disconnect()
    await h.session.disconnect()
    assert h.session.connection_state is ConnectionState.IDLE
    assert h.events == []
    assert endpoint.requests == []
    assert h.script.rooms == []


async def test_disconnect_while_joining(make: Make) -> None:
    """A disconnect during the room join wins: connect raises, the room is left."""
    gate = asyncio.Event()
    entered = asyncio.Event()
    script = RoomScript()

    class SlowRoom(FakeRoom):
        async def connect(self, url: str, token: str) -> None:
            entered.set()
            await gate.wait()
            await super().connect(url, token)

    def factory(handler: RoomHandler) -> FakeRoom:
        room = SlowRoom(handler, script)
        script.rooms.append(room)
        return room

    h = await make(connect=False, script=script, room_factory=factory)
    connecting = asyncio.ensure_future(h.session.connect())
    async with asyncio.timeout(TIMEOUT):
        await entered.wait()
    await h.session.disconnect()
    gate.set()
    with pytest.raises(SessionClosedError):
        async with asyncio.timeout(TIMEOUT):
            await connecting
    assert h.room.left
    assert h.session.room is None
    assert not h.session.connected
    assert h.of(Connected) == []


# -- failures ----------------------------------------------------------------------------


async def test_room_connect_failure(make: Make) -> None:
    """A room that refuses the join is CONNECT_FAILED, retryable, with the room's reason."""
    h = await make(connect=False, script=RoomScript(fail_connect=RuntimeError("bad token")))
    with pytest.raises(LiveLayerConnectionError, match="bad token") as info:
        await h.session.connect()
    assert info.value.code == ErrorCode.CONNECT_FAILED
    assert h.session.error is info.value
    assert h.connection_states == [ConnectionState.CONNECTING, ConnectionState.ERROR]
    assert h.session.status is SessionStatus.ERROR
    assert h.room.left
    assert h.session.room is None
    assert h.of(Connected) == []


async def test_room_connect_timeout(make: Make) -> None:
    """A room join that never completes is cut off at connect_timeout."""
    script = RoomScript()

    class StuckRoom(FakeRoom):
        async def connect(self, url: str, token: str) -> None:
            await asyncio.Event().wait()

    def factory(handler: RoomHandler) -> FakeRoom:
        room = StuckRoom(handler, script)
        script.rooms.append(room)
        return room

    h = await make(connect=False, script=script, room_factory=factory, connect_timeout=0.05)
    with pytest.raises(LiveLayerConnectionError, match="timed out") as info:
        async with asyncio.timeout(TIMEOUT):
            await h.session.connect()
    assert info.value.code == ErrorCode.CONNECT_FAILED
    assert h.room.left
    assert h.session.connection_state is ConnectionState.ERROR


async def test_session_endpoint_error_on_connect(make: Make, endpoint: SessionEndpoint) -> None:
    """The endpoint's error (here an expired key) is raised as is; no room is opened."""
    endpoint.status, endpoint.error_code = 401, "key_expired"
    h = await make(connect=False)
    with pytest.raises(LiveLayerError) as info:
        await h.session.connect()
    assert info.value.code == ErrorCode.KEY_EXPIRED
    assert info.value.status == 401
    assert h.session.error is info.value
    assert h.session.connection_state is ConnectionState.ERROR
    assert h.script.rooms == []


async def test_agent_timeout(make: Make) -> None:
    """No agent in the room within agent_join_timeout: AGENT_TIMEOUT, the room is left."""
    h = await make(script=RoomScript(agent_joins=False), agent_join_timeout=0.05)
    assert h.session.connected
    assert h.session.agent_identity is None
    assert h.session.agent_state is AgentState.IDLE

    failed = await next_event(h.session, SessionFailed, nothing())

    assert isinstance(failed.error, LiveLayerError)
    assert failed.error.code == ErrorCode.AGENT_TIMEOUT
    assert h.session.error is failed.error
    assert h.session.connection_state is ConnectionState.ERROR
    assert h.connection_states[-1] is ConnectionState.ERROR
    await until(lambda: h.room.left, TIMEOUT)


async def test_agent_joining_in_time_stops_the_timer(make: Make) -> None:
    """An agent that joins late but within the bound keeps the session up."""
    h = await make(script=RoomScript(agent_joins=False), agent_join_timeout=0.05)
    h.room.join_agent()
    assert h.session.agent_state is AgentState.LISTENING
    await asyncio.sleep(0.15)
    assert h.of(SessionFailed) == []
    assert h.session.connected


async def test_agent_leaving_starts_the_timer_again(make: Make) -> None:
    """The agent leaves: idle at once, AGENT_TIMEOUT if it does not come back in time."""
    h = await make(agent_join_timeout=0.05)
    h.room.handler.participant_left("someone-else")
    assert h.session.agent_identity == AGENT_IDENTITY

    failed = await next_event(
        h.session, SessionFailed, call(h.room.handler.participant_left, AGENT_IDENTITY)
    )
    assert h.agent_states() == [AgentState.LISTENING, AgentState.IDLE]
    assert isinstance(failed.error, LiveLayerError)
    assert failed.error.code == ErrorCode.AGENT_TIMEOUT
    await until(lambda: h.room.left, TIMEOUT)


async def test_room_drop_rejoins_and_resumes(make: Make, endpoint: SessionEndpoint) -> None:
    """The room drops mid-turn: the turn ends failed, the session rejoins with priorRoomName."""
    h = await make()
    first = h.room
    started = await next_event(h.session, AgentTurnStarted, call(first.set_agent_state, "speaking"))

    connected = await next_event(h.session, Connected, call(first.drop, "SIGNAL_CLOSE"))

    assert connected == Connected("room-2", resumed=True)
    assert started.turn.ended and started.turn.failed
    assert ResponseEnd(started.turn.turn_id) in h.events
    assert endpoint.bodies == [
        {"agentId": AGENT_ID},
        {"agentId": AGENT_ID, "priorRoomName": "room-1"},
    ]
    assert h.script.connects[-1] == ("wss://rooms.test/2", "token-2")
    assert first.left
    assert h.room is not first and h.room.connected
    assert h.connection_states == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
    ]
    assert h.session.room_name == "room-2"
    assert h.session.agent_state is AgentState.LISTENING
    assert h.of(SessionFailed) == []


async def test_one_microphone_sender_after_a_rejoin(make: Make) -> None:
    """After a drop and a rejoin one task publishes the microphone; none after disconnect."""
    h = await make()
    await next_event(h.session, Connected, call(h.room.drop, "SIGNAL_CLOSE"))
    await asyncio.sleep(0)
    running = [task.get_name() for task in microphone_tasks()]
    await h.session.disconnect()
    await asyncio.sleep(0)
    leftover = [task.get_name() for task in microphone_tasks()]
    assert (running, leftover) == (["livelayer microphone room-2"], [])


async def test_room_drop_gives_up_after_the_retries(make: Make) -> None:
    """A room that cannot be joined again: one try per delay, then ROOM_DISCONNECT."""
    h = await make(reconnect_delays=(0.01, 0.01, 0.01))
    h.script.fail_connect = ConnectionError("rooms are down")

    failed = await next_event(h.session, SessionFailed, call(h.room.drop, "SIGNAL_CLOSE"))

    assert isinstance(failed.error, LiveLayerError)
    assert failed.error.code == ErrorCode.ROOM_DISCONNECT
    assert "SIGNAL_CLOSE" in str(failed.error)
    assert len(h.script.connects) == 1 + 3
    assert all(room.left for room in h.script.rooms)
    assert h.session.connection_state is ConnectionState.ERROR
    assert h.connection_states[-2:] == [ConnectionState.CONNECTING, ConnectionState.ERROR]


async def test_room_drop_ends_with_the_endpoints_refusal(
    make: Make, endpoint: SessionEndpoint
) -> None:
    """A rejoin refused with an expired key is not retried; the session fails with that code
    (so that Home Assistant can ask for a new key)."""
    h = await make(reconnect_delays=(0.01, 0.01, 0.01))
    endpoint.status, endpoint.error_code = 401, "key_expired"

    failed = await next_event(h.session, SessionFailed, call(h.room.drop, "SIGNAL_CLOSE"))

    assert isinstance(failed.error, LiveLayerError)
    assert failed.error.code == ErrorCode.KEY_EXPIRED
    assert len(endpoint.requests) == 2  # the first session and one rejoin
    assert len(h.script.connects) == 1
    assert h.session.connection_state is ConnectionState.ERROR


# -- agent state, transcripts and data ---------------------------------------------------


async def test_agent_state_from_attributes_and_data(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """lk.agent.state of the agent and agent_state data messages both set the agent's state."""
    h = await make()
    room = h.room
    room.set_agent_state("thinking")
    room.set_agent_state("initializing")
    room.set_agent_state("bogus")  # unknown: ignored
    room.handler.attributes_changed("someone-else", {"lk.agent.state": "thinking"})
    assert h.session.agent_state is AgentState.IDLE
    with caplog.at_level(logging.DEBUG, "custom_components.layercode.client.livelayer"):
        room.send_data({"type": "agent_state", "state": "listening"})
        room.send_data({"type": "agent_state", "state": "dancing"})
    assert h.session.agent_state is AgentState.LISTENING
    room.send_data({"type": "agent_state", "state": "thinking"})

    assert h.agent_states() == [
        AgentState.LISTENING,
        AgentState.THINKING,
        AgentState.IDLE,
        AgentState.LISTENING,
        AgentState.THINKING,
    ]
    assert h.of(ResponseData) == []  # agent_state messages are the session's own
    assert "unknown agent state" in caplog.text
    assert "dancing" in caplog.text


async def test_agent_speech_is_an_agent_turn(make: Make) -> None:
    """speaking opens a turn that collects the agent's text, data and audio until it stops."""
    h = await make()
    room = h.room
    room.set_agent_state("thinking")
    started = await next_event(h.session, AgentTurnStarted, call(room.set_agent_state, "speaking"))
    turn = started.turn
    assert turn.turn_id == "room-1-1"

    voice = tone(0.2)
    room.stream_text(AGENT_IDENTITY, "seg-1", ["The light ", "is on."])
    room.play(voice)
    room.send_data({"tool": "light.turn_on"})
    await until(lambda: turn.audio_bytes_received == len(voice) and turn.text.endswith("on."))
    assert h.session.agent_speaking

    end = await next_event(
        h.session, ResponseEnd, call(room.send_data, {"type": "agent_state", "state": "listening"})
    )
    assert end.turn_id == turn.turn_id
    assert turn.ended and not turn.failed
    assert turn.text == "The light is on."
    assert turn.data == [{"tool": "light.turn_on"}]
    assert ResponseData({"tool": "light.turn_on"}, turn.turn_id) in h.events
    assert await play(turn) == voice
    assert not h.session.agent_speaking
    assert [e.speaking for e in h.of(AgentSpeakingChanged)] == [True, False]
    levels = [e.level for e in h.of(AmplitudeChanged) if e.role == "agent"]
    assert levels[0] == pytest.approx(rms_level(voice[:FRAME_BYTES]))
    assert levels[-1] == 0.0

    second = await next_event(h.session, AgentTurnStarted, call(room.set_agent_state, "speaking"))
    assert second.turn.turn_id == "room-1-2"


async def test_transcript_from_every_path(make: Make) -> None:
    """Transcription events, lk.transcription streams and captions upsert entries by id."""
    h = await make()
    room = h.room
    room.transcribe(USER_IDENTITY, "u1", "turn on", False)
    room.transcribe(USER_IDENTITY, "u1", "turn on the light", True)
    room.transcribe(AGENT_IDENTITY, "a1", "Okay.", True)
    room.stream_text(AGENT_IDENTITY, "a2", ["Done, ", "the light ", "is on."])
    await until(lambda: any(e.id == "a2" and e.final for e in h.session.transcript))
    room.send_data({"type": "agent_caption", "id": "a3", "text": "Anything else?", "final": True})

    async def words() -> AsyncIterator[str]:
        yield "and the fan"

    # a user's words forwarded by someone else, marked with the track they transcribe
    room.handler.text_stream(
        "phone-user", {"lk.segment_id": "u2", "lk.transcribed_track_id": "TR_phone"}, words()
    )
    await until(lambda: len(h.session.transcript) == 5)

    assert h.session.transcript == [
        TranscriptEntry("u1", "user", "turn on the light", True),
        TranscriptEntry("a1", "agent", "Okay.", True),
        TranscriptEntry("a2", "agent", "Done, the light is on.", True),
        TranscriptEntry("a3", "agent", "Anything else?", True),
        TranscriptEntry("u2", "user", "and the fan", True),
    ]
    assert [e.entry for e in h.of(TranscriptUpdated)] == [
        TranscriptEntry("u1", "user", "turn on", False),
        TranscriptEntry("u1", "user", "turn on the light", True),
        TranscriptEntry("a1", "agent", "Okay.", True),
        TranscriptEntry("a2", "agent", "Done, ", False),
        TranscriptEntry("a2", "agent", "Done, the light ", False),
        TranscriptEntry("a2", "agent", "Done, the light is on.", False),
        TranscriptEntry("a2", "agent", "Done, the light is on.", True),
        TranscriptEntry("a3", "agent", "Anything else?", True),
        TranscriptEntry("u2", "user", "and the fan", False),
        TranscriptEntry("u2", "user", "and the fan", True),
    ]
    assert h.of(ResponseData) == []
    assert h.of(AgentTurnStarted) == []  # captions while the agent listens open no turn


async def test_one_segment_on_two_paths_is_one_entry(make: Make) -> None:
    """The same segment id by transcription, text stream and caption is one transcript line."""
    h = await make()
    room = h.room
    room.transcribe(AGENT_IDENTITY, "seg", "Hello", False)
    room.stream_text(AGENT_IDENTITY, "seg", ["Hello there"])
    await until(lambda: h.session.transcript[0].final)
    room.send_data({"type": "agent_caption", "id": "seg", "text": "Hello there", "final": True})
    room.transcribe(AGENT_IDENTITY, "seg", "Hello", False)  # a late interim: ignored

    assert h.session.transcript == [TranscriptEntry("seg", "agent", "Hello there", True)]
    assert [e.entry for e in h.of(TranscriptUpdated)] == [
        TranscriptEntry("seg", "agent", "Hello", False),
        TranscriptEntry("seg", "agent", "Hello there", False),
        TranscriptEntry("seg", "agent", "Hello there", True),
    ]


async def test_user_transcript_when_the_agent_takes_the_turn(make: Make) -> None:
    """The user's final segments become one UserTranscript once the agent thinks."""
    h = await make()
    room = h.room
    room.transcribe(USER_IDENTITY, "u1", "turn on", True)
    room.transcribe(USER_IDENTITY, "u2", "the light", False)
    room.transcribe(USER_IDENTITY, "u2", "the light", True)
    assert h.of(UserTranscript) == []  # the agent still listens: more may come

    room.set_agent_state("thinking")
    assert h.of(UserTranscript) == [UserTranscript("turn on the light", "u2")]
    assert h.session.user_turn_id == "u2"

    room.transcribe(USER_IDENTITY, "u3", "please", True)  # the agent is already on it
    assert h.of(UserTranscript)[-1] == UserTranscript("please", "u3")


async def test_other_data_is_passed_on(make: Make) -> None:
    """Any other data message is a ResponseData; a non-JSON payload is passed on as text."""
    h = await make()
    room = h.room
    room.send_data({"type": "tool_call", "name": "light.turn_on"}, topic="tools")
    room.send_data([1, 2, 3])
    room.send_data(b"\xffnot json{")
    room.send_data({"type": "agent_caption", "text": "no id"})  # malformed caption: dropped
    room.send_data({"after": "garbage"})

    assert h.of(ResponseData) == [
        ResponseData({"type": "tool_call", "name": "light.turn_on"}, None),
        ResponseData([1, 2, 3], None),
        ResponseData("\ufffdnot json{", None),
        ResponseData({"after": "garbage"}, None),
    ]
    assert h.session.connected
    assert h.session.transcript == []


# -- audio, text and data out ------------------------------------------------------------


async def test_voice_turn_with_a_scripted_agent(make: Make) -> None:
    """Speech goes out paced, the agent's words and 440 Hz voice come back as a turn."""
    h = await make(agent={"silence": 0.1, "reply_seconds": 0.4})
    session, room = h.session, h.room
    speech = tone(0.5, frequency=300.0, level=0.25)
    heard = session.expect(lambda e: isinstance(e, UserTranscript))
    started = session.expect(lambda e: isinstance(e, AgentTurnStarted))
    ended = session.expect(lambda e: isinstance(e, ResponseEnd))

    await session.begin_user_speech()
    assert session.user_speaking
    for start in range(0, len(speech), 320):  # Home Assistant's 10 ms chunks
        await session.send_audio(speech[start : start + 320])
    await session.end_user_speech()

    transcript = await heard.wait(TIMEOUT)
    assert transcript == UserTranscript("turn on the kitchen light", "user-1")
    turn_started = await started.wait(TIMEOUT)
    assert isinstance(turn_started, AgentTurnStarted)
    turn = turn_started.turn
    audio = await play(turn)
    end = await ended.wait(TIMEOUT)
    assert end == ResponseEnd(turn.turn_id)

    assert turn.text == "The kitchen light is on."
    assert len(audio) == 0.4 * AUDIO_RATE * 2
    assert dominant_frequency(audio) == pytest.approx(440.0, abs=3)
    assert rms(audio) == pytest.approx(0.3 * 32767 / np.sqrt(2), rel=0.02)

    # What the microphone published: the speech, then silence until the agent answered.
    assert room.microphone is not None
    frames = room.microphone.frames
    published = room.microphone.audio
    assert published[: len(speech)] == speech
    tail = published[len(speech) :]
    assert tail == bytes(len(tail))
    silence_frames = len(tail) // FRAME_BYTES
    assert 5 <= silence_frames <= 1.0 / FRAME_SECONDS + CATCH_UP / FRAME_SECONDS + 1
    speech_frames = len(speech) // FRAME_BYTES
    span = frames[speech_frames - 1][0] - frames[0][0]
    assert span >= (speech_frames - 1) * FRAME_SECONDS - CATCH_UP - 0.01  # not faster than real
    user_levels = [e.level for e in h.of(AmplitudeChanged) if e.role == "user"]
    assert user_levels == pytest.approx([rms_level(pcm) for _, pcm in frames[:speech_frames]])

    assert h.agent_states() == [
        AgentState.LISTENING,
        AgentState.THINKING,
        AgentState.SPEAKING,
        AgentState.LISTENING,
    ]
    assert [e.speaking for e in h.of(UserSpeakingChanged)] == [True, False]
    assert session.transcript == [
        TranscriptEntry("user-1", "user", "turn on the kitchen light", True),
        TranscriptEntry("agent-1", "agent", "The kitchen light is on.", True),
    ]


async def test_silence_tail_stops_when_the_agent_answers(make: Make) -> None:
    """After speech the microphone sends silence, until the agent starts thinking."""
    h = await make(end_of_speech_silence=5.0)
    mic = h.room.microphone
    assert mic is not None
    speech = tone(0.11)  # five frames and a part-frame, padded with zeros
    await h.session.begin_user_speech()
    await h.session.send_audio(speech)
    await h.session.end_user_speech()
    await until(lambda: len(mic.frames) >= 6 + 3, TIMEOUT)

    h.room.set_agent_state("thinking")
    sent = len(mic.frames)
    await asyncio.sleep(0.15)
    assert len(mic.frames) <= sent + 1  # at most one frame already on its way
    assert mic.audio[: len(speech)] == speech
    assert mic.audio[len(speech) :] == bytes(len(mic.audio) - len(speech))


async def test_silence_tail_after_whole_frames(make: Make) -> None:
    """Speech of whole frames, all published before its end: the silence tail still follows."""
    h = await make(end_of_speech_silence=1.0)
    mic = h.room.microphone
    assert mic is not None
    await h.session.begin_user_speech()
    await h.session.send_audio(tone(0.1))  # exactly five frames
    await until(lambda: len(mic.frames) == 5, TIMEOUT)
    await h.session.end_user_speech()
    await until(lambda: len(mic.frames) >= 5 + 5, 0.5)


async def test_audio_outside_speech_or_when_muted_is_not_sent(make: Make) -> None:
    """Audio before begin_user_speech or while muted does not reach the room."""
    h = await make()
    mic = h.room.microphone
    assert mic is not None
    await h.session.send_audio(tone(0.1))
    await h.session.set_muted(True)
    await h.session.begin_user_speech()
    await h.session.send_audio(tone(0.1))
    await h.session.end_user_speech()
    await asyncio.sleep(0.05)
    assert mic.frames == []
    assert not h.session.user_speaking


async def test_send_text_goes_out_as_chat(make: Make) -> None:
    """Typed text is an lk.chat message; the agent thinks, then answers it as a turn."""
    h = await make(agent={"reply_seconds": 0.1})
    started = await next_event(h.session, AgentTurnStarted, h.session.send_text("Lights off"))
    assert h.room.chat == ["Lights off"]
    assert h.agent_states()[:3] == [AgentState.LISTENING, AgentState.THINKING, AgentState.SPEAKING]
    assert await started.turn.wait_ended(TIMEOUT)
    assert started.turn.text == "The kitchen light is on."
    assert h.of(UserTranscript) == []  # typed words need no transcript


async def test_send_text_while_the_agent_speaks(make: Make) -> None:
    """Typed text cuts the agent off, and the agent's answer to it is a new turn."""
    h = await make()
    room = h.room
    first = await next_event(h.session, AgentTurnStarted, call(room.set_agent_state, "speaking"))
    await h.session.send_text("Stop, turn off the fan")
    assert first.turn.interrupted
    assert room.chat == ["Stop, turn off the fan"]

    room.set_agent_state("listening")
    room.set_agent_state("thinking")
    waiter = h.session.expect(lambda e: isinstance(e, AgentTurnStarted))
    room.set_agent_state("speaking")
    await waiter.wait(0.2)


async def test_send_data_publishes_json(make: Make) -> None:
    """send_data publishes compact JSON on the room's data channel; not connected, it raises."""
    h = await make()
    await h.session.send_data({"kind": "ping", "n": 1, "text": "Grüße"})
    ((payload, topic),) = h.room.published
    assert json.loads(payload) == {"kind": "ping", "n": 1, "text": "Grüße"}
    assert (
        payload
        == json.dumps({"kind": "ping", "n": 1, "text": "Grüße"}, separators=(",", ":")).encode()
    )
    assert topic is None

    await h.session.disconnect()
    with pytest.raises(SessionClosedError):
        await h.session.send_data({"kind": "ping"})
    with pytest.raises(SessionClosedError):
        await h.session.send_text("hello")


@pytest.mark.parametrize("how", ["interrupt_agent", "begin_user_speech", "cut_in"])
async def test_interrupt_drops_the_rest_of_the_agent_turn(make: Make, how: str) -> None:
    """Barge-in ends the turn; the agent's later audio of that utterance is dropped."""
    h = await make()
    room = h.room
    started = await next_event(h.session, AgentTurnStarted, call(room.set_agent_state, "speaking"))
    turn = started.turn
    room.play(tone(0.2))
    await until(lambda: turn.audio_bytes_received == len(tone(0.2)))
    assert h.session.agent_speaking

    if how == "interrupt_agent":
        h.session.interrupt_agent()
    else:
        await getattr(h.session, how)()

    assert turn.interrupted and turn.ended
    assert not h.session.agent_speaking
    room.play(tone(0.3))  # the agent has not stopped yet
    room.stream_text(AGENT_IDENTITY, "late", ["late words"])
    await agent_audio_read(room)
    await until(lambda: any(e.id == "late" and e.final for e in h.session.transcript))
    assert turn.audio_bytes_received == len(tone(0.2))
    assert "late" not in turn.text
    assert await play(turn) == b""  # nothing left to play
    assert len(h.of(AgentTurnStarted)) == 1

    room.set_agent_state("listening")
    again = await next_event(h.session, AgentTurnStarted, call(room.set_agent_state, "speaking"))
    room.play(tone(0.1))
    await until(lambda: again.turn.audio_bytes_received == len(tone(0.1)))
    assert again.turn is not turn
