"""The browser run's scenarios, played by the project's Python client (`LayercodeSession`).

Same servers, same marks, same authorize proxy as the browser run (harness.PLAN), so the two
traces can be compared scenario by scenario. Where the browser has a microphone that never
stops, Home Assistant hands the client 16 kHz audio in 10 ms chunks and says when speech
starts and ends (`begin_user_speech` / `end_user_speech`); the audio is the same kind of
signal as the browser's fake microphone: a faint noise floor, and speech-like syllables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
import time
from typing import Any

import aiohttp
import numpy as np

from custom_components.layercode.client import (
    AgentSpeakingChanged,
    AgentTurn,
    AgentTurnStarted,
    Authorizer,
    Connected,
    LayercodeSession,
    SessionEvent,
)
from custom_components.layercode.client.messages import ResponseData, TurnEnd

from .harness import (
    AGENT_ID,
    AUTOMATIC,
    DATA,
    INTERRUPT_HOLD_MS,
    LONG_TEXT,
    METADATA,
    MUTE_SPEAK_MS,
    PUSH_TO_TALK,
    PUSH_TO_TALK_HOLD_MS,
    TEXT,
    Run,
    Stack,
    local_stack,
)
from .speech import RATE, speech_like

TIMEOUT = 10.0
SETTLE = 0.2
"""After each scenario, as in the page: the last frames reach the server before the next mark."""
CHUNK = 320
"""10 ms of 16 kHz 16-bit audio, as Home Assistant's Assist pipeline hands it over."""
BEFORE_SPEECH = 1.5
"""Seconds of microphone audio before each user turn: more than the 10-frame pre-roll."""


def quiet(seconds: float) -> bytes:
    """The microphone's noise floor (-60 dBFS), as in the browser's fake microphone."""
    noise = np.random.default_rng(5).normal(0.0, 0.001 * 32767, int(seconds * RATE))
    return np.rint(noise).astype("<i2").tobytes()


def speech(seconds: float) -> bytes:
    """Speech-like audio at the same level as the browser's fake microphone."""
    signal = speech_like(seconds)[: int(seconds * RATE)] * 0.5 * 32767
    return np.rint(signal).astype("<i2").tobytes()


async def feed(session: LayercodeSession, pcm: bytes, *, realtime: bool = False) -> None:
    """Hand audio to the session in Home Assistant's 10 ms chunks, optionally in real time."""
    began = time.monotonic()
    for i in range(0, len(pcm), CHUNK):
        await session.send_audio(pcm[i : i + CHUNK])
        if realtime:
            await asyncio.sleep(max(0.0, began + (i + CHUNK) / (2 * RATE) - time.monotonic()))


def _is_agent_turn_end(event: SessionEvent) -> bool:
    return isinstance(event, TurnEnd) and event.role == "assistant"


class ClientScenarios:
    """Runs PLAN's steps with one `LayercodeSession` per mode."""

    def __init__(self, http: aiohttp.ClientSession, stack: Stack) -> None:
        self._http = http
        self._stack = stack
        self._session: LayercodeSession | None = None

    @property
    def session(self) -> LayercodeSession:
        assert self._session is not None
        return self._session

    def mark(self, mode: str, step: str) -> None:
        self._stack.page_app.mark(f"{mode}.{step}")

    async def connect(self, mode: str) -> None:
        if self._session is None:
            authorizer = Authorizer(self._stack.authorize_url(mode), AGENT_ID, metadata=METADATA)
            self._session = LayercodeSession(
                self._http,
                authorizer,
                websocket_url=self._stack.servers[mode].websocket_url,
                reconnect_delays=(0.05, 0.1, 0.2),
            )
        await self.session.connect()
        await asyncio.sleep(SETTLE)

    async def answered(self, user_input: Coroutine[Any, Any, None]) -> AgentTurn:
        """Run `user_input`, then play the agent turn that answers it to its turn.end."""
        session = self.session
        started = session.expect(lambda e: isinstance(e, AgentTurnStarted))
        ended = session.expect(_is_agent_turn_end)
        await user_input
        event = await started.wait(TIMEOUT)
        assert isinstance(event, AgentTurnStarted)
        await play(event.turn)
        await ended.wait(TIMEOUT)
        await asyncio.sleep(SETTLE)
        return event.turn

    async def speak(self, *parts: bytes, mute_after: int | None = None) -> None:
        """A user turn: `begin_user_speech`, the audio, `end_user_speech`.

        Before it, 1.5 s of the noise floor: the microphone before speech, kept as pre-roll
        (handed over at once). The speech comes in real time, as from a satellite. With
        `mute_after`, the user mutes after that many of `parts`.
        """
        session = self.session
        await feed(session, quiet(BEFORE_SPEECH))
        await session.begin_user_speech()
        for number, part in enumerate(parts):
            if number == mute_after:
                await session.set_muted(True)
            await feed(session, part, realtime=True)
        await session.end_user_speech()

    async def automatic(self) -> None:
        session = self.session
        self.mark(AUTOMATIC, "vad_turn")
        # 1.6 s of speech and the 1.4 s of quiet after which the SDK's VAD ends a turn
        await self.answered(self.speak(speech(1.6) + quiet(1.4)))

        self.mark(AUTOMATIC, "mute_speech")  # muted mid-speech: vad_end, then nothing
        await self.answered(self.speak(speech(MUTE_SPEAK_MS / 1000), speech(1.0), mute_after=1))

        self.mark(AUTOMATIC, "text")
        await self.answered(session.send_text(TEXT))

        self.mark(AUTOMATIC, "data")
        reply = session.expect(lambda e: isinstance(e, ResponseData))
        await session.send_data(DATA)
        await reply.wait(TIMEOUT)
        await asyncio.sleep(SETTLE)

        self.mark(AUTOMATIC, "disconnect")
        await session.disconnect()
        await asyncio.sleep(SETTLE)

    async def push_to_talk(self) -> None:
        session = self.session
        self.mark(PUSH_TO_TALK, "push_to_talk")
        await self.answered(self.speak(speech(PUSH_TO_TALK_HOLD_MS / 1000)))

        self.mark(PUSH_TO_TALK, "interrupt")
        started = session.expect(lambda e: isinstance(e, AgentTurnStarted))
        speaking = session.expect(lambda e: isinstance(e, AgentSpeakingChanged) and e.speaking)
        await session.send_text(LONG_TEXT)
        event = await started.wait(TIMEOUT)
        assert isinstance(event, AgentTurnStarted)
        player = asyncio.ensure_future(play(event.turn, realtime=True))
        await speaking.wait(TIMEOUT)
        await asyncio.sleep(0.8)
        # The press, 0.8 s into the answer: barge-in.
        await self.answered(self.speak(speech(INTERRUPT_HOLD_MS / 1000)))
        await player
        assert event.turn.interrupted

        self.mark(PUSH_TO_TALK, "mute")
        await session.set_muted(True)
        await self.answered(self.speak(speech(0.6)))
        await session.set_muted(False)

        self.mark(PUSH_TO_TALK, "disconnect")
        await session.disconnect()
        await asyncio.sleep(SETTLE)

        self.mark(PUSH_TO_TALK, "reconnect")
        await self.connect(PUSH_TO_TALK)

        self.mark(PUSH_TO_TALK, "drop")
        resumed = session.expect(
            lambda e: isinstance(e, Connected) and e.resumed, across_drops=True
        )
        await self._stack.servers[PUSH_TO_TALK].drop_connections()
        await resumed.wait(TIMEOUT)  # the client's own resume
        await asyncio.sleep(SETTLE)

    async def run(self) -> None:
        self.mark(AUTOMATIC, "connect")
        await self.connect(AUTOMATIC)
        await self.automatic()
        self._session = None
        self.mark(PUSH_TO_TALK, "connect")
        await self.connect(PUSH_TO_TALK)
        try:
            await self.push_to_talk()
        finally:
            await self.session.disconnect()


async def play(turn: AgentTurn, *, realtime: bool = False) -> bytes:
    """Read a turn's audio to its end, as a player would; stop at once if it is interrupted.

    `realtime` holds each chunk for as long as it sounds, so that the agent is still
    speaking when the user barges in.
    """
    played = bytearray()
    began = time.monotonic()
    async with asyncio.timeout(TIMEOUT):
        async for chunk in turn.audio_stream():
            played += chunk
            until = began + len(played) / (2 * RATE)
            while realtime and time.monotonic() < until and not turn.interrupted:
                await asyncio.sleep(0.01)
    return bytes(played)


async def run_python_client() -> Run:
    """Every scenario of PLAN with the Python client; leaves no task behind."""
    async with aiohttp.ClientSession() as http, local_stack(http) as stack:
        await ClientScenarios(http, stack).run()
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    assert not leftover, f"the client left tasks behind: {leftover}"
    return stack.run()
