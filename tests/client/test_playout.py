"""Playout: an agent turn as the real-time stream a voice satellite's speaker reads.

Time is the real event loop's, with audio of tens of milliseconds. Nothing here asserts a
tight wall-clock bound: expectations are computed from the audio the consumer received and
the loop times it received it at (a simulated listener), with generous margins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.layercode.client import AgentTurn
from custom_components.layercode.client.audio import AGENT_RATE, SAMPLE_WIDTH
from custom_components.layercode.client.playout import (
    FIRST_AUDIO_TIMEOUT,
    FIRST_WAIT,
    LOW_WATER,
    PAUSE_FILL,
    SILENCE_STEP,
    TAIL_GUARD,
    Playout,
    PlayoutOutcome,
    failure_cue,
)
from custom_components.layercode.client.turns import STALL_TIMEOUT

BYTES_PER_SECOND = AGENT_RATE * SAMPLE_WIDTH
SILENCE_CHUNK_BYTES = int(AGENT_RATE * SILENCE_STEP) * SAMPLE_WIDTH
CUE = failure_cue()
BOUND = 10.0
"""Bound on any one playout in these tests: a hang fails fast instead of blocking the run."""
MARGIN = 0.05
"""Slack for times the playout computes from the same loop times the consumer sees."""
PROMPT = 0.5
"""What "at once" means on a shared, noisy machine."""


def seconds(pcm: bytes) -> float:
    """Duration of 16 kHz 16-bit mono PCM."""
    return len(pcm) / BYTES_PER_SECOND


def speech(duration: float, level: int) -> bytes:
    """Agent audio stand-in: a constant nonzero level, so that each piece is recognisable."""
    return np.full(round(duration * AGENT_RATE), level, dtype="<i2").tobytes()


def kind(pcm: bytes) -> str:
    """What a chunk of the stream is: the failure cue, filler silence or agent audio."""
    if pcm == CUE:
        return "cue"
    if not any(pcm):
        return "silence"
    return "agent"


def now() -> float:
    """The running loop's clock, the one Playout uses."""
    return asyncio.get_running_loop().time()


@dataclass
class Run:
    """What a consumer of `Playout.chunks()` saw, when, and what the callbacks reported."""

    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    """Chunk kinds and callbacks ("start", "end", "played") in the order they happened."""
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    """The times passed to `on_audio_end`."""
    played: list[float] = field(default_factory=list)
    """Loop times at which the turn's `on_played` ran."""
    opened_at: float = 0.0
    closed_at: float = math.nan

    def on_audio_start(self) -> None:
        self.starts.append(now())
        self.log.append("start")

    def on_audio_end(self, at: float) -> None:
        self.ends.append(at)
        self.log.append("end")

    def on_played(self, _turn: AgentTurn) -> None:
        self.played.append(now())
        self.log.append("played")

    def receive(self, pcm: bytes) -> None:
        self.chunks.append((now(), pcm))
        self.log.append(kind(pcm))

    @property
    def kinds(self) -> list[str]:
        return [kind(pcm) for _, pcm in self.chunks]

    def of_kind(self, wanted: str) -> list[tuple[float, bytes]]:
        return [(at, pcm) for at, pcm in self.chunks if kind(pcm) == wanted]

    @property
    def agent_audio(self) -> list[bytes]:
        return [pcm for _, pcm in self.of_kind("agent")]

    def index(self, wanted: str, *, last: bool = False) -> int:
        """Position in `chunks` of the first (or last) chunk of a kind."""
        positions = [i for i, k in enumerate(self.kinds) if k == wanted]
        assert positions, f"no {wanted} chunk in {self.kinds}"
        return positions[-1] if last else positions[0]

    def play_end(self, upto: int | None = None) -> float:
        """When a listener that plays everything as it comes has played chunks[:upto + 1]."""
        end = -math.inf
        for at, pcm in self.chunks[: None if upto is None else upto + 1]:
            end = max(end, at) + seconds(pcm)
        return end

    def total_seconds(self, wanted: str | None = None) -> float:
        return sum(seconds(pcm) for _, pcm in self.chunks if wanted in (None, kind(pcm)))


def make_turn(run: Run, turn_id: str = "t1") -> AgentTurn:
    """A turn as the session builds it, reporting `on_played` to the run."""
    return AgentTurn(
        turn_id,
        max_audio_bytes=10**7,
        on_chunk_played=lambda _turn, _pcm: None,
        on_played=run.on_played,
    )


def make_playout(
    turn: AgentTurn | Callable[[], Awaitable[AgentTurn | None]], run: Run, **kwargs: Any
) -> Playout:
    """A playout whose callbacks report to the run."""
    return Playout(turn, on_audio_start=run.on_audio_start, on_audio_end=run.on_audio_end, **kwargs)


async def consume(playout: Playout, run: Run, *, stop: Callable[[Run], bool] | None = None) -> Run:
    """Read the stream to its end, or until `stop` says so (then close it, as a client would)."""
    run.opened_at = now()
    async with asyncio.timeout(BOUND), aclosing(playout.chunks()) as stream:
        async for pcm in stream:
            run.receive(pcm)
            if stop is not None and stop(run):
                break
    run.closed_at = now()
    return run


def seen(wanted: str, count: int = 1) -> Callable[[Run], bool]:
    """A `stop` condition: the stream has carried `count` chunks of a kind."""
    return lambda run: run.kinds.count(wanted) >= count


async def speak(
    turn: AgentTurn,
    script: Sequence[tuple[float, bytes]],
    *,
    end: bool = True,
    failed: bool = False,
) -> float:
    """The agent: each piece of audio after its delay, then the end; returns the end's time."""
    for delay, pcm in script:
        await asyncio.sleep(delay)
        turn.add_audio(pcm)
    if end:
        turn.end(failed=failed)
    return now()


def assert_no_tasks_left() -> None:
    """Nothing the playout started outlives it."""
    current = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    assert not left, left


# -- the design's constants -----------------------------------------------------------------


def test_constants_fit_together() -> None:
    """The first filler comes long before ESPHome's ~2 s, and filler keeps ahead of the listener."""
    assert FIRST_WAIT + SILENCE_STEP < 0.5
    assert SILENCE_STEP < LOW_WATER < PAUSE_FILL
    assert TAIL_GUARD > 0
    assert 0 < FIRST_AUDIO_TIMEOUT <= STALL_TIMEOUT
    assert round(SILENCE_STEP * BYTES_PER_SECOND) == SILENCE_CHUNK_BYTES
    assert {outcome.value for outcome in PlayoutOutcome} == {
        "played",
        "interrupted",
        "failed",
        "no_audio",
    }


# -- a turn that plays: silence first, the audio unchanged, the held tail ------------------


async def test_starts_with_silence_then_carries_agent_audio_unchanged() -> None:
    """A satellite must get bytes at once; the agent's audio then comes through as sent."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)
    pieces = [speech(0.02, 1000 + i) for i in range(4)]
    agent = asyncio.create_task(
        speak(turn, [(0.08, pieces[0]), (0.01, pieces[1]), (0.0, pieces[2]), (0.02, pieces[3])])
    )
    await consume(playout, run, stop=seen("agent", 4))  # the tail has its own test
    await agent

    first_at, first = run.chunks[0]
    assert first == bytes(SILENCE_CHUNK_BYTES)
    assert first_at - run.opened_at < PROMPT
    assert run.agent_audio == pieces
    assert "cue" not in run.kinds
    # Pre-roll: silence only before the agent's audio, at least LOW_WATER of it, and enough
    # that the listener (modulo a scheduling hiccup) never ran dry while waiting.
    first_agent = run.index("agent")
    assert set(run.kinds[:first_agent]) == {"silence"}
    assert sum(seconds(pcm) for _, pcm in run.chunks[:first_agent]) >= LOW_WATER
    assert run.play_end(first_agent - 1) >= run.chunks[first_agent][0] - 0.1
    assert turn.played
    assert len(run.played) == 1
    assert playout.turn is turn


async def test_on_audio_start_once_just_before_the_first_agent_chunk() -> None:
    """The speaking state starts with the agent's audio, not with the filler before it."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)
    agent = asyncio.create_task(speak(turn, [(0.06, speech(0.02, 500)), (0.01, speech(0.02, 600))]))
    await consume(playout, run, stop=seen("agent", 2))  # the tail is not the point
    await agent

    assert run.log.count("start") == 1
    start = run.log.index("start")
    assert set(run.log[:start]) == {"silence"}
    assert run.log[start + 1] == "agent"
    assert playout.first_audio_at == pytest.approx(run.starts[0], abs=MARGIN)
    assert run.starts[0] <= run.chunks[run.index("agent")][0]


async def test_audio_already_there_needs_no_leading_silence() -> None:
    """FIRST_WAIT: audio already on its way is sent first, not after a filler chunk."""
    run = Run()
    turn = make_turn(run)
    turn.add_audio(speech(0.03, 700))
    turn.end()
    playout = make_playout(turn, run)
    await consume(playout, run, stop=seen("agent"))

    assert run.kinds == ["agent"]
    assert run.chunks[0][1] == speech(0.03, 700)


async def test_tail_is_held_until_the_audio_has_played_out_plus_the_guard() -> None:
    """The satellite's microphone must not open while the agent is still audible."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)
    pieces = [speech(0.1, 900), speech(0.1, 901)]
    agent = asyncio.create_task(speak(turn, [(0.03, pieces[0]), (0.0, pieces[1])]))
    await consume(playout, run)
    end_of_turn = await agent

    last_agent = run.index("agent", last=True)
    plays_out = run.play_end(last_agent)
    assert plays_out >= end_of_turn + sum(map(seconds, pieces)) - MARGIN
    # on_audio_end: once, with the audio's play-out time, before the tail.
    assert run.ends == [pytest.approx(plays_out, abs=MARGIN)]
    assert playout.audio_end_at == run.ends[0]
    assert run.log.index("end") > run.log.index("agent")
    assert set(run.log[run.log.index("end") + 1 :]) <= {"silence", "played"}
    # The tail: silence only, and the stream closes no earlier than play-out + guard.
    tail = run.kinds[last_agent + 1 :]
    assert tail
    assert set(tail) == {"silence"}
    assert run.closed_at >= run.ends[0] + TAIL_GUARD
    assert run.closed_at < run.ends[0] + TAIL_GUARD + 2.0
    # What the listener is given covers the agent's audio and the guard.
    assert run.total_seconds() >= run.total_seconds("agent") + TAIL_GUARD
    assert run.play_end() >= run.ends[0] + TAIL_GUARD - MARGIN
    assert playout.outcome is PlayoutOutcome.PLAYED
    assert run.played


# -- gaps mid-reply -------------------------------------------------------------------------


async def test_short_gap_mid_reply_gets_no_silence() -> None:
    """A gap shorter than PAUSE_FILL is the listener's buffer's business: nothing is inserted."""
    run = Run()
    turn = make_turn(run)
    first, second = speech(0.02, 1100), speech(0.02, 1200)
    turn.add_audio(first)
    playout = make_playout(turn, run)
    agent = asyncio.create_task(speak(turn, [(0.3, second)]))
    await consume(playout, run, stop=seen("agent", 2))  # the tail is not the point
    await agent

    assert run.kinds[:2] == ["agent", "agent"]
    assert run.agent_audio == [first, second]
    assert run.chunks[1][0] - run.chunks[0][0] >= 0.25  # there was a real gap


async def test_long_pause_mid_reply_gets_filler() -> None:
    """A real pause is filled, so that the stream never looks finished; not before PAUSE_FILL."""
    run = Run()
    turn = make_turn(run)
    first, second = speech(0.02, 1300), speech(0.02, 1400)
    turn.add_audio(first)
    playout = make_playout(turn, run)
    pause = PAUSE_FILL + 0.25
    agent = asyncio.create_task(speak(turn, [(pause, second)]))
    await consume(playout, run, stop=seen("agent", 2))
    await agent

    assert run.agent_audio == [first, second]
    between = run.kinds[run.index("agent") + 1 : run.index("agent", last=True)]
    assert between
    assert set(between) == {"silence"}
    # The listener had nothing to play for PAUSE_FILL before the first filler came.
    first_filler_at = run.chunks[run.index("silence")][0]
    assert first_filler_at >= run.play_end(0) + PAUSE_FILL - 0.02


# -- failures: no audio, lost connection, stall ---------------------------------------------


async def test_no_audio_within_the_bound_ends_with_the_cue() -> None:
    """A silent agent is heard as a failure, never as a hang; then the guard, then the end."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, first_audio_timeout=0.1)
    await consume(playout, run)

    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert run.kinds.count("cue") == 1
    assert "agent" not in run.kinds
    cue = run.index("cue")
    assert set(run.kinds[:cue]) == {"silence"}
    assert set(run.kinds[cue + 1 :]) <= {"silence"}
    assert run.chunks[cue][0] - run.opened_at >= 0.1 - 0.02
    assert run.closed_at >= run.play_end(cue) + TAIL_GUARD
    # The turn counts as played (the server is told), and no agent audio was reported.
    assert turn.played
    assert len(run.played) == 1
    assert run.log.index("played") < run.log.index("cue")
    assert run.starts == []
    assert run.ends == []
    assert playout.first_audio_at is None
    assert playout.audio_end_at is None


async def test_audio_after_the_bound_is_not_played() -> None:
    """Once the cue has been chosen, late agent audio is dropped rather than played after it."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, first_audio_timeout=0.05)
    await consume(playout, run, stop=seen("cue"))
    turn.add_audio(speech(0.02, 42))

    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert turn.played
    assert "agent" not in run.kinds


async def test_first_audio_bound_only_bounds_the_first_audio() -> None:
    """After the first audio, a gap longer than first_audio_timeout is just a gap."""
    run = Run()
    turn = make_turn(run)
    pieces = [speech(0.02, 1500), speech(0.02, 1600)]
    playout = make_playout(turn, run, first_audio_timeout=0.15)
    agent = asyncio.create_task(speak(turn, [(0.05, pieces[0]), (0.3, pieces[1])]))
    await consume(playout, run, stop=seen("agent", 2))  # the tail is not the point
    await agent

    assert run.agent_audio == pieces
    assert "cue" not in run.kinds
    assert playout.outcome is not PlayoutOutcome.NO_AUDIO


async def test_turn_that_ends_without_audio_gets_the_cue_at_once() -> None:
    """An ended turn with no audio need not wait for the first-audio bound."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)  # the default, 15 s bound
    agent = asyncio.create_task(speak(turn, [], end=True))
    await consume(playout, run, stop=seen("cue"))
    await agent

    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert run.closed_at - run.opened_at < FIRST_AUDIO_TIMEOUT / 2
    assert turn.played


async def test_failed_turn_plays_its_audio_then_the_cue() -> None:
    """A connection lost mid-turn: what arrived is played, then the failure is heard."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)
    pieces = [speech(0.03, 1700), speech(0.03, 1800)]
    agent = asyncio.create_task(speak(turn, [(0.03, pieces[0]), (0.01, pieces[1])], failed=True))
    await consume(playout, run, stop=seen("cue"))
    await agent

    assert playout.outcome is PlayoutOutcome.FAILED
    assert run.agent_audio == pieces
    assert run.kinds.count("cue") == 1
    cue = run.index("cue")
    assert cue == run.index("agent", last=True) + 1
    # on_audio_end reports the agent's audio, not the cue (the guard after the cue is
    # the no-audio test's).
    assert run.ends == [pytest.approx(run.play_end(cue - 1), abs=MARGIN)]
    assert run.log.index("end") < run.log.index("cue")
    assert turn.played


async def test_stalled_turn_fails_with_the_cue() -> None:
    """A turn that stops sending without ending is given up on after stall_timeout."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, stall_timeout=0.1)
    agent = asyncio.create_task(speak(turn, [(0.0, speech(0.02, 1900))], end=False))
    await consume(playout, run, stop=seen("cue"))
    await agent

    assert playout.outcome is PlayoutOutcome.FAILED
    assert run.agent_audio == [speech(0.02, 1900)]
    assert run.kinds[-1] == "cue"
    assert turn.played
    assert not turn.ended


async def test_stalled_turn_without_audio_is_no_audio() -> None:
    """A stall before any audio is the no-audio failure, even inside first_audio_timeout."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, stall_timeout=0.05, first_audio_timeout=5.0)
    await consume(playout, run, stop=seen("cue"))

    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert run.closed_at - run.opened_at < 2.5
    assert turn.played


# -- interruption ---------------------------------------------------------------------------


async def test_interrupt_mid_stream_stops_at_once() -> None:
    """Barge-in: no more audio, no cue, no guard; the audio ends now, not at its play-out."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)
    turn.add_audio(speech(0.5, 2000))
    turn.add_audio(speech(0.5, 2100))
    consumer = asyncio.create_task(consume(playout, run))
    await asyncio.sleep(0.1)
    interrupted_at = now()
    turn.interrupt()
    turn.add_audio(speech(0.05, 2200))  # late audio of the interrupted turn
    await consumer

    assert playout.outcome is PlayoutOutcome.INTERRUPTED
    assert run.agent_audio == [speech(0.5, 2000), speech(0.5, 2100)]
    assert "cue" not in run.kinds
    assert all(at <= interrupted_at for at, _ in run.chunks)
    assert run.closed_at - interrupted_at < PROMPT
    assert run.closed_at < run.play_end()  # it did not wait for the audio to play out
    assert len(run.ends) == 1
    assert interrupted_at <= run.ends[0] <= run.closed_at
    assert playout.audio_end_at == run.ends[0]
    assert turn.played


async def test_interrupt_before_any_audio_stops_at_once() -> None:
    """Barge-in during the pre-roll: no cue, and no agent audio to report."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run)
    consumer = asyncio.create_task(consume(playout, run))
    await asyncio.sleep(0.06)
    interrupted_at = now()
    turn.interrupt()
    await consumer

    assert playout.outcome is PlayoutOutcome.INTERRUPTED
    assert set(run.kinds) == {"silence"}
    assert run.closed_at - interrupted_at < PROMPT
    assert run.starts == []
    assert run.ends == []
    assert turn.played


async def _interrupt_in_the_tail(run: Run) -> tuple[Playout, float]:
    """A turn whose 1.2 s of audio came in one burst, interrupted while it still plays out."""
    turn = make_turn(run)
    turn.add_audio(speech(1.2, 2300))
    turn.end()
    playout = make_playout(turn, run)
    consumer = asyncio.create_task(consume(playout, run))
    await asyncio.sleep(0.15)
    assert playout.outcome is PlayoutOutcome.PLAYED  # the tail has begun
    assert not consumer.done()
    interrupted_at = now()
    turn.interrupt()
    await consumer
    return playout, interrupted_at


async def test_interrupt_in_the_tail_ends_the_stream_at_once() -> None:
    """Barge-in during the held tail: the stream ends without the rest of the guard."""
    run = Run()
    _playout, interrupted_at = await _interrupt_in_the_tail(run)

    assert "cue" not in run.kinds
    assert all(at <= interrupted_at for at, _ in run.chunks)
    assert run.closed_at - interrupted_at < PROMPT
    assert run.closed_at < run.ends[0] + TAIL_GUARD


async def test_interrupt_in_the_tail_reports_interrupted_and_now() -> None:
    """The tail interrupt should report as a mid-stream one does: INTERRUPTED, ended now."""
    run = Run()
    playout, interrupted_at = await _interrupt_in_the_tail(run)

    assert run.ends[-1] == pytest.approx(interrupted_at, abs=PROMPT)
    assert playout.audio_end_at == run.ends[-1]
    assert playout.outcome is PlayoutOutcome.INTERRUPTED


# -- the consumer going away ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_after", "reports_end"),
    [
        pytest.param("silence", False, id="during-pre-roll"),
        pytest.param("agent", True, id="mid-reply"),
    ],
)
async def test_consumer_closing_early_cleans_up(stop_after: str, reports_end: bool) -> None:
    """The listener went away: the turn counts as played, audio ends now, nothing is left."""
    run = Run()
    turn = make_turn(run)
    if stop_after == "agent":
        turn.add_audio(speech(0.3, 2400))
    playout = make_playout(turn, run)
    await consume(playout, run, stop=seen(stop_after))

    assert turn.played
    assert len(run.played) == 1
    if reports_end:
        assert run.ends == [pytest.approx(run.closed_at, abs=MARGIN)]
        assert run.ends[0] < run.play_end()  # now, not the audio's play-out
        assert playout.outcome is PlayoutOutcome.INTERRUPTED
    else:
        assert run.ends == []
    assert_no_tasks_left()


async def test_consumer_closing_in_the_tail_reports_nothing_more() -> None:
    """Closing during the guard: the audio's end was already reported, once."""
    run = Run()
    turn = make_turn(run)
    turn.add_audio(speech(0.02, 2500))
    turn.end()
    playout = make_playout(turn, run)
    await consume(playout, run, stop=lambda r: r.kinds[-1] == "silence")

    assert playout.outcome is PlayoutOutcome.PLAYED
    assert len(run.ends) == 1
    assert turn.played
    assert_no_tasks_left()


async def test_consumer_closing_while_the_turn_is_awaited_cancels_it() -> None:
    """Closing before the turn has come: the wait for it is cancelled, nothing is left."""
    run = Run()
    cancelled = asyncio.Event()

    async def never() -> AgentTurn | None:
        try:
            await asyncio.sleep(BOUND)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    playout = make_playout(never, run)
    await consume(playout, run, stop=seen("silence"))

    assert cancelled.is_set()
    assert playout.turn is None
    assert run.ends == []
    assert_no_tasks_left()


# -- not paced ------------------------------------------------------------------------------


async def test_unpaced_carries_only_the_agent_audio_and_ends_with_the_turn() -> None:
    """A listener that reads the whole reply first needs no filler and no guard."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, paced=False)
    pieces = [speech(0.02, 2600), speech(0.02, 2700), speech(0.02, 2800)]
    agent = asyncio.create_task(
        speak(turn, [(0.1, pieces[0]), (0.05, pieces[1]), (0.05, pieces[2])])
    )
    await consume(playout, run)
    ended_at = await agent

    assert run.kinds == ["agent", "agent", "agent"]
    assert run.agent_audio == pieces
    assert 0 <= run.closed_at - ended_at < PROMPT
    assert playout.outcome is PlayoutOutcome.PLAYED
    assert len(run.starts) == 1
    assert run.ends == [pytest.approx(run.play_end(), abs=MARGIN)]
    assert turn.played


async def test_unpaced_without_audio_is_only_the_cue() -> None:
    """Not paced, the no-audio failure is the cue alone: no filler before, no guard after."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, paced=False, first_audio_timeout=0.1)
    await consume(playout, run)

    assert run.kinds == ["cue"]
    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert run.closed_at - run.opened_at >= 0.1 - 0.02
    assert run.closed_at - run.opened_at < PROMPT + 0.1
    assert turn.played


async def test_unpaced_failed_turn_is_its_audio_then_the_cue() -> None:
    """Not paced, a failed turn is the audio that came and the cue, nothing else."""
    run = Run()
    turn = make_turn(run)
    playout = make_playout(turn, run, paced=False)
    agent = asyncio.create_task(speak(turn, [(0.02, speech(0.02, 2900))], failed=True))
    await consume(playout, run)
    await agent

    assert run.kinds == ["agent", "cue"]
    assert playout.outcome is PlayoutOutcome.FAILED


# -- a turn that is awaited -----------------------------------------------------------------


async def test_awaited_turn_gets_silence_until_it_comes() -> None:
    """A welcome's session is still opening: the stream starts anyway, then plays the turn."""
    run = Run()
    turn = make_turn(run)
    pieces = [speech(0.02, 3000), speech(0.02, 3100)]
    turn.add_audio(pieces[0])
    turn.add_audio(pieces[1])
    turn.end()

    async def later() -> AgentTurn | None:
        await asyncio.sleep(0.1)
        return turn

    playout = make_playout(later, run)
    before = playout.turn
    await consume(playout, run)

    assert before is None
    assert playout.turn is turn
    assert run.kinds[0] == "silence"
    assert run.agent_audio == pieces
    assert set(run.kinds[: run.index("agent")]) == {"silence"}
    assert playout.outcome is PlayoutOutcome.PLAYED
    assert turn.played
    assert len(run.starts) == 1
    assert len(run.ends) == 1


async def test_awaited_turn_that_is_none_gets_the_cue_at_once() -> None:
    """No turn (the session could not open): the failure is heard without waiting the bound."""
    run = Run()

    async def nothing() -> AgentTurn | None:
        await asyncio.sleep(0.03)
        return None

    playout = make_playout(nothing, run)  # the default, 15 s bound
    await consume(playout, run, stop=seen("cue"))

    assert playout.turn is None
    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert run.kinds.count("cue") == 1
    assert set(run.kinds) == {"silence", "cue"}
    assert run.kinds[0] == "silence"
    assert run.closed_at - run.opened_at < FIRST_AUDIO_TIMEOUT / 2
    assert run.starts == []
    assert run.ends == []


async def test_awaited_turn_slower_than_the_bound_gets_the_cue() -> None:
    """A turn that comes too late is given up on: its wait is cancelled, the cue plays."""
    run = Run()
    cancelled = asyncio.Event()

    async def too_late() -> AgentTurn | None:
        try:
            await asyncio.sleep(BOUND)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    playout = make_playout(too_late, run, first_audio_timeout=0.1)
    await consume(playout, run, stop=seen("cue"))

    assert cancelled.is_set()
    assert playout.outcome is PlayoutOutcome.NO_AUDIO
    assert playout.turn is None
    assert_no_tasks_left()


# -- the failure cue ------------------------------------------------------------------------


def _dominant_frequency(samples: npt.NDArray[np.float64], rate: int) -> float:
    """The strongest frequency of a windowed segment."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_failure_cue_is_two_falling_tones() -> None:
    """About 0.42 s: 660 Hz, a short gap, 440 Hz; loud enough to hear, never clipped."""
    samples = np.frombuffer(CUE, dtype="<i2").astype(np.float64)
    assert len(CUE) % SAMPLE_WIDTH == 0
    assert seconds(CUE) == pytest.approx(0.42, abs=0.005)
    tone, gap = int(AGENT_RATE * 0.18), int(AGENT_RATE * 0.06)
    assert len(samples) == 2 * tone + gap
    first, middle, second = samples[:tone], samples[tone : tone + gap], samples[tone + gap :]
    assert _dominant_frequency(first, AGENT_RATE) == pytest.approx(660, abs=10)
    assert _dominant_frequency(second, AGENT_RATE) == pytest.approx(440, abs=10)
    assert not middle.any()
    peak = np.abs(samples).max()
    assert 0.2 * 32768 < peak < 0.5 * 32768  # audible, and far from clipping
    assert np.abs(samples).max() < 32767
    # Enveloped: each tone starts and ends near zero, so there is no click.
    for part in (first, second):
        assert abs(part[0]) < 0.01 * 32768
        assert abs(part[-1]) < 0.1 * peak


def test_failure_cue_follows_the_rate() -> None:
    """At another rate it is the same 0.42 s and the same tones."""
    rate = 8000
    samples = np.frombuffer(failure_cue(rate), dtype="<i2").astype(np.float64)
    assert len(samples) / rate == pytest.approx(0.42, abs=0.005)
    tone = int(rate * 0.18)
    assert _dominant_frequency(samples[:tone], rate) == pytest.approx(660, abs=15)
    assert _dominant_frequency(samples[-tone:], rate) == pytest.approx(440, abs=15)
    assert failure_cue() == CUE  # deterministic
