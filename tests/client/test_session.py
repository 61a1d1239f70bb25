"""The client against the local agent server over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable
import json
from typing import Any

import numpy as np
import pytest

from custom_components.layercode.client import (
    AgentSpeakingChanged,
    AgentTurn,
    AgentTurnStarted,
    AmplitudeChanged,
    Connected,
    InvalidApiKeyError,
    LayercodeConnectionError,
    LayercodeSession,
    SessionFailed,
    SessionStatus,
    StatusChanged,
    TurnTrigger,
)
from custom_components.layercode.client.audio import FRAME_BYTES, rms_level
from custom_components.layercode.client.messages import (
    ResponseData,
    TurnStart,
    UserTranscript,
)
from local_agent_server import LocalAgentServer, ToneTextToSpeech

from ..conftest import MakeSession, StartServer, until

TIMEOUT = 10.0
TTS_MS_PER_CHAR = 50  # ToneTextToSpeech's default


def tone(seconds: float, frequency: float = 440.0) -> bytes:
    """16 kHz speech stand-in."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * frequency * t) * 8000).astype("<i2").tobytes()


def agent_audio_bytes(text: str) -> int:
    """What the deterministic TTS sends for `text`."""
    return len(text) * TTS_MS_PER_CHAR * 16 * 2


async def speak(session: LayercodeSession, pcm: bytes, chunk: int = 320) -> None:
    """One user utterance in Home Assistant's 10 ms chunks."""
    await session.begin_user_speech()
    for i in range(0, len(pcm), chunk):
        await session.send_audio(pcm[i : i + chunk])
    await session.end_user_speech()


async def next_agent_turn(session: LayercodeSession, action: Awaitable[None]) -> AgentTurn:
    """Run `action` and return the agent turn that answers it."""
    waiter = session.expect(lambda event: isinstance(event, AgentTurnStarted))
    await action
    event = await waiter.wait(TIMEOUT)
    assert isinstance(event, AgentTurnStarted)
    return event.turn


async def play(turn: AgentTurn) -> bytes:
    """Read a turn's audio to its end, as a player would."""
    async with asyncio.timeout(TIMEOUT):
        return b"".join([chunk async for chunk in turn.audio_stream()])


def sent(server: LocalAgentServer, index: int = -1) -> list[str]:
    """Client message types one connection sent (vad events with their event)."""
    names = []
    for message in server.recordings[index].messages:
        name = message["type"]
        if name == "vad_events":
            name += ":" + message["event"]
        names.append(name)
    return names


def audio_frames(server: LocalAgentServer, index: int = -1) -> list[bytes]:
    """The decoded `client.audio` frames one connection sent."""
    return [
        base64.b64decode(m["content"])
        for m in server.recordings[index].messages
        if m["type"] == "client.audio"
    ]


async def trace(server: LocalAgentServer, count: int, index: int = -1) -> list[str]:
    """The connection's message types once `count` have arrived, and a moment for extras."""
    await until(lambda: len(server.recordings) > 0 and len(sent(server, index)) >= count)
    await asyncio.sleep(0.1)
    return sent(server, index)


def turns(server: LocalAgentServer, session: LayercodeSession) -> list[Any]:
    """The server's finished turns of the session's conversation."""
    conversation = server.conversations.get(session.conversation_id or "")
    return conversation.turns if conversation else []


async def test_automatic_voice_turn(start_server: StartServer, make_session: MakeSession) -> None:
    """vad_start, 112 ms frames, vad_end; the agent's transcript, text and audio come back."""
    server = await start_server()
    session, events = await make_session(server)
    assert session.status is SessionStatus.CONNECTED
    assert session.config.trigger is TurnTrigger.AUTOMATIC

    transcript = session.expect(lambda e: isinstance(e, UserTranscript))
    turn = await next_agent_turn(session, speak(session, tone(1.0)))
    heard = await transcript.wait(TIMEOUT)
    assert isinstance(heard, UserTranscript)
    assert heard.content == "heard 1000 ms of audio"
    assert heard.turn_id
    audio = await play(turn)
    assert turn.text == "You said: heard 1000 ms of audio"
    assert len(audio) == agent_audio_bytes(turn.text)
    await until(lambda: any(t.replay_finished for t in turns(server, session)))

    frames = audio_frames(server)
    assert [len(f) for f in frames[:-1]] == [FRAME_BYTES] * 8
    assert len(frames[-1]) == 8000 * 2 - 8 * FRAME_BYTES  # the rest, flushed at once
    assert await trace(server, 13) == [
        "client.ready",
        "vad_events:vad_start",
        *["client.audio"] * 9,
        "vad_events:vad_end",
        "trigger.response.audio.replay_finished",
    ]
    speaking = [e.speaking for e in events if isinstance(e, AgentSpeakingChanged)]
    assert speaking == [True, False]


async def test_wire_text_and_levels(start_server: StartServer, make_session: MakeSession) -> None:
    """Frames are compact UTF-8 JSON (audio too); levels are those of the audio sent or played.

    `client.audio` text is built without json.dumps, the user's level from the resampler's
    floats: the wire and the levels must not show it.
    """
    server = await start_server()
    session, events = await make_session(server)
    pcm = tone(0.6) + tone(0.6, 1000.0)[: len(tone(0.6)) // 2]
    turn = await next_agent_turn(session, speak(session, pcm))
    async with asyncio.timeout(TIMEOUT):
        played = [chunk async for chunk in turn.audio_stream()]
    await session.send_text("Grüße 👋")
    await until(lambda: "client.response.text" in sent(server))

    recording = server.recordings[-1]
    for frame in recording.frames:
        assert frame.message is not None
        assert frame.raw == json.dumps(frame.message, separators=(",", ":"), ensure_ascii=False)
    text = [f.raw for f in recording.frames if '"client.response.text"' in f.raw]
    assert text == ['{"type":"client.response.text","content":"Grüße 👋"}']
    frames = audio_frames(server)
    user = [e.level for e in events if isinstance(e, AmplitudeChanged) and e.role == "user"]
    assert len(user) == len(frames) - 1  # the rest, flushed at the end, sets no level
    assert user == pytest.approx([rms_level(f) for f in frames[:-1]], abs=1e-4)
    assert session.user_amplitude == user[-1] > 0.1
    agent = [e.level for e in events if isinstance(e, AmplitudeChanged) and e.role == "agent"]
    assert agent == pytest.approx([*(rms_level(c) for c in played), 0.0], rel=1e-12)
    assert session.agent_amplitude == 0.0


async def test_push_to_talk_with_preroll(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Push-to-talk: triggers around the speech, and the last 10 frames before it go first."""
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK)
    session, _ = await make_session(server)
    assert session.config.trigger is TurnTrigger.PUSH_TO_TALK
    for i in range(0, 32000 * 2, 320):  # 2 s before the press: kept as pre-roll, not sent
        await session.send_audio(tone(2.0)[i : i + 320])
    assert await trace(server, 1) == ["client.ready"]

    turn = await next_agent_turn(session, speak(session, tone(0.5)))
    await play(turn)
    preroll_ms = 10 * FRAME_BYTES // 16
    pending_ms = (32000 % FRAME_BYTES) // 16  # the part-frame not yet sent at the press
    live_ms = 500
    assert turn.text == f"You said: heard {preroll_ms + pending_ms + live_ms} ms of audio"
    # 10 pre-roll frames, then the pending part-frame and 0.5 s live (5 frames + the rest)
    assert await trace(server, 20) == [
        "client.ready",
        "trigger.turn.start",
        *["client.audio"] * 16,
        "trigger.turn.end",
        "trigger.response.audio.replay_finished",
    ]


async def test_agent_trigger_can_be_overridden(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """The integration's turn-taking option wins over the agent's config."""
    server = await start_server(trigger=TurnTrigger.AUTOMATIC)
    session, _ = await make_session(server, trigger=TurnTrigger.PUSH_TO_TALK)
    assert session.config.trigger is TurnTrigger.PUSH_TO_TALK
    await session.begin_user_speech()
    await session.end_user_speech()
    assert (await trace(server, 3))[1:] == ["trigger.turn.start", "trigger.turn.end"]


async def test_typed_text_and_data(start_server: StartServer, make_session: MakeSession) -> None:
    """client.response.text gets a transcript and an answer; data comes back as response.data."""
    server = await start_server()
    session, events = await make_session(server)
    turn = await next_agent_turn(session, session.send_text("Turn on the lights"))
    assert await turn.wait_ended(TIMEOUT)
    assert turn.text == "You said: Turn on the lights"
    assert [e.content for e in events if isinstance(e, UserTranscript)] == ["Turn on the lights"]

    waiter = session.expect(lambda e: isinstance(e, ResponseData))
    await session.send_data({"kind": "ping", "n": 1})
    reply = await waiter.wait(TIMEOUT)
    assert isinstance(reply, ResponseData)
    assert reply.content == {"received": {"kind": "ping", "n": 1}}
    await trace(server, 3)
    assert {"type": "client.response.data", "data": {"kind": "ping", "n": 1}} in (
        server.recordings[-1].messages
    )


async def test_barge_in_drops_the_turn_and_late_audio(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """A push-to-talk press while the agent speaks interrupts it; late frames are dropped."""
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK, pace_audio=True)
    session, _ = await make_session(server)
    long_text = "x" * 200  # 10 s of agent audio, paced in real time
    turn = await next_agent_turn(session, session.send_text(long_text))
    reader = asyncio.ensure_future(play(turn))
    await until(lambda: turn.audio_bytes_received > 0)
    assert session.agent_speaking

    await session.begin_user_speech()
    assert turn.interrupted
    assert not session.agent_speaking
    received = turn.audio_bytes_received
    late = {
        "type": "response.audio",
        "content": base64.b64encode(bytes(3200)).decode(),
        "turn_id": turn.turn_id,
        "delta_id": 999,
    }
    await server.send_raw(json.dumps(late))
    await server.send_raw(
        json.dumps({"type": "response.text", "content": "late", "turn_id": turn.turn_id})
    )
    await asyncio.sleep(0.2)
    assert turn.audio_bytes_received == received
    assert "late" not in turn.text
    played = await reader
    assert len(played) < agent_audio_bytes(long_text) / 2
    await session.end_user_speech()
    await until(lambda: sent(server).count("trigger.response.audio.replay_finished") >= 1)
    await until(lambda: any(t.interrupted for t in turns(server, session)))


async def test_server_barge_in_interrupts_in_automatic_mode(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """turn.start role user from the server while the agent speaks stops the agent."""
    server = await start_server(pace_audio=True)
    session, _ = await make_session(server)
    turn = await next_agent_turn(session, session.send_text("y" * 200))
    await until(lambda: turn.audio_bytes_received > 0)
    await server.send_raw(json.dumps({"type": "turn.start", "role": "user", "turn_id": "u9"}))
    await until(lambda: turn.interrupted)
    assert turn.ended
    assert not session.agent_speaking


async def test_replay_finished_with_audio_output_off(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Output off: nobody plays, yet replay_finished goes out and the agent never 'speaks'."""
    server = await start_server()
    session, events = await make_session(server, audio_output=False)
    turn = await next_agent_turn(session, session.send_text("hello"))
    assert await turn.wait_ended(TIMEOUT)
    await until(lambda: any(t.replay_finished for t in turns(server, session)))
    assert sent(server).count("trigger.response.audio.replay_finished") == 1
    assert not any(isinstance(e, AgentSpeakingChanged) for e in events)
    turn2 = await next_agent_turn(session, session.send_text("again"))
    assert await turn2.wait_ended(TIMEOUT)
    await until(lambda: sent(server).count("trigger.response.audio.replay_finished") == 2)


async def test_unconsumed_audio_is_dropped_after_a_bound(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Audio nobody reads is dropped and counted as played, so the conversation moves on."""
    server = await start_server()
    session, _ = await make_session(server, unconsumed_audio_timeout=0.2)
    turn = await next_agent_turn(session, session.send_text("hi"))
    assert await turn.wait_ended(TIMEOUT)
    await until(lambda: turn.played)
    assert not session.agent_speaking
    await until(lambda: "trigger.response.audio.replay_finished" in sent(server))


@pytest.mark.parametrize("trigger", [TurnTrigger.AUTOMATIC, TurnTrigger.PUSH_TO_TALK])
async def test_mute_sends_no_audio(
    start_server: StartServer, make_session: MakeSession, trigger: TurnTrigger
) -> None:
    """Muted: not a single audio frame; push-to-talk still sends its triggers, as the SDK does."""
    server = await start_server(trigger=trigger)
    session, _ = await make_session(server, muted=True)
    await speak(session, tone(1.0))
    await session.set_muted(False)
    await session.set_muted(True)
    await speak(session, tone(0.5))
    expected = ["client.ready"]
    if trigger is TurnTrigger.PUSH_TO_TALK:
        expected += ["trigger.turn.start", "trigger.turn.end"] * 2
    assert await trace(server, len(expected)) == expected
    assert not session.user_speaking


async def test_mute_mid_speech_sends_vad_end_and_drops_buffer(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Muting while the user speaks (automatic) closes the turn and sends nothing more."""
    server = await start_server()
    session, _ = await make_session(server)
    await session.begin_user_speech()
    for i in range(0, 16000, 320):
        await session.send_audio(tone(0.5)[i : i + 320])
    await session.set_muted(True)
    for i in range(0, 16000, 320):
        await session.send_audio(tone(0.5)[i : i + 320])
    await session.end_user_speech()
    types = await trace(server, 3)
    assert types[-1] == "vad_events:vad_end"
    assert types.count("vad_events:vad_end") == 1
    assert types.count("client.audio") == 16000 // 2 // FRAME_BYTES


async def test_audio_input_off_sends_nothing(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """With audio input off the microphone path is closed."""
    server = await start_server()
    session, _ = await make_session(server)
    await session.set_audio_input(False)
    await speak(session, tone(0.5))
    assert await trace(server, 1) == ["client.ready"]


async def test_resume_after_a_drop_mid_turn(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """The server drops the socket mid-turn: same conversation id, and the next turn works."""
    server = await start_server(pace_audio=True)
    session, events = await make_session(server)
    conversation_id = session.conversation_id
    turn = await next_agent_turn(session, session.send_text("z" * 100))
    await until(lambda: turn.audio_bytes_received > 0)

    resumed = session.expect(lambda e: isinstance(e, Connected) and e.resumed, across_drops=True)
    await server.drop_connections()
    event = await resumed.wait(TIMEOUT)
    assert event == Connected(conversation_id or "", resumed=True)
    assert turn.ended
    assert session.conversation_id == conversation_id
    assert len(server.recordings) == 2
    statuses = [e.status for e in events if isinstance(e, StatusChanged)]
    assert statuses[-2:] == [SessionStatus.CONNECTING, SessionStatus.CONNECTED]

    again = await next_agent_turn(session, session.send_text("still there?"))
    assert await again.wait_ended(TIMEOUT)
    assert again.text == "You said: still there?"
    assert server.recordings[-1].conversation_id == conversation_id


async def test_resume_gives_up_on_401(start_server: StartServer, make_session: MakeSession) -> None:
    """A resume the authorize endpoint refuses ends in the error status, once."""
    server = await start_server(api_key="sk_right")
    session, _ = await make_session(server, api_key="sk_right")
    failed = session.expect(lambda e: isinstance(e, SessionFailed), across_drops=True)
    object.__setattr__(session._authorizer, "api_key", "sk_wrong")  # the key was revoked
    await server.drop_connections()
    event = await failed.wait(TIMEOUT)
    assert isinstance(event, SessionFailed)
    assert isinstance(event.error, InvalidApiKeyError)
    assert session.status is SessionStatus.ERROR


async def test_bad_frames_are_survived(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Garbage, unknown types, missing fields, binary frames: logged, and the next turn works."""
    server = await start_server()
    session, _ = await make_session(server)
    for raw in [
        "not json at all",
        "[]",
        '{"type": "speech_send_tracking", "x": 1}',
        '{"type": "response.text"}',
        '{"type": "response.audio", "content": "!!!"}',
        '{"type": "turn.start"}',
        '{"type": "response.end", "turn_id": null}',
    ]:
        await server.send_raw(raw)
    turn = await next_agent_turn(session, session.send_text("after the garbage"))
    assert await turn.wait_ended(TIMEOUT)
    assert turn.text == "You said: after the garbage"
    assert session.status is SessionStatus.CONNECTED


async def test_missing_turn_ids_are_tolerated(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Messages without turn_id belong to the open agent turn."""
    server = await start_server()
    session, _ = await make_session(server)
    waiter = session.expect(lambda e: isinstance(e, AgentTurnStarted))
    await server.send_raw('{"type": "turn.start", "role": "assistant"}')
    turn = (await waiter.wait(TIMEOUT)).turn  # type: ignore[union-attr]
    await server.send_raw('{"type": "response.text", "content": "Hi"}')
    pcm = base64.b64encode(bytes(320)).decode()
    await server.send_raw(json.dumps({"type": "response.audio", "content": pcm}))
    await server.send_raw(json.dumps({"type": "response.audio", "content": ""}))
    await server.send_raw('{"type": "response.end"}')
    assert await turn.wait_ended(TIMEOUT)
    assert (turn.turn_id, turn.text, await play(turn)) == (None, "Hi", bytes(320))


async def test_connect_failures(start_server: StartServer, make_session: MakeSession) -> None:
    """Wrong key, wrong WebSocket URL, unknown agent: typed errors and the error status."""
    server = await start_server(api_key="sk_right")
    session, _ = await make_session(server, connect=False, api_key="sk_nope")
    with pytest.raises(InvalidApiKeyError):
        await session.connect()
    assert session.status is SessionStatus.ERROR

    wrong_ws, _ = await make_session(server, connect=False, api_key="sk_right")
    wrong_ws._websocket_url = server.base_url + "/no/such/socket"
    with pytest.raises(LayercodeConnectionError, match="HTTP 404"):
        await wrong_ws.connect()
    assert wrong_ws.status is SessionStatus.ERROR


async def test_disconnect_is_clean_and_idempotent(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """disconnect() closes the socket, ends what was in flight, and can be called twice."""
    server = await start_server(pace_audio=True)
    session, events = await make_session(server)
    turn = await next_agent_turn(session, session.send_text("w" * 100))
    await session.disconnect()
    await session.disconnect()
    assert turn.ended
    assert session.status is SessionStatus.DISCONNECTED
    assert StatusChanged(SessionStatus.DISCONNECTED) in events
    await until(lambda: server.recordings[-1].closed_at is not None)


async def test_two_sessions_do_not_mix(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """Two conversations at once each get their own answers."""
    server = await start_server()
    (one, _), (two, _) = await make_session(server), await make_session(server)
    turn_one, turn_two = await asyncio.gather(
        next_agent_turn(one, speak(one, tone(0.5))),
        next_agent_turn(two, speak(two, tone(1.0))),
    )
    await asyncio.gather(play(turn_one), play(turn_two))
    assert turn_one.text == "You said: heard 500 ms of audio"
    assert turn_two.text == "You said: heard 1000 ms of audio"
    assert one.conversation_id != two.conversation_id


async def test_agent_speaks_first_with_a_welcome(
    start_server: StartServer, make_session: MakeSession
) -> None:
    """A session.start reply with content makes an agent turn before the user speaks."""
    from local_agent_server import EchoResponder

    server = await start_server(backend=EchoResponder(welcome="Hello! How can I help?"))
    session, events = await make_session(server, connect=False)
    waiter = session.expect(lambda e: isinstance(e, AgentTurnStarted))
    await session.connect()
    turn = (await waiter.wait(TIMEOUT)).turn  # type: ignore[union-attr]
    audio = await play(turn)
    assert turn.text == "Hello! How can I help?"
    assert len(audio) == agent_audio_bytes(turn.text)
    assert any(isinstance(e, TurnStart) and e.role == "assistant" for e in events)


async def test_tones_differ_per_turn(start_server: StartServer, make_session: MakeSession) -> None:
    """The same reply text on two turns gives distinguishable audio (per-turn frequency)."""
    server = await start_server(tts=ToneTextToSpeech())
    session, _ = await make_session(server)
    first = await next_agent_turn(session, session.send_text("same"))
    a = await play(first)
    second = await next_agent_turn(session, session.send_text("same"))
    b = await play(second)
    assert first.text == second.text
    assert len(a) == len(b)
    assert a != b
