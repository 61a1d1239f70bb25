"""A scripted conversation between the project's client and a local agent server.

`python -m local_agent_server.demo` starts the server on 127.0.0.1, connects the client, speaks
(synthetic speech: a tone stands in for a voice) and types a few turns, and prints each turn
with its timings: `script/develop --client-demo` runs it, no Home Assistant involved.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
import logging
import time

import aiohttp
import numpy as np

from custom_components.layercode.client import (
    AgentTurn,
    AgentTurnStarted,
    Authorizer,
    LayercodeSession,
    TurnTrigger,
)
from custom_components.layercode.client.audio import AGENT_RATE, MIC_RATE, duration_seconds
from custom_components.layercode.client.messages import UserTranscript

from .backend import EchoResponder
from .server import LocalAgentServer

CHUNK_BYTES = MIC_RATE // 100 * 2
"""Home Assistant hands STT entities 10 ms chunks."""
TIMEOUT = 30.0


def synthetic_speech(seconds: float) -> bytes:
    """A voice stand-in: a 200 Hz buzz with harmonics, amplitude-modulated like syllables."""
    t = np.arange(int(seconds * MIC_RATE)) / MIC_RATE
    voice = sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6))
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (voice * syllables * 5000).astype("<i2").tobytes()


@dataclass
class TurnTimes:
    """Monotonic times of one turn, from the end of the user's input."""

    ended: float
    transcript: float | None = None
    first_audio: float | None = None
    finished: float | None = None

    def line(self) -> str:
        """`transcript +12 ms, first audio +30 ms, played +1.2 s`."""

        def since(moment: float | None) -> str:
            return "-" if moment is None else f"+{(moment - self.ended) * 1000:.0f} ms"

        return (
            f"transcript {since(self.transcript)}, first agent audio {since(self.first_audio)}, "
            f"turn over {since(self.finished)}"
        )


async def _turn(session: LayercodeSession, label: str, action: Awaitable[None]) -> None:
    """Run one user turn and print what the agent answered, with timings."""
    started = session.expect(lambda event: isinstance(event, AgentTurnStarted))
    transcript = session.expect(lambda event: isinstance(event, UserTranscript))
    await action
    times = TurnTimes(ended=time.monotonic())
    heard = await transcript.wait(TIMEOUT)
    times.transcript = time.monotonic()
    event = await started.wait(TIMEOUT)
    assert isinstance(event, AgentTurnStarted)
    turn: AgentTurn = event.turn
    audio = bytearray()
    async with asyncio.timeout(TIMEOUT):
        async for chunk in turn.audio_stream():
            if times.first_audio is None:
                times.first_audio = time.monotonic()
            audio += chunk
    times.finished = time.monotonic()
    assert isinstance(heard, UserTranscript)
    print(f"{label}")
    print(f"  agent heard:  {heard.content!r}")
    print(f"  agent said:   {turn.text!r} ({duration_seconds(bytes(audio), AGENT_RATE):.2f} s)")
    print(f"  timings:      {times.line()}")


async def _speak(session: LayercodeSession, seconds: float) -> None:
    pcm = synthetic_speech(seconds)
    await session.begin_user_speech()
    for i in range(0, len(pcm), CHUNK_BYTES):
        await session.send_audio(pcm[i : i + CHUNK_BYTES])
    await session.end_user_speech()


async def run(trigger: TurnTrigger) -> None:
    """Start a server, hold the scripted conversation, stop everything."""
    server = LocalAgentServer(
        agent_id="ag_demo", trigger=trigger, backend=EchoResponder(welcome="Hello! Talk to me.")
    )
    await server.start()
    print(f"Local agent server: {server.authorize_url} ({trigger.value} turn-taking)")
    try:
        async with aiohttp.ClientSession() as http:
            session = LayercodeSession(
                http,
                Authorizer(server.authorize_url, server.agent_id),
                websocket_url=server.websocket_url,
            )
            welcome = session.expect(lambda event: isinstance(event, AgentTurnStarted))
            connect_start = time.monotonic()
            await session.connect()
            print(f"Connected in {(time.monotonic() - connect_start) * 1000:.0f} ms")
            greeting = await welcome.wait(TIMEOUT)
            assert isinstance(greeting, AgentTurnStarted)
            async for _ in greeting.turn.audio_stream():
                pass
            print(f"Agent greets: {greeting.turn.text!r}")
            await _turn(session, "1. spoken, 1.5 s", _speak(session, 1.5))
            await _turn(session, "2. typed", session.send_text("What's the weather like?"))
            await _turn(session, "3. spoken, 0.8 s", _speak(session, 0.8))
            await session.disconnect()
    finally:
        await server.stop()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--trigger", choices=[t.value for t in TurnTrigger], default=TurnTrigger.AUTOMATIC.value
    )
    parser.add_argument("--debug", action="store_true", help="log every protocol event")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(run(TurnTrigger(args.trigger)))


if __name__ == "__main__":
    main()
