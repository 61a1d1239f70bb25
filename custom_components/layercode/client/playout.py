"""An agent turn played to a real-time listener, such as a voice satellite's speaker.

An agent's audio arrives late (it thinks first) and in bursts. A satellite reads the reply as
a stream and judges it by that stream: ESPHome gives up if playback has not started about
2 seconds after it got the URL, and with continued conversation it opens its microphone when
the stream ends. So the stream a playout produces:

* starts at once, with silence until the agent's audio comes;
* never runs dry: silence fills any real pause, so that it is never taken for the end;
* ends only when the agent's audio has been played out (computed from the audio itself,
  starting from the moment each piece is handed over), plus a short guard of silence: the
  microphone never opens while the agent is still audible;
* ends with a failure cue when the agent produced no audio within a bound, or the connection
  was lost mid-turn, so that a failure is heard, never a silent hang;
* stops at once, without cue or guard, when the user interrupts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from enum import StrEnum
import logging
import math

import numpy as np

from .audio import AGENT_RATE, SAMPLE_WIDTH, to_pcm
from .turns import STALL_TIMEOUT, AgentTurn

_LOGGER = logging.getLogger(__name__)

SILENCE_STEP = 0.05
"""Seconds of silence per filler chunk."""
LOW_WATER = 0.2
"""Filler is sent whenever less than this many seconds are left to play at the listener."""
PAUSE_FILL = 1.0
"""Mid-reply, filler is sent only after the listener has had nothing to play this long."""
TAIL_GUARD = 0.4
"""Seconds the stream stays open after the agent's audio has played out: covers the
listener's own start-up delay, so its end-of-reply is never early."""
FIRST_AUDIO_TIMEOUT = 15.0
"""A turn whose first audio takes longer than this (from the stream's start) has failed."""
FIRST_WAIT = 0.02
"""How long the first read waits for audio already on its way before sending filler."""


class PlayoutOutcome(StrEnum):
    """How a playout ended."""

    PLAYED = "played"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    """The connection was lost mid-turn, or the turn stalled."""
    NO_AUDIO = "no_audio"
    """The agent produced no audio within the bound."""


def failure_cue(rate: int = AGENT_RATE) -> bytes:
    """Two falling tones, about half a second: the sound of "that did not work"."""
    tone = 0.18
    n = np.arange(int(rate * tone))
    envelope = np.sin(np.pi * n / len(n)) ** 0.5
    parts = [np.sin(2 * math.pi * frequency * n / rate) * envelope for frequency in (660.0, 440.0)]
    gap = np.zeros(int(rate * 0.06))
    return to_pcm(np.concatenate((parts[0], gap, parts[1])) * 0.35 * 32768.0)


class Playout:
    """Produces one agent turn's audio as a real-time listener needs it (see the module).

    `chunks()` yields 16 kHz 16-bit mono PCM: agent audio, filler silence and, on failure, the
    failure cue. `on_audio_start` is called just before the first agent audio is handed over;
    `on_audio_end` with the loop time at which the agent's audio will have played out.
    With `paced=False` (a listener that reads the whole reply before it plays anything) the
    agent's audio is handed over as it comes, with no filler and no guard.
    """

    def __init__(
        self,
        turn: AgentTurn | Callable[[], Awaitable[AgentTurn | None]],
        *,
        on_audio_start: Callable[[], None] = lambda: None,
        on_audio_end: Callable[[float], None] = lambda _at: None,
        paced: bool = True,
        first_audio_timeout: float = FIRST_AUDIO_TIMEOUT,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.turn = turn if isinstance(turn, AgentTurn) else None
        """The turn played; with a function that fetches it (a welcome still to come), None
        until it has come, only once the stream is read (or for good, if it never comes)."""
        self._pending_turn = None if isinstance(turn, AgentTurn) else turn
        self.outcome: PlayoutOutcome | None = None
        self.first_audio_at: float | None = None
        """Loop time at which the first agent audio was handed over."""
        self.audio_end_at: float | None = None
        """Loop time at which the agent's audio has played out at the listener."""
        self._on_audio_start = on_audio_start
        self._on_audio_end = on_audio_end
        self._paced = paced
        self._first_audio_timeout = first_audio_timeout
        self._stall_timeout = stall_timeout
        self._loop = asyncio.get_running_loop()
        self._play_end = self._loop.time()
        """Loop time at which everything handed over so far has played out."""
        self._bytes_out = 0

    @property
    def _lead(self) -> float:
        """Seconds of audio handed over and not yet played."""
        return self._play_end - self._loop.time()

    def _handed_over(self, pcm: bytes) -> bytes:
        self._bytes_out += len(pcm)
        self._play_end = max(self._play_end, self._loop.time()) + len(pcm) / (
            SAMPLE_WIDTH * AGENT_RATE
        )
        return pcm

    def _silence(self) -> bytes:
        return self._handed_over(bytes(int(AGENT_RATE * SILENCE_STEP) * SAMPLE_WIDTH))

    async def chunks(self) -> AsyncGenerator[bytes]:
        """The stream, until the turn has played out (or failed, or was interrupted)."""
        audio = self._audio()
        try:
            async with aclosing(self._agent_audio(audio)) as agent_audio:
                async for chunk in agent_audio:
                    yield chunk
            self.outcome = self._ending()
            self._audio_ended()
            if self.outcome not in (PlayoutOutcome.PLAYED, PlayoutOutcome.INTERRUPTED):
                _LOGGER.warning(
                    "Agent turn %r: %s; playing the failure cue", self.turn, self.outcome
                )
                yield self._handed_over(failure_cue())
            if self._paced and self.outcome is not PlayoutOutcome.INTERRUPTED:
                async with aclosing(self._guard()) as guard:
                    async for chunk in guard:
                        yield chunk
        finally:
            if self.first_audio_at is not None and self.audio_end_at is None:
                # The listener went away mid-reply: it plays nothing more.
                self.outcome = self.outcome or PlayoutOutcome.INTERRUPTED
                self.audio_end_at = self._loop.time()
                self._on_audio_end(self.audio_end_at)
            await audio.aclose()

    async def _audio(self) -> AsyncGenerator[bytes]:
        """The turn's audio, once the turn is known."""
        if self._pending_turn is not None:
            self.turn = await self._pending_turn()
        if self.turn is None:
            return
        async with aclosing(self.turn.audio_stream(self._stall_timeout)) as audio:
            async for chunk in audio:
                yield chunk

    async def _agent_audio(self, audio: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
        """The agent's audio as it comes, with filler silence while there is none."""
        deadline = self._loop.time() + self._first_audio_timeout
        pending: asyncio.Future[bytes | None] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(audio, None))
                if not await self._wait(pending, deadline):
                    if self.first_audio_at is None and self._loop.time() >= deadline:
                        return
                    yield self._silence()
                    continue
                chunk, pending = pending.result(), None
                if chunk is None:
                    return
                if self.first_audio_at is None:
                    self.first_audio_at = self._loop.time()
                    self._on_audio_start()
                yield self._handed_over(chunk)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def _wait(self, pending: asyncio.Future[bytes | None], deadline: float) -> bool:
        """Wait for the next agent chunk until filler is due (or the first-audio bound).

        Not paced (`paced=False`), nothing is ever due: only the first-audio bound counts.
        """
        if pending.done():
            return True
        now = self._loop.time()
        timeout: float | None
        if not self._paced:
            timeout = None
        elif not self._bytes_out:
            timeout = FIRST_WAIT
        elif self.first_audio_at is None:
            timeout = max(self._lead - LOW_WATER, 0.0)
        else:
            # Mid-reply, a short gap is left alone (the listener's own buffer rides it out);
            # a real pause gets filler, so that the stream never looks finished.
            timeout = max(self._lead, 0.0) + PAUSE_FILL
        if self.first_audio_at is None:
            left = max(deadline - now, 0.0)
            timeout = left if timeout is None else min(timeout, left)
        done, _ = await asyncio.wait({pending}, timeout=timeout)
        return bool(done)

    def _ending(self) -> PlayoutOutcome:
        """How the agent's part ended: interrupted, failed, without audio, or played."""
        turn = self.turn
        if turn is not None and turn.interrupted:
            return PlayoutOutcome.INTERRUPTED
        if turn is None or self.first_audio_at is None:
            return PlayoutOutcome.NO_AUDIO
        if turn.failed or not turn.ended:
            return PlayoutOutcome.FAILED
        return PlayoutOutcome.PLAYED

    def _audio_ended(self) -> None:
        """Tell when the agent's audio has played out at the listener; now, if interrupted."""
        if self.first_audio_at is None:
            return
        self.audio_end_at = (
            self._loop.time() if self.outcome is PlayoutOutcome.INTERRUPTED else self._play_end
        )
        self._on_audio_end(self.audio_end_at)

    async def _guard(self) -> AsyncGenerator[bytes]:
        """Keep the stream open, with silence, until the reply has played out plus the guard."""
        end = self._play_end + TAIL_GUARD
        while (now := self._loop.time()) < end:
            if await self._sleep(max(min(self._lead - LOW_WATER, end - now), 0.0)):
                # Interrupted while the reply still plays: it ends now, not when it would have.
                self.outcome = PlayoutOutcome.INTERRUPTED
                self._audio_ended()
                return
            if self._lead < LOW_WATER and self._loop.time() < end:
                yield self._silence()

    def stop(self) -> None:
        """The user interrupted (a new run on the satellite): end the stream at once, without
        cue or guard, also when the turn's audio has all been handed over already."""
        if self.turn is not None:
            self.turn.interrupt()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; True at once if the user interrupts the turn meanwhile."""
        if self.turn is None:
            await asyncio.sleep(seconds)
            return False
        return await self.turn.wait_interrupted(seconds)
