"""The Python client (`LayercodeSession`) held to the browser SDK's behaviour on the wire.

The same scenarios (harness.PLAN) run once with `@layercode/js-sdk` in Chromium
(`browser_run`) and once with the Python client (`client_run`), against the same kind of
local servers, which record every frame each client sends. Per scenario the two traces must
have the same message types in the same order (runs of `client.audio` collapsed, see
harness.collapse), the same fields per type with the same values, and audio frames of the
same format and size.

The differences that are meant to be there are listed in DELIBERATE_DIFFERENCES, with the
reason; the tests check each of them, so that the list stays true. Even the JSON text of each
frame is the same.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_agent_server.layercode_client import rms_level

from .browser import BrowserRun
from .client_run import BEFORE_SPEECH
from .harness import (
    AUDIO,
    FRAME_BYTES,
    INTERRUPT_HOLD_MS,
    PREROLL_FRAMES,
    PUSH_TO_TALK,
    PUSH_TO_TALK_HOLD_MS,
    REPLAY_FINISHED,
    SCENARIOS,
    Run,
    audio_frames,
    collapse,
    token,
)

DELIBERATE_DIFFERENCES = {
    "replay_finished count": (
        "The SDK sends replay_finished each time its playback buffer runs dry: one or more per "
        "agent turn, and one when an interruption stops playback. The client sends exactly one "
        "per agent turn, when its reader has played the turn to its end or stopped at an "
        "interruption. The server counts the first one after a turn's audio and ignores extras."
    ),
    "vad_events in push-to-talk": (
        "The SDK builds its Silero VAD before it reads the config, so it runs in push-to-talk "
        "too and sends vad_events there (the server ignores them). The client sends only "
        "trigger.turn.start/end in push-to-talk."
    ),
    "who finds speech": (
        "The SDK's vad_start/vad_end come from its own VAD (a little after speech begins, "
        "about 1.5 s after it ends); the client's come from Home Assistant, which tells it when "
        "speech starts and ends (begin_user_speech / end_user_speech). Same messages, same "
        "order; how many frames a turn holds follows whoever decided."
    ),
    "last frame of a user turn": (
        "When a user turn ends, the client sends what it holds of the next frame (fewer than "
        "1792 bytes) before trigger.turn.end / vad_end, so the end of the last word is not "
        "lost; the SDK only sends whole 1792-byte frames (its remainder goes into the next "
        "frame, which is pre-roll). Tolerance: every frame 1792 bytes, except in the client's "
        "trace at most one shorter frame right before the end of each user turn."
    ),
    "resume": (
        "After the server drops the socket the client resumes by itself: it authorizes again "
        "with the same conversation_id and sends client.ready on the new socket. The SDK only "
        "reports the disconnect; when the page calls connect() again it authorizes with the "
        "conversation_id just the same (checked in the reconnect scenario)."
    ),
}
"""Meant to be there; each is checked below."""


def sdk_messages(run: BrowserRun, scenario: str) -> list[dict[str, Any]]:
    """The SDK's messages, without its VAD's events in push-to-talk."""
    messages = run.messages(scenario)
    if scenario.startswith(PUSH_TO_TALK):  # deliberate: "vad_events in push-to-talk"
        messages = [m for m in messages if m["type"] != "vad_events"]
    return messages


def sdk_tokens(run: BrowserRun, scenario: str) -> list[str]:
    return collapse(token(m) for m in sdk_messages(run, scenario))


def client_tokens(run: Run, scenario: str) -> list[str]:
    return collapse(token(m) for m in run.messages(scenario))


def user_turns(messages: list[dict[str, Any]]) -> list[list[bytes]]:
    """The audio frames of each user turn, in order (pre-roll included)."""
    turns: list[list[bytes]] = []
    current: list[bytes] | None = None
    for message in messages:
        kind = token(message)
        if kind in ("trigger.turn.start", "vad_events:vad_start"):
            current = []
        elif kind in ("trigger.turn.end", "vad_events:vad_end") and current is not None:
            turns.append(current)
            current = None
        elif kind == AUDIO and current is not None:
            current.extend(audio_frames([message]))
    return turns


def without_content(message: dict[str, Any]) -> dict[str, Any]:
    """A message with the fields that carry user content blanked, to compare the rest."""
    return {k: "<content>" if k in ("content", "data") else v for k, v in message.items()}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_messages_in_the_same_order(
    browser_run: BrowserRun, client_run: Run, scenario: str
) -> None:
    """Per scenario: the same message types in the same order."""
    assert not browser_run.problems(), browser_run.problems()
    sdk, client = sdk_tokens(browser_run, scenario), client_tokens(client_run, scenario)
    if scenario == f"{PUSH_TO_TALK}.drop":  # deliberate: "resume"
        assert (sdk, client) == ([], ["client.ready"])
        return
    assert client == sdk


def test_same_fields_and_values_per_type(browser_run: BrowserRun, client_run: Run) -> None:
    """Every message type has the same fields, and the same values outside user content."""

    def shapes(messages: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for scenario_messages in messages.values():
            for message in scenario_messages:
                found.setdefault(message["type"], set()).add(
                    json.dumps(without_content(message), sort_keys=True)
                )
        return found

    sdk = shapes({s: sdk_messages(browser_run, s) for s in SCENARIOS})
    client = shapes({s: client_run.messages(s) for s in SCENARIOS})
    assert client == sdk
    assert set(sdk) == {
        "client.ready",
        "client.audio",
        "vad_events",
        "trigger.turn.start",
        "trigger.turn.end",
        "trigger.response.audio.replay_finished",
        "client.response.text",
        "client.response.data",
    }


def test_same_text_and_data(browser_run: BrowserRun, client_run: Run) -> None:
    """Typed text and data go out unchanged, non-ASCII included."""
    for scenario in SCENARIOS:
        for kind in ("client.response.text", "client.response.data"):
            sdk = [m for m in browser_run.messages(scenario) if m["type"] == kind]
            client = [m for m in client_run.messages(scenario) if m["type"] == kind]
            assert client == sdk


def test_audio_frames_of_the_same_format_and_size(browser_run: BrowserRun, client_run: Run) -> None:
    """1792-byte frames of 16-bit PCM at 8 kHz, each user turn opening with a 10-frame pre-roll.

    Tolerance ("last frame of a user turn"): the client may end a user turn with one shorter
    frame; the SDK never does. Frame counts of the same speech differ by at most 2.
    """
    shorter = 0
    for scenario in SCENARIOS:
        sdk_scenario = sdk_messages(browser_run, scenario)
        client_scenario = client_run.messages(scenario)
        sdk_turns, client_turns = user_turns(sdk_scenario), user_turns(client_scenario)
        assert len(client_turns) == len(sdk_turns), scenario
        for sdk, client in zip(sdk_turns, client_turns, strict=True):
            assert {len(frame) for frame in sdk} <= {FRAME_BYTES}
            assert {len(frame) for frame in client[:-1]} <= {FRAME_BYTES}
            for frame in client[-1:]:
                assert 0 < len(frame) <= FRAME_BYTES and len(frame) % 2 == 0
                shorter += len(frame) < FRAME_BYTES
            if sdk and not scenario.endswith("vad_turn"):  # the same speech, as long
                assert abs(len(client) - len(sdk)) <= 2, (scenario, len(client), len(sdk))
        # No audio outside user turns, in either.
        for messages in (client_scenario, sdk_scenario):
            inside = sum(len(turn) for turn in user_turns(messages))
            assert len(audio_frames(messages)) == inside, scenario
    assert shorter  # the difference is real

    # 8 kHz 16-bit: the client's 1.5 s of 16 kHz audio before the press leaves 10 whole
    # frames of pre-roll and the start of the next; each second held adds 16000 bytes. (The
    # SDK's rate shows in its timing: test_browser_sdk checks one frame per 112 ms.)
    partial = int(BEFORE_SPEECH * 16000) % FRAME_BYTES
    for scenario, hold_ms in (
        (f"{PUSH_TO_TALK}.push_to_talk", PUSH_TO_TALK_HOLD_MS),
        (f"{PUSH_TO_TALK}.interrupt", INTERRUPT_HOLD_MS),
    ):
        (turn,) = user_turns(client_run.messages(scenario))
        assert sum(map(len, turn)) == PREROLL_FRAMES * FRAME_BYTES + partial + 16 * hold_ms


def test_who_finds_speech(browser_run: BrowserRun, client_run: Run) -> None:
    """Deliberate ("who finds speech"): the SDK's VAD sends vad_start once it has heard some
    speech, so speech may already be in its pre-roll; Home Assistant says when speech begins.

    The first frame that holds speech (above the noise floor): for the client the first one
    after the 10 pre-roll frames; for the SDK that one or up to 4 frames (450 ms) earlier.
    """
    for run, earliest in ((browser_run, PREROLL_FRAMES - 4), (client_run, PREROLL_FRAMES)):
        for scenario in ("automatic.vad_turn", "automatic.mute_speech"):
            (turn,) = user_turns(run.messages(scenario))
            speech = next(i for i, frame in enumerate(turn) if rms_level(frame) > 0.01)
            assert earliest <= speech <= PREROLL_FRAMES, (scenario, speech)


def test_vad_events_only_from_the_sdk_in_push_to_talk(
    browser_run: BrowserRun, client_run: Run
) -> None:
    """Deliberate ("vad_events in push-to-talk")."""
    push_to_talk = [s for s in SCENARIOS if s.startswith(PUSH_TO_TALK)]
    sdk = [m for s in push_to_talk for m in browser_run.messages(s) if m["type"] == "vad_events"]
    client = [m for s in push_to_talk for m in client_run.messages(s) if m["type"] == "vad_events"]
    assert sdk
    assert client == []


def test_authorize_requests_match(browser_run: BrowserRun, client_run: Run) -> None:
    """The same authorize bodies, conversation_id on a reconnect included."""

    def bodies(run: Run) -> list[tuple[str, list[str], str]]:
        return [
            (call.mode, sorted(call.body), call.body["sdk_version"]) for call in run.authorize_calls
        ]

    sdk, client = bodies(browser_run), bodies(client_run)
    assert client[:3] == sdk
    # deliberate: "resume": the client's own reconnect after the drop is the same request
    assert client[3] == sdk[2]
    assert client_run.authorize_calls[3].body == client_run.authorize_calls[2].body
    for run in (browser_run, client_run):
        for call in run.authorize_calls:
            assert call.body["metadata"] == {"user": "conformance"}


def test_replay_finished_per_agent_turn(browser_run: BrowserRun, client_run: Run) -> None:
    """Deliberate ("replay_finished count"): one per turn from the client, from the SDK one
    or more."""
    answered = ("vad_turn", "mute_speech", "text", "push_to_talk", "interrupt", "mute")
    turns_with_audio = {
        scenario: 2 if scenario.endswith("interrupt") else 1  # interrupted, then the answer
        for scenario in SCENARIOS
        if scenario.partition(".")[2] in answered
    }
    for scenario in SCENARIOS:
        expected = turns_with_audio.get(scenario, 0)
        client = [m for m in client_run.messages(scenario) if m["type"] == REPLAY_FINISHED]
        sdk = [m for m in browser_run.messages(scenario) if m["type"] == REPLAY_FINISHED]
        assert len(client) == expected, scenario
        assert len(sdk) >= expected, scenario
        assert bool(sdk) == bool(expected)


def test_same_json_text(browser_run: BrowserRun, client_run: Run) -> None:
    """Both send compact JSON with non-ASCII as UTF-8 (JSON.stringify's output)."""
    for run in (browser_run, client_run):
        for scenario in SCENARIOS:
            for frame in run.frames(scenario):
                assert frame.message is not None
                compact = json.dumps(frame.message, separators=(",", ":"), ensure_ascii=False)
                assert frame.raw == compact
    (text,) = [
        f
        for f in client_run.frames("automatic.text")
        if f.message and f.message["type"] == "client.response.text"
    ]
    assert isinstance(text.raw, str)
    assert "é" in text.raw
    assert "\\u00e9" not in text.raw
