"""The official browser SDK, `@layercode/js-sdk` in headless Chromium, against the local server.

One browser run (the `browser_run` fixture, about 30 s) plays every scenario of
harness.PLAN; each test checks one scenario from both ends: what the SDK reported through
its callbacks, and what the server received and did.
"""

from __future__ import annotations

import json
import statistics
from typing import Any
from urllib.parse import urlsplit

from local_agent_server.layercode_client import rms_level

from .browser import RUN_TIMEOUT, BrowserRun
from .harness import (
    AGENT_ID,
    AUTOMATIC,
    DATA,
    FRAME_BYTES,
    FRAME_MS,
    INTERRUPT_HOLD_MS,
    LONG_TEXT,
    METADATA,
    PREROLL_FRAMES,
    PUSH_TO_TALK,
    PUSH_TO_TALK_HOLD_MS,
    REPLAY_FINISHED,
    SCENARIOS,
    TEXT,
    audio_frames,
    collapse,
    installed_version,
    token,
)

TTS_MS_PER_CHAR = 50
"""The local server's deterministic speech: a tone 50 ms long per character of the text."""
SDK_REPORTED_VERSION = "2.7.0"
"""What `@layercode/js-sdk` 2.8.10 puts in `sdk_version`."""


def heard(frames: int) -> str:
    """The local server's transcript of `frames` full frames."""
    return f"heard {frames * FRAME_MS} ms of audio"


def tokens(run: BrowserRun, scenario: str, *, keep_vad: bool = True) -> list[str]:
    """The scenario's client messages as collapsed tokens (see harness.collapse)."""
    return collapse(
        token(m) for m in run.messages(scenario) if keep_vad or m["type"] != "vad_events"
    )


def values(run: BrowserRun, scenario: str, kind: str) -> list[Any]:
    """The values the SDK reported through one boolean callback, in order."""
    return [e["value"] for e in run.events(scenario, kind)]


def first(run: BrowserRun, scenario: str, predicate: Any) -> dict[str, Any]:
    """The first page log entry of the scenario that matches."""
    return next(e for e in run.events(scenario) if predicate(e))


def agent_texts(run: BrowserRun, scenario: str) -> list[str]:
    return [m["content"] for m in run.sdk_messages(scenario, "response.text")]


def test_the_run_completed_locally_and_in_bounds(browser_run: BrowserRun) -> None:
    """Every scenario ran, with nothing from a CDN, and the VAD really loaded."""
    run = browser_run
    assert not run.problems(), run.problems()
    assert [mark.name for mark in run.marks] == SCENARIOS
    assert run.page["consoleErrors"] == []
    assert run.seconds < RUN_TIMEOUT
    assert (
        installed_version("@layercode/js-sdk"),
        installed_version("@layercode/node-server-sdk"),
        installed_version("playwright-core"),
        installed_version("onnxruntime-web-1.23.2"),
    ) == ("2.8.10", "1.2.1", "1.65.1", "1.23.2")
    # Every request went to the page app or to assets.layercode.com, which the driver
    # answered from the page app (the worklet too, rewritten by an init script).
    hosts = {urlsplit(url).hostname for url in run.page["requests"]}
    assert hosts == {"127.0.0.1", "assets.layercode.com"}
    assets = {url.rpartition("/")[2] for url in run.page["requests"] if "assets." in url}
    assert {"silero_vad_v5.onnx", "ort-wasm-simd-threaded.mjs"} <= assets
    assert {"ort-wasm-simd-threaded.wasm"} <= assets
    # The VAD loads on a client's first connect(), even for push-to-talk (it is built
    # before the config is read); a push-to-talk reconnect builds none.
    loaded = {e["scenario"]: e["loaded"] for e in run.log if e["kind"] == "vad"}
    assert loaded == {
        f"{AUTOMATIC}.connect": True,
        f"{PUSH_TO_TALK}.connect": True,
        f"{PUSH_TO_TALK}.reconnect": False,
    }
    assert not [m for m in run.log if m["kind"] == "error"]


def test_authorize_and_connect(browser_run: BrowserRun) -> None:
    """The authorize body, the config the SDK requires, and one client.ready per socket."""
    run = browser_run
    body = {"agent_id": AGENT_ID, "metadata": METADATA, "sdk_version": SDK_REPORTED_VERSION}
    assert [(call.mode, call.body) for call in run.authorize_calls[:2]] == [
        (AUTOMATIC, body),
        (PUSH_TO_TALK, body),
    ]
    for mode in (AUTOMATIC, PUSH_TO_TALK):
        scenario = f"{mode}.connect"
        assert [e["status"] for e in run.events(scenario, "status")] == ["connecting", "connected"]
        (connected,) = run.events(scenario, "connect")
        assert connected["config"]["transcription"]["trigger"] == mode
        assert connected["conversationId"] in run.servers[mode].conversations
        assert run.messages(scenario) == [{"type": "client.ready"}]
    for server in run.servers.values():
        for recording in server.recordings:
            assert recording.messages[0] == {"type": "client.ready"}
            assert [m["type"] for m in recording.messages].count("client.ready") == 1


def test_automatic_turn_with_the_sdks_own_vad(browser_run: BrowserRun) -> None:
    """Silero VAD finds the synthetic speech: vad_start, pre-roll and live audio, vad_end."""
    run = browser_run
    scenario = f"{AUTOMATIC}.vad_turn"
    assert tokens(run, scenario) == [
        "vad_events:vad_start",
        "client.audio*",
        "vad_events:vad_end",
        REPLAY_FINISHED,
    ]
    audio = [f for f in run.frames(scenario) if f.message and f.message["type"] == "client.audio"]
    frames = audio_frames(f.message for f in audio if f.message)
    assert {len(frame) for frame in frames} == {FRAME_BYTES}
    assert len(frames) > PREROLL_FRAMES + 10  # the speech and the VAD's 1.4 s redemption
    # The last 10 frames from before vad_start go first, at once; then one every 112 ms,
    # which makes 896 16-bit samples per 112 ms: 8 kHz.
    times = [frame.at for frame in audio]
    assert times[PREROLL_FRAMES - 1] - times[0] < 0.05
    live = statistics.median(
        b - a for a, b in zip(times[PREROLL_FRAMES:], times[PREROLL_FRAMES + 1 :], strict=False)
    )
    assert abs(live - FRAME_MS / 1000) < 0.015
    # It is the fake microphone's audio: its noise floor first, then the speech.
    assert rms_level(frames[0]) < 0.01
    assert max(rms_level(frame) for frame in frames) > 0.05

    assert values(run, scenario, "userSpeaking") == [True, False]
    assert values(run, scenario, "agentSpeaking") == [True, False]
    (transcript,) = run.sdk_messages(scenario, "user.transcript")
    assert transcript["content"] == heard(len(frames))
    # The transcript as it grew: interim deltas, then the stable delta, then the final text.
    user = [m for m in run.sdk_messages(scenario) if m["type"].startswith("user.transcript")]
    assert [m["type"] for m in user][-2:] == ["user.transcript.delta", "user.transcript"]
    assert {m["type"] for m in user[:-2]} == {"user.transcript.interim_delta"}
    assert {(m["turn_id"], m["delta_counter"]) for m in user[:-1]} == {(transcript["turn_id"], 0)}
    assert agent_texts(run, scenario) == [f"You said: {heard(len(frames))}"]
    amplitudes = run.page["amplitudes"][scenario]
    assert amplitudes["user"]["max"] > 0.05
    assert amplitudes["agent"]["max"] > 0.05
    turn = next(t for c in run.servers[AUTOMATIC].conversations.values() for t in c.turns)
    assert (turn.user_text, turn.replay_finished, turn.interrupted) == (
        heard(len(frames)),
        True,
        False,
    )


def test_agent_audio_is_played_to_its_end(browser_run: BrowserRun) -> None:
    """replay_finished comes when the reply has sounded, and only then the turn ends."""
    run = browser_run
    for scenario in (
        f"{AUTOMATIC}.vad_turn",
        f"{AUTOMATIC}.mute_speech",
        f"{AUTOMATIC}.text",
        f"{PUSH_TO_TALK}.push_to_talk",
        f"{PUSH_TO_TALK}.mute",
    ):
        (text,) = agent_texts(run, scenario)
        seconds = len(text) * TTS_MS_PER_CHAR / 1000
        speaking = first(run, scenario, lambda e: e["kind"] == "agentSpeaking" and e["value"])
        replayed = first(
            run,
            scenario,
            lambda e: e["kind"] == "message" and e["message"]["type"] == REPLAY_FINISHED,
        )
        assert replayed["message"] == {
            "type": REPLAY_FINISHED,
            "reason": "completed",
            "agentSpeaking": False,
        }
        played = (replayed["t"] - speaking["t"]) / 1000
        assert seconds * 0.9 < played < seconds + 1.0, (scenario, played, seconds)
        ended = first(
            run,
            scenario,
            lambda e: (
                e["kind"] == "message"
                and e["message"]["type"] == "turn.end"
                and e["message"]["role"] == "assistant"
            ),
        )
        assert ended["t"] >= replayed["t"]
        sent = [m for m in run.messages(scenario) if m["type"] == REPLAY_FINISHED]
        assert sent and all(m == {"type": REPLAY_FINISHED, "reason": "completed"} for m in sent)


def test_mute_mid_speech_closes_the_turn(browser_run: BrowserRun) -> None:
    """Muted while speaking (automatic): a synthetic vad_end, then not a single frame."""
    run = browser_run
    scenario = f"{AUTOMATIC}.mute_speech"
    assert tokens(run, scenario) == [
        "vad_events:vad_start",
        "client.audio*",
        "vad_events:vad_end",
        REPLAY_FINISHED,
    ]
    frames = audio_frames(run.messages(scenario))
    (transcript,) = run.sdk_messages(scenario, "user.transcript")
    assert transcript["content"] == heard(len(frames))
    kinds = [
        e["kind"] if e["kind"] != "message" else e["message"]["type"]
        for e in run.events(scenario)
        if e["kind"] in ("muted", "userSpeaking", "message")
    ]
    muted = kinds.index("muted")
    assert kinds[muted : muted + 3] == ["muted", "userSpeaking", "vad_events"]
    assert values(run, scenario, "muted") == [True]
    # Still muted until it disconnects: no audio in the scenarios that follow.
    for later in ("text", "data", "disconnect"):
        assert audio_frames(run.messages(f"{AUTOMATIC}.{later}")) == []


def test_typed_text(browser_run: BrowserRun) -> None:
    """client.response.text: the transcript is the text, the agent answers and is heard."""
    run = browser_run
    scenario = f"{AUTOMATIC}.text"
    assert run.messages(scenario)[0] == {"type": "client.response.text", "content": TEXT}
    assert tokens(run, scenario) == ["client.response.text", REPLAY_FINISHED]
    # JSON.stringify: compact, non-ASCII as UTF-8.
    raw = run.frames(scenario)[0].raw
    assert raw == json.dumps(run.messages(scenario)[0], separators=(",", ":"), ensure_ascii=False)
    assert [m["content"] for m in run.sdk_messages(scenario, "user.transcript")] == [TEXT]
    assert agent_texts(run, scenario) == [f"You said: {TEXT}"]
    assert run.webhook_events(AUTOMATIC, "message")[-1]["text"] == TEXT


def test_data_message(browser_run: BrowserRun) -> None:
    """client.response.data reaches the backend; its reply comes back to onDataMessage."""
    run = browser_run
    scenario = f"{AUTOMATIC}.data"
    assert run.messages(scenario) == [{"type": "client.response.data", "data": DATA}]
    (event,) = run.webhook_events(AUTOMATIC, "data")
    assert event["data"] == DATA
    (reply,) = run.events(scenario, "data")
    assert reply["message"] == {
        "type": "response.data",
        "content": {"received": DATA},
        "turn_id": event["turn_id"],
        "agentSpeaking": False,
    }
    assert run.events(scenario, "message") == []  # data does not touch the turn


def test_push_to_talk_turn(browser_run: BrowserRun) -> None:
    """Nothing while idle; the press sends the trigger, the pre-roll and live audio."""
    run = browser_run
    scenario = f"{PUSH_TO_TALK}.push_to_talk"
    messages = [m for m in run.messages(scenario) if m["type"] != "vad_events"]
    assert messages[0] == {"type": "trigger.turn.start", "role": "user"}  # idle: no audio
    assert tokens(run, scenario, keep_vad=False) == [
        "trigger.turn.start",
        "client.audio*",
        "trigger.turn.end",
        REPLAY_FINISHED,
    ]
    assert {"type": "trigger.turn.end", "role": "user"} in messages
    frames = audio_frames(messages)
    assert {len(frame) for frame in frames} == {FRAME_BYTES}
    live = PUSH_TO_TALK_HOLD_MS / FRAME_MS
    assert PREROLL_FRAMES + live - 2 <= len(frames) <= PREROLL_FRAMES + live + 2
    (transcript,) = run.sdk_messages(scenario, "user.transcript")
    assert transcript["content"] == heard(len(frames))
    # (Its VAD may flip userSpeaking too, in push-to-talk as well: look at press and release.)
    assert [
        e["userSpeaking"] for e in run.events(scenario) if e["kind"] in ("pressed", "released")
    ] == [True, False]


def test_barge_in_stops_the_agent(browser_run: BrowserRun) -> None:
    """A press while the agent speaks: playback stops, replay_finished, the turn is dropped."""
    run = browser_run
    scenario = f"{PUSH_TO_TALK}.interrupt"
    assert tokens(run, scenario, keep_vad=False) == [
        "client.response.text",
        "trigger.turn.start",
        REPLAY_FINISHED,
        "client.audio*",
        "trigger.turn.end",
        REPLAY_FINISHED,
    ]
    frames = [f for f in run.frames(scenario) if f.message and f.message["type"] != "vad_events"]
    press = next(i for i, f in enumerate(frames) if token(f.message or {}) == "trigger.turn.start")
    replay = next(i for i, f in enumerate(frames) if token(f.message or {}) == REPLAY_FINISHED)
    assert 0 <= frames[replay].at - frames[press].at < 0.1  # the player stops at once
    (pressed,) = run.events(scenario, "press")
    (after,) = run.events(scenario, "pressed")
    assert (pressed["agentSpeaking"], after["agentSpeaking"]) == (True, False)

    long_turn, answer = [
        t for c in run.servers[PUSH_TO_TALK].conversations.values() for t in c.turns
    ][1:3]
    assert (long_turn.user_text, long_turn.interrupted) == (LONG_TEXT, True)
    turn_ends = [m["turn_id"] for m in run.sdk_messages(scenario, "turn.end")]
    assert long_turn.agent_turn_id not in turn_ends
    live = INTERRUPT_HOLD_MS / FRAME_MS
    spoken = audio_frames(f.message for f in frames[press:] if f.message)
    assert PREROLL_FRAMES + live - 2 <= len(spoken) <= PREROLL_FRAMES + live + 2
    assert answer.user_text == heard(len(spoken))
    (message,) = [
        e
        for e in run.webhook_events(PUSH_TO_TALK, "message")
        if e["turn_id"] == answer.agent_turn_id
    ]
    context = message["interruption_context"]
    words = len(f"You said: {LONG_TEXT}".split())
    assert context["previous_turn_interrupted"] is True
    assert context["assistant_turn_id"] == long_turn.agent_turn_id
    assert 0 < context["words_heard"] < words


def test_sdk_vad_events_in_push_to_talk_are_ignored(browser_run: BrowserRun) -> None:
    """The SDK's VAD also runs in push-to-talk and sends vad_events: no turn comes of them."""
    run = browser_run
    sent = [
        m
        for scenario in SCENARIOS
        if scenario.startswith(PUSH_TO_TALK)
        for m in run.messages(scenario)
        if m["type"] == "vad_events"
    ]
    assert sent  # the fake microphone's speech (it restarts at each connect) set it off
    pressed = audio_frames(run.messages(f"{PUSH_TO_TALK}.push_to_talk"))
    interrupt = run.messages(f"{PUSH_TO_TALK}.interrupt")
    press = interrupt.index({"type": "trigger.turn.start", "role": "user"})
    turns = [t for c in run.servers[PUSH_TO_TALK].conversations.values() for t in c.turns]
    assert [t.user_text for t in turns] == [
        heard(len(pressed)),
        LONG_TEXT,
        heard(len(audio_frames(interrupt[press:]))),
        heard(0),
    ]


def test_mute_in_push_to_talk(browser_run: BrowserRun) -> None:
    """Muted: the press and the release still go out, with no audio at all."""
    run = browser_run
    scenario = f"{PUSH_TO_TALK}.mute"
    assert tokens(run, scenario, keep_vad=False) == [
        "trigger.turn.start",
        "trigger.turn.end",
        REPLAY_FINISHED,
    ]
    assert values(run, scenario, "muted") == [True, False]
    assert [m["content"] for m in run.sdk_messages(scenario, "user.transcript")] == [heard(0)]


def test_disconnect_reconnect_and_drop(browser_run: BrowserRun) -> None:
    """disconnect() closes at once; connect() again resumes the conversation; no own resume."""
    run = browser_run
    for mode in (AUTOMATIC, PUSH_TO_TALK):
        scenario = f"{mode}.disconnect"
        assert run.messages(scenario) == []
        assert [e["status"] for e in run.events(scenario, "status")] == ["disconnected"]
        assert len(run.events(scenario, "disconnect")) == 1
        mark = next(m.at for m in run.marks if m.name == scenario)
        closed = run.servers[mode].recordings[0].closed_at
        assert closed is not None
        assert 0 < closed - mark < 1.0
    ended = run.webhook_events(AUTOMATIC, "session.end")
    assert len(ended) == 1
    assert "turn_id" not in ended[0]
    assert isinstance(ended[0]["duration"], int)
    assert [set(item) for item in ended[0]["transcript"]] == [{"role", "text", "timestamp"}] * 6

    # connect() again on the same client: the same conversation, a new session.
    (call,) = [c for c in run.authorize_calls if "conversation_id" in c.body]
    first_connect, again = run.servers[PUSH_TO_TALK].recordings
    assert call.body == {
        "agent_id": AGENT_ID,
        "metadata": METADATA,
        "sdk_version": SDK_REPORTED_VERSION,
        "conversation_id": first_connect.conversation_id,
    }
    assert again.conversation_id == first_connect.conversation_id
    assert again.session_id != first_connect.session_id
    assert run.messages(f"{PUSH_TO_TALK}.reconnect") == [{"type": "client.ready"}]

    # The server drops the socket: the SDK reports it and does not come back by itself.
    scenario = f"{PUSH_TO_TALK}.drop"
    assert [e["status"] for e in run.events(scenario, "status")] == ["disconnected"]
    assert [e["status"] for e in run.events(scenario, "after_drop")] == ["disconnected"]
    assert len(run.servers[PUSH_TO_TALK].recordings) == 2
    assert len(run.authorize_calls) == 3
