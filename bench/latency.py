"""Section 2: latency the client adds, per turn, against a bare aiohttp WebSocket.

Inbound: from handing the user's last 10 ms chunk to `send_audio` (then `end_user_speech`,
as the STT entity does) to the local server taking the frame with that audio off its socket.
Outbound: from the server handing a `response.audio` frame to its socket to its PCM coming
out of `AgentTurn.audio_stream()` in the TTS-like reader. The server runs in its own process
on the other core and stamps with the same monotonic clock (bench/agent_process.py).

The baseline, interleaved turn by turn in the same run: a bare aiohttp WebSocket to an echo
endpoint in the same server process. Inbound, the same last frame goes from `send_str` to the
echo's receive; outbound, the same agent frames go from the echo's `send_str` to the bare
client's `receive()`. The difference is what the client's own code adds.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np

from custom_components.layercode.client import AgentTurn
from custom_components.layercode.client.audio import FRAME_BYTES, Decimator, FrameBatcher
from custom_components.layercode.client.messages import client_audio
from local_agent_server import ToneTextToSpeech

from .agent_process import AgentProcess
from .audio_path import agent_frames
from .client import BenchConversation
from .common import (
    CLIENT_CPU,
    SectionResult,
    chunked,
    core_snapshot,
    describe_contention,
    ms,
    p50_p99,
    percentile,
    pin,
    quick,
    speech,
)

TARGET_MS = 5.0
"""p99 milliseconds above the bare socket, per direction."""
ANSWER = "OK, done."
"""The agent's answer: 450 ms of tone, five `response.audio` frames."""
WARMUP_TURNS = 20
SETTLE = 0.003
"""Pause before the last chunk, as the 10 ms pacing of a real stream would leave."""


def _last_frame(chunks: list[bytes]) -> str:
    """The wire frame that carries an utterance's last chunk, built as the session builds it."""
    batcher = FrameBatcher(2 * FRAME_BYTES)
    decimator = Decimator()
    last = b""
    for chunk in chunks:
        for block in batcher.push(chunk):
            last = decimator.process(block)
    if rest := decimator.process(batcher.flush()):
        last = rest
    return json.dumps(client_audio(last), separators=(",", ":"), ensure_ascii=False)


async def _tone_frames() -> list[str]:
    """The agent's answer as the server frames it (sizes and field lengths alike)."""
    pcm = b"".join([chunk async for chunk in ToneTextToSpeech().synthesize(ANSWER)])
    return [frame.replace("turn_bench", "turn_0123456789abcdef") for frame in agent_frames(pcm)]


async def run() -> SectionResult:
    """Interleave client turns and bare echoes; write p50/p99 of both."""
    pin(CLIENT_CPU)
    turns = 60 if quick() else 1000
    result = SectionResult("latency", "2. Latency added inside the client")
    # Utterances of 300..390 ms: the last chunk lands at every position in a frame.
    utterances = [chunked(speech(0.30 + 0.01 * i, seed=i)) for i in range(10)]
    last_frames = [_last_frame(chunks) for chunks in utterances]
    agent_out = await _tone_frames()

    seen: dict[str, float] = {}

    def on_chunk(turn: AgentTurn, index: int, at: float) -> None:
        seen[f"{turn.turn_id}/{index}"] = at

    handed_over: list[float] = []
    bare_sent: list[float] = []
    bare_received: list[float] = []
    agent = AgentProcess.start(answer=ANSWER)
    before = core_snapshot()
    try:
        async with aiohttp.ClientSession() as http:
            conversation = BenchConversation(http, agent, on_chunk=on_chunk)
            await conversation.connect()
            session = conversation.session
            bare = await http.ws_connect(agent.echo_url, max_msg_size=0)
            for turn in range(turns + WARMUP_TURNS):
                chunks = utterances[turn % len(utterances)]
                over = conversation.expect_turn_over()
                await session.begin_user_speech()
                for chunk in chunks[:-1]:
                    await session.send_audio(chunk)
                await asyncio.sleep(SETTLE)
                handed_over.append(time.monotonic())
                await session.send_audio(chunks[-1])
                await session.end_user_speech()
                await over.wait(10)

                await asyncio.sleep(SETTLE)
                bare_sent.append(time.monotonic())
                await bare.send_str(last_frames[turn % len(last_frames)])
                await bare.receive()
                for frame in agent_out:
                    await bare.send_str(frame)
                for _ in agent_out:
                    await bare.receive()
                    bare_received.append(time.monotonic())
            await bare.close()
            await conversation.close()
    finally:
        after = core_snapshot()
        stamps = await agent.async_stop()
    elapsed = after.at - before.at

    # Inbound: handover -> server receipt, per turn (warm-up turns dropped).
    received = stamps.last_audio_received
    client_in = np.array(
        [r - h for h, r in zip(handed_over, received, strict=True) if r is not None]
    )[WARMUP_TURNS:]
    per_turn = len(agent_out) + 1
    bare_in = np.array(
        [stamps.echo_received[i * per_turn] - sent for i, sent in enumerate(bare_sent)]
    )[WARMUP_TURNS:]
    # Outbound: server send -> PCM out of audio_stream, every frame of every turn.
    client_out_all = [seen[key] - sent for key, sent in stamps.audio_sent.items() if key in seen]
    frames_per_turn = len(agent_out)
    client_out = np.array(client_out_all[WARMUP_TURNS * frames_per_turn :])
    echo_sent = [
        stamps.echo_sent[i * per_turn + 1 + j]
        for i in range(len(bare_sent))
        for j in range(frames_per_turn)
    ]
    bare_out = np.array([got - sent for sent, got in zip(echo_sent, bare_received, strict=True)])[
        WARMUP_TURNS * frames_per_turn :
    ]
    first_out = client_out.reshape(-1, frames_per_turn)[:, 0]
    bare_first_out = bare_out.reshape(-1, frames_per_turn)[:, 0]

    runs_in = f"{len(client_in)} turns"
    runs_out = f"{len(client_in)} turns, {len(client_out)} frames"
    unit = "ms p50 / p99"
    result.add(
        "Inbound: last chunk handed over -> frame off the server's socket",
        p50_p99(client_in),
        unit,
        runs_in,
    )
    result.add(
        "Inbound baseline: bare aiohttp send_str -> echo's receive", p50_p99(bare_in), unit, runs_in
    )
    added_in = percentile(client_in, 99) - percentile(bare_in, 99)
    result.add(
        "Inbound: client's p99 above the bare socket's",
        ms(added_in),
        "ms",
        runs_in,
        f"< {TARGET_MS:g}",
        added_in * 1000 < TARGET_MS,
    )
    result.add(
        "Outbound: server send -> PCM out of AgentTurn.audio_stream",
        p50_p99(client_out),
        unit,
        runs_out,
    )
    result.add(
        "Outbound baseline: echo's send_str -> bare receive()", p50_p99(bare_out), unit, runs_out
    )
    added_out = percentile(client_out, 99) - percentile(bare_out, 99)
    result.add(
        "Outbound: client's p99 above the bare socket's",
        ms(added_out),
        "ms",
        runs_out,
        f"< {TARGET_MS:g}",
        added_out * 1000 < TARGET_MS,
    )
    result.add(
        "Outbound, first frame of each turn only (client vs bare)",
        f"{p50_p99(first_out)} vs {p50_p99(bare_first_out)}",
        unit,
        runs_in,
    )
    result.notes.append(
        f"{turns} turns (+{WARMUP_TURNS} warm-up) of 300-390 ms of speech, unpaced except a "
        f"{SETTLE * 1000:g} ms pause before the last chunk; the agent answers each with "
        f"{frames_per_turn} response.audio frames (450 ms), which the server sends back to back, "
        "so later frames of a turn queue behind earlier ones in both the client and the "
        f"baseline. Client on core {CLIENT_CPU}, server on the other core; {elapsed:.0f} s; "
        f"{describe_contention(before, after)}."
    )
    result.data = {
        "client_in_ms": (client_in * 1000).round(4),
        "bare_in_ms": (bare_in * 1000).round(4),
        "client_out_ms": (client_out * 1000).round(4),
        "bare_out_ms": (bare_out * 1000).round(4),
    }
    return result


def main() -> None:
    """Run the section and write its result."""
    asyncio.run(run()).write()


if __name__ == "__main__":
    main()
