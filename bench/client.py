"""The real client, driven the way the integration drives it, against the agent process.

`BenchConversation` is one `LayercodeSession` plus what the TTS entity would do with its agent
turns: read `AgentTurn.audio_stream()` to the end and convert it with `PcmConverter`, which
is what makes the session send `replay_finished` and the server end the turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import time

import aiohttp

from custom_components.layercode.client import (
    AgentTurn,
    AgentTurnStarted,
    AmplitudeChanged,
    Authorizer,
    EventWaiter,
    LayercodeSession,
    SessionEvent,
)
from custom_components.layercode.client.audio import AGENT_RATE, PcmConverter
from custom_components.layercode.client.authorize import AUTHORIZE_TIMEOUT
from custom_components.layercode.client.messages import TurnEnd

from .agent_process import AgentProcess

TURN_TIMEOUT = 30.0

type ChunkListener = Callable[[AgentTurn, int, float], None]
"""Called with the turn, the chunk's index in it and when `audio_stream` yielded it."""


def authorizer(agent: AgentProcess, timeout: float = AUTHORIZE_TIMEOUT) -> Authorizer:
    """How the integration authorizes, against the agent process."""
    return Authorizer(agent.authorize_url, agent.agent_id, api_key=agent.api_key, timeout=timeout)


def agent_turn_over(event: SessionEvent) -> bool:
    """The server's `turn.end` of an assistant turn: it got `replay_finished`."""
    return isinstance(event, TurnEnd) and event.role == "assistant"


class BenchConversation:
    """A session whose agent audio is read as the TTS entity reads it."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        agent: AgentProcess,
        *,
        out_rate: int = AGENT_RATE,
        on_chunk: ChunkListener | None = None,
    ) -> None:
        self.session = LayercodeSession(http, authorizer(agent), websocket_url=agent.websocket_url)
        self.frames_sent = 0
        """`client.audio` frames the session produced (it emits one level per frame)."""
        self.agent_bytes = 0
        self._out_rate = out_rate
        self._on_chunk = on_chunk
        self._readers: set[asyncio.Task[None]] = set()
        self.session.add_listener(self._on_event)

    def _on_event(self, event: SessionEvent) -> None:
        if isinstance(event, AmplitudeChanged):
            if event.role == "user":
                self.frames_sent += 1
        elif isinstance(event, AgentTurnStarted):
            task = asyncio.get_running_loop().create_task(self._read(event.turn))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)

    async def _read(self, turn: AgentTurn) -> None:
        """What tts.py's `_agent_wav` does with a turn (minus the WAV header)."""
        converter = PcmConverter(AGENT_RATE, self._out_rate)
        index = 0
        async for chunk in turn.audio_stream(TURN_TIMEOUT):
            if self._on_chunk is not None:
                self._on_chunk(turn, index, time.monotonic())
            index += 1
            self.agent_bytes += len(converter.process(chunk))

    async def connect(self) -> None:
        """Authorize and open the WebSocket."""
        await self.session.connect()

    def expect_turn_over(self) -> EventWaiter:
        """Watch for the end of the agent turn that answers what is about to be said."""
        return self.session.expect(agent_turn_over)

    async def say(self, chunks: Sequence[bytes]) -> None:
        """One user turn, unpaced: speech start, the chunks, speech end."""
        await self.session.begin_user_speech()
        for chunk in chunks:
            await self.session.send_audio(chunk)
        await self.session.end_user_speech()

    async def close(self) -> None:
        """Stop the readers and close the session."""
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.session.disconnect()
