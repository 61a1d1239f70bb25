"""One agent turn: its text, data and audio, collected as they arrive."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)

STALL_TIMEOUT = 30.0
"""Bound on waiting for more of a turn that has not ended."""


class AgentTurn:
    """Text, data and audio of one agent turn.

    The audio has one consumer (`audio_stream`), the stand-in for the browser SDK's
    player: when it has read the turn to its end, or stops reading, the turn counts as
    played and the session tells the server (`replay_finished`). Buffered audio is bounded.
    """

    def __init__(
        self,
        turn_id: str | None,
        *,
        max_audio_bytes: int,
        on_chunk_played: Callable[[AgentTurn, bytes], None],
        on_played: Callable[[AgentTurn], None],
    ) -> None:
        self.turn_id = turn_id
        self.text = ""
        self.data: list[Any] = []
        self.audio_bytes_received = 0
        self.ended = False
        self.interrupted = False
        """The user barged in: what is left is not to be played."""
        self.failed = False
        """The connection was lost before the turn ended: it is incomplete."""
        self.played = False
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        """Event-loop times (`loop.time()`) of the turn's start and first text and audio."""
        self.first_text_at: float | None = None
        self.first_audio_at: float | None = None
        self._max_audio_bytes = max_audio_bytes
        self._on_chunk_played = on_chunk_played
        self._on_played = on_played
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._overflowed = False
        self._consumed = False
        self._changed = asyncio.Event()
        self._ended = asyncio.Event()
        self._interrupted = asyncio.Event()
        self._text_changed: asyncio.Future[None] = loop.create_future()

    def __repr__(self) -> str:
        state = (
            "interrupted"
            if self.interrupted
            else "failed"
            if self.failed
            else "ended"
            if self.ended
            else "open"
        )
        return f"<AgentTurn {self.turn_id} {state} audio={self.audio_bytes_received}B>"

    @property
    def consumed(self) -> bool:
        """Whether a consumer has started reading the audio."""
        return self._consumed

    def add_text(self, content: str, *, delta: bool) -> None:
        """Append agent text; whole `response.text` pieces are joined with a space."""
        if (
            not delta
            and self.text
            and content
            and not self.text[-1].isspace()
            and not content[0].isspace()
        ):
            self.text += " "
        if self.first_text_at is None and content:
            self.first_text_at = asyncio.get_running_loop().time()
        self.text += content
        self._changed.set()
        self._signal_text()

    def add_data(self, content: Any) -> None:
        """Record a `response.data` payload."""
        self.data.append(content)
        self._changed.set()

    def add_audio(self, pcm: bytes) -> None:
        """Queue 16 kHz PCM for the consumer, dropping it once the bound is reached."""
        if self.ended:
            return
        if not self.audio_bytes_received:
            self.first_audio_at = asyncio.get_running_loop().time()
        self.audio_bytes_received += len(pcm)
        if self.played:
            return
        if self._buffered + len(pcm) > self._max_audio_bytes:
            if not self._overflowed:
                _LOGGER.warning("Agent turn %s: audio buffer full, dropping audio", self.turn_id)
                self._overflowed = True
            return
        self._chunks.append(pcm)
        self._buffered += len(pcm)
        self._changed.set()

    def end(self, *, failed: bool = False) -> None:
        """Nothing more will arrive for this turn; `failed` when the connection was lost."""
        if self.ended:
            return
        self.failed = failed
        self.ended = True
        self._changed.set()
        self._ended.set()
        self._signal_text()

    def _signal_text(self) -> None:
        """Wake every text reader; the next wait gets a fresh future."""
        if not self._text_changed.done():
            self._text_changed.set_result(None)
        self._text_changed = asyncio.get_running_loop().create_future()

    def interrupt(self) -> None:
        """The user barged in: drop what is buffered and anything that comes late."""
        self.interrupted = True
        self._drop_buffer()
        self.end()
        self._changed.set()
        self._interrupted.set()
        self.drop_unconsumed()

    def drop_unconsumed(self) -> None:
        """Nobody read this turn's audio: drop it and count the turn as played."""
        if not self._consumed:
            self._drop_buffer()
            self._finish()

    async def wait_ended(self, timeout: float) -> bool:
        """Wait until the turn has ended; False if the bound ran out first."""
        try:
            async with asyncio.timeout(timeout):
                await self._ended.wait()
        except TimeoutError:
            return False
        return True

    async def wait_text(self, timeout: float) -> bool:
        """Wait until the turn has some text or has ended; False if the bound ran out first."""
        try:
            async with asyncio.timeout(timeout):
                while not self.text and not self.ended:
                    await asyncio.shield(self._text_changed)
        except TimeoutError:
            return False
        return True

    async def wait_interrupted(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True at once if the user barges in meanwhile."""
        try:
            async with asyncio.timeout(timeout):
                await self._interrupted.wait()
        except TimeoutError:
            return False
        return True

    async def text_deltas(self, stall_timeout: float = STALL_TIMEOUT) -> AsyncGenerator[str]:
        """Yield the text as it grows, until the turn ends or stalls. Any number of readers."""
        sent = 0
        while True:
            waiter = self._text_changed
            if len(self.text) > sent:
                yield self.text[sent:]
                sent = len(self.text)
            if self.ended:
                return
            done, _ = await asyncio.wait({waiter}, timeout=stall_timeout)
            if not done:
                self._log_stall("text", stall_timeout)
                return

    async def audio_stream(self, stall_timeout: float = STALL_TIMEOUT) -> AsyncGenerator[bytes]:
        """Yield the turn's audio as it arrives, until the turn ends or stalls. Only one reader.

        A stalled turn (nothing new for `stall_timeout` seconds) ends the stream and counts
        as played, so that neither the reader nor the conversation waits forever.
        """
        if self._consumed:
            raise RuntimeError(f"Audio of agent turn {self.turn_id} is already being read")
        self._consumed = True
        try:
            while True:
                while self._chunks:
                    chunk = self._chunks.popleft()
                    self._buffered -= len(chunk)
                    self._on_chunk_played(self, chunk)
                    yield chunk
                if self.ended:
                    return
                self._changed.clear()
                try:
                    async with asyncio.timeout(stall_timeout):
                        await self._changed.wait()
                except TimeoutError:
                    self._log_stall("audio", stall_timeout)
                    return
        finally:
            self._drop_buffer()
            self._finish()

    def _log_stall(self, what: str, timeout: float) -> None:
        _LOGGER.warning(
            "Agent turn %s: no %s and no end for %g s; giving up on it", self.turn_id, what, timeout
        )

    def _drop_buffer(self) -> None:
        self._chunks.clear()
        self._buffered = 0

    def _finish(self) -> None:
        if not self.played:
            self.played = True
            self._on_played(self)
