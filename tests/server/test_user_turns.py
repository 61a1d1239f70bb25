"""User turns from each detector, typed text and data, with the deterministic engines."""

from __future__ import annotations

from local_agent_server import EnergySettings, ToneTextToSpeech
from local_agent_server.layercode_client import TurnTrigger

from ..conftest import StartServer
from .helpers import Client, Connect, heard, loud_frames, quiet_frames

PTT_START = {"type": "trigger.turn.start", "role": "user"}
PTT_END = {"type": "trigger.turn.end", "role": "user"}


def _vad(event: str) -> dict[str, str]:
    return {"type": "vad_events", "event": event}


async def _user_turn(client: Client) -> tuple[dict[str, object], dict[str, object]]:
    start = await client.until("turn.start", "user")
    transcript = await client.until("user.transcript")
    end = await client.until("turn.end", "user")
    assert start["turn_id"] == transcript["turn_id"] == end["turn_id"]
    return start, transcript


async def test_push_to_talk_turn(start_server: StartServer, connect: Connect) -> None:
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK)
    client = await connect(server)
    await client.send(PTT_START)
    await client.send_audio(loud_frames(10) + quiet_frames(8))  # pre-roll and speech alike
    await client.send(PTT_END)

    start, transcript = await _user_turn(client)
    assert transcript["content"] == heard(18)
    assert client.of_type("user.transcript.delta") == [
        {
            "type": "user.transcript.delta",
            "content": heard(18),
            "turn_id": start["turn_id"],
            "delta_counter": 0,
        }
    ]
    interims = client.of_type("user.transcript.interim_delta")
    assert interims
    assert interims[0]["content"] == heard(5)  # first interim at 0.5 s of audio
    assert {m["turn_id"] for m in interims} == {start["turn_id"]}

    turn = await client.agent_turn()
    reply = f"You said: {heard(18)}"
    assert turn["texts"] == [reply]
    assert len(turn["audio"]) == ToneTextToSpeech().pcm_bytes(reply) == len(reply) * 1600
    assert [m["type"] for m in turn["messages"]][:3] == [
        "turn.start",
        "response.text",
        "response.audio",
    ]
    audio_messages = [m for m in turn["messages"] if m["type"] == "response.audio"]
    assert [m["delta_id"] for m in audio_messages] == list(range(len(audio_messages)))
    assert all(len(m["content"]) == 4268 for m in audio_messages[:-1])  # 3200 B in base64

    message = server.webhook_backend.events[-1] if server.webhook_backend else {}
    assert message["type"] == "message"
    assert message["text"] == heard(18)
    assert message["turn_id"] == turn["turn_id"] != start["turn_id"]
    assert "interruption_context" not in message

    record = server.conversations[client.conversation_id].turns[-1]
    assert (record.user_text, record.agent_text) == (heard(18), reply)
    assert record.audio_bytes == len(turn["audio"])
    assert record.replay_finished
    assert not record.interrupted


async def test_automatic_turn_with_vad_events(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    await client.send(_vad("vad_start"))
    await client.send_audio(loud_frames(4) + quiet_frames(3))
    await client.send(_vad("vad_end"))
    _, transcript = await _user_turn(client)
    assert transcript["content"] == heard(7)
    assert (await client.agent_turn())["texts"] == [f"You said: {heard(7)}"]


async def test_lone_vad_end_makes_a_turn(start_server: StartServer, connect: Connect) -> None:
    server = await start_server(energy=EnergySettings(threshold=1.0))  # energy never fires
    client = await connect(server)
    await client.send_audio(loud_frames(6))
    await client.send(_vad("vad_end"))
    _, transcript = await _user_turn(client)
    assert transcript["content"] == heard(6)
    await client.agent_turn()
    await client.send(_vad("vad_end"))  # nothing since the last turn: no turn
    assert await client.quiet_for(0.2) == []


async def test_vad_events_ignored_in_push_to_talk(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK)
    client = await connect(server)
    await client.send(_vad("vad_start"))
    await client.send_audio(loud_frames(5))
    await client.send(_vad("vad_end"))
    await client.send(_vad("vad_model_failed"))
    await client.send_audio(loud_frames(5))
    assert await client.quiet_for(0.3) == []

    await client.send(PTT_START)
    await client.send(_vad("vad_start"))
    await client.send_audio(loud_frames(3))
    await client.send(_vad("vad_end"))  # must not end the push-to-talk turn
    await client.send_audio(loud_frames(2))
    await client.send(PTT_END)
    _, transcript = await _user_turn(client)
    assert transcript["content"] == heard(5)


async def test_push_to_talk_triggers_ignored_in_automatic(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(energy=EnergySettings(threshold=1.0))
    client = await connect(server)
    await client.send(PTT_START)
    await client.send(PTT_END)
    assert await client.quiet_for(0.2) == []


async def test_energy_detection_for_continuous_audio(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server()
    client = await connect(server)
    # 6 silent frames never start a turn; one loud frame alone is not speech either.
    await client.send_audio(quiet_frames(6) + loud_frames(1) + quiet_frames(2))
    assert await client.quiet_for(0.2) == []
    await client.send_audio(loud_frames(10) + quiet_frames(6))
    start = await client.until("turn.start", "user")
    assert client.of_type("user.transcript") == []  # 6 quiet frames = 672 ms < 700 ms
    await client.send_audio(quiet_frames(1) + quiet_frames(10))
    transcript = await client.until("user.transcript")
    assert (await client.until("turn.end", "user"))["turn_id"] == start["turn_id"]
    assert transcript["turn_id"] == start["turn_id"]
    assert transcript["content"] == heard(10 + 7)  # from the first loud frame to the end
    await client.agent_turn()


async def test_vad_model_failed_switches_to_energy(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(
        energy=EnergySettings(threshold=0.05, onset_frames=3, end_silence=0.3)
    )
    client = await connect(server)
    await client.send(_vad("vad_start"))
    await client.send(_vad("vad_end"))  # the client's VAD works: no energy detection
    await client.until("turn.end", "user")
    await client.agent_turn()
    await client.send_audio(loud_frames(4) + quiet_frames(4))
    assert await client.quiet_for(0.2) == []
    await client.send(_vad("vad_model_failed"))
    await client.send_audio(loud_frames(4) + quiet_frames(3))
    _, transcript = await _user_turn(client)
    assert transcript["content"] == heard(4 + 3)


async def test_typed_text(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    await client.send({"type": "client.response.text", "content": "Héllo there"})
    start, transcript = await _user_turn(client)
    assert transcript == {
        "type": "user.transcript",
        "content": "Héllo there",
        "turn_id": start["turn_id"],
    }
    assert client.of_type("user.transcript.delta") == []
    turn = await client.agent_turn()
    assert turn["texts"] == ["You said: Héllo there"]


async def test_typed_text_ends_an_open_speech_turn(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK)
    client = await connect(server)
    await client.send(PTT_START)
    await client.send_audio(loud_frames(3))
    start = await client.until("turn.start", "user")
    await client.send({"type": "client.response.text", "content": "typed instead"})
    transcript = await client.until("user.transcript")
    assert transcript["turn_id"] == start["turn_id"]
    assert transcript["content"] == "typed instead"
    await client.agent_turn()
    await client.send(PTT_END)  # the turn is already over
    assert await client.quiet_for(0.2) == []


async def test_data_round_trip(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    await client.send({"type": "client.response.data", "data": {"clicked": "ok", "n": 2}})
    reply = await client.until("response.data")
    assert reply["content"] == {"received": {"clicked": "ok", "n": 2}}
    assert server.webhook_backend is not None
    event = server.webhook_backend.events[-1]
    assert event["type"] == "data"
    assert event["data"] == {"clicked": "ok", "n": 2}
    assert event["turn_id"] == reply["turn_id"]
    assert event["session_id"] == server.recordings[-1].session_id
