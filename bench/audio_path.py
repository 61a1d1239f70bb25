"""Section 1: CPU time per second of audio on the client's two audio paths.

Inbound is what `LayercodeSession.send_audio` / `end_user_speech` do with the STT entity's
16 kHz 10 ms chunks (FrameBatcher -> Decimator -> level -> `client.audio` JSON); outbound is
what a `response.audio` frame costs until the TTS entity has its PCM (parse + base64 decode
-> PcmConverter, as tts.py uses it). Each is measured twice:

- the exact functions the session calls, in a loop (no socket, no event loop): the cost of
  the client's own code;
- the real `LayercodeSession` against the local agent server (in its own process on the other
  core), the whole client process's CPU: that adds aiohttp's WebSocket and the event loop.

The baseline, measured in the same run on the same bytes, only base64-encodes and JSON-wraps
them in frames of the same duration: the least any client must do. A bare aiohttp WebSocket
sending and receiving the wire frames shows what the socket alone costs. All CPU is
`time.process_time()`; figures are the median over runs.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from functools import partial
import json
import time

import aiohttp

from custom_components.layercode.client import AmplitudeChanged
from custom_components.layercode.client.audio import (
    AGENT_RATE,
    FRAME_BYTES,
    Decimator,
    FrameBatcher,
    PcmConverter,
    rms_level,
)
from custom_components.layercode.client.messages import (
    ResponseAudio,
    client_audio,
    parse_server_message,
)

from .agent_process import AgentProcess
from .client import BenchConversation
from .common import (
    CLIENT_CPU,
    SectionResult,
    chunked,
    core_snapshot,
    describe_contention,
    median,
    pin,
    quick,
    speech,
)

TARGET_MS = 2.0
"""CPU milliseconds per second of audio, per direction."""
AGENT_CHUNK_BYTES = AGENT_RATE // 10 * 2
"""The local server (like Layercode) sends 100 ms per `response.audio` frame."""


def _compact(message: Mapping[str, object]) -> str:
    """How the session serialises a client message."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def inbound_client(chunks: list[bytes]) -> int:
    """The body of `send_audio` for every chunk, then `end_user_speech`'s flush."""
    batcher = FrameBatcher(2 * FRAME_BYTES)
    decimator = Decimator()
    sent = 0
    for chunk in chunks:
        for block in batcher.push(chunk):
            frame = decimator.process(block)
            AmplitudeChanged("user", rms_level(frame))
            sent += len(_compact(client_audio(frame)))
    rest = decimator.process(batcher.flush())
    if rest:
        sent += len(_compact(client_audio(rest)))
    return sent


def inbound_baseline(blocks: list[bytes]) -> int:
    """Base64 and JSON only, on the same 16 kHz bytes, one frame's duration at a time."""
    sent = 0
    for block in blocks:
        message = {"type": "client.audio", "content": base64.b64encode(block).decode("ascii")}
        sent += len(_compact(message))
    return sent


def agent_frames(pcm: bytes) -> list[str]:
    """`response.audio` frames as the local server sends them (100 ms each)."""
    return [
        json.dumps(
            {
                "type": "response.audio",
                "content": base64.b64encode(chunk).decode("ascii"),
                "delta_id": index,
                "turn_id": "turn_bench",
            },
            ensure_ascii=False,
        )
        for index, chunk in enumerate(chunked(pcm, AGENT_CHUNK_BYTES))
    ]


def outbound_client(frames: list[str], rate: int, channels: int, width: int) -> int:
    """What a frame costs until the TTS stream has its PCM: parse, decode, convert."""
    converter = PcmConverter(AGENT_RATE, rate, channels, width)
    out = 0
    for raw in frames:
        message = parse_server_message(raw)
        assert isinstance(message, ResponseAudio)
        out += len(converter.process(message.pcm))
    return out


def outbound_baseline(chunks: list[bytes]) -> int:
    """Base64 and JSON only, on the same 16 kHz PCM chunks."""
    return sum(
        len(json.dumps({"type": "response.audio", "content": base64.b64encode(c).decode()}))
        for c in chunks
    )


def _cpu(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


class _Runs:
    """CPU milliseconds per audio second, per kind of run, collected round by round."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.values: dict[str, list[float]] = {}
        self.recording = False

    def add(self, kind: str, cpu_seconds: float) -> None:
        if self.recording:
            self.values.setdefault(kind, []).append(cpu_seconds * 1000 / self.seconds)


async def _session_turn(
    conversation: BenchConversation, chunks: list[bytes]
) -> tuple[float, float]:
    """One turn through the real session: CPU while `send_audio` streams the utterance, then
    CPU from the end of speech until the agent's reply has gone through the TTS reader."""
    session = conversation.session
    over = conversation.expect_turn_over()
    await session.begin_user_speech()
    start = time.process_time()
    for chunk in chunks:
        await session.send_audio(chunk)
    await session.end_user_speech()
    inbound = time.process_time() - start
    start = time.process_time()
    await over.wait(60)
    return inbound, time.process_time() - start


async def _bare_send(ws: aiohttp.ClientWebSocketResponse, frames: list[str]) -> float:
    """A bare aiohttp WebSocket sending the same wire frames to a sink."""
    start = time.process_time()
    for frame in frames:
        await ws.send_str(frame)
    return time.process_time() - start


async def _bare_receive(ws: aiohttp.ClientWebSocketResponse) -> float:
    """A bare aiohttp WebSocket receiving the same `response.audio` frames, sent on `go`."""
    start = time.process_time()
    await ws.send_str("go")
    while (await ws.receive()).data != "done":
        pass
    return time.process_time() - start


def _row(
    result: SectionResult,
    name: str,
    values: list[float],
    baseline: float,
    runs: str,
    *,
    target: bool,
) -> None:
    value = median(values)
    text = f"{value:.3f} (x{value / baseline:.1f})"
    if target:
        result.add(
            name, text, "CPU ms per audio s (ratio)", runs, f"< {TARGET_MS:g}", value < TARGET_MS
        )
    else:
        result.add(name, text, "CPU ms per audio s (ratio)", runs)


async def run() -> SectionResult:
    """Measure both directions, every kind of run once per round, and write the figures."""
    pin(CLIENT_CPU)
    seconds = 6.0 if quick() else 30.0
    rounds = 2 if quick() else 7
    result = SectionResult("audio_path", "1. Audio path cost (CPU per second of audio)")
    runs_text = f"{rounds} runs x {seconds:g} s"

    mic = speech(seconds)
    chunks = chunked(mic)
    blocks = chunked(mic, 2 * FRAME_BYTES)
    wire_frames = [_compact(client_audio(b)) for b in chunked(mic[::2], FRAME_BYTES)]
    agent_pcm = speech(seconds, AGENT_RATE, seed=2)
    agent_chunks = chunked(agent_pcm, AGENT_CHUNK_BYTES)
    frames = agent_frames(agent_pcm)
    conversions = {
        "16 kHz mono (the entity's own WAV, no conversion asked)": (16_000, 1),
        "22.05 kHz mono": (22_050, 1),
        "48 kHz stereo": (48_000, 2),
    }

    runs = _Runs(seconds)
    agent = AgentProcess.start(answer="x" * round(seconds * 20))  # 50 ms of tone per char
    before = core_snapshot()
    try:
        async with aiohttp.ClientSession() as http:
            conversation = BenchConversation(http, agent)
            await conversation.connect()
            sink = await http.ws_connect(agent.echo_url.replace("/echo", "/sink"))
            replay = await http.ws_connect(
                agent.echo_url.replace("/echo", "/replay"), max_msg_size=0
            )
            for frame in frames:
                await replay.send_str(frame)
            for round_ in range(rounds + 1):  # round 0 warms up
                runs.recording = round_ > 0
                runs.add("base_in", _cpu(lambda: inbound_baseline(blocks)))
                runs.add("client_in", _cpu(lambda: inbound_client(chunks)))
                runs.add("base_out", _cpu(lambda: outbound_baseline(agent_chunks)))
                for label, (rate, channels) in conversions.items():
                    runs.add(label, _cpu(partial(outbound_client, frames, rate, channels, 2)))
                session_in, session_out = await _session_turn(conversation, chunks)
                runs.add("session_in", session_in)
                runs.add("session_out", session_out)
                runs.add("bare_in", await _bare_send(sink, wire_frames))
                runs.add("bare_out", await _bare_receive(replay))
                await asyncio.sleep(0.05)
            await sink.close()
            await replay.close()
            await conversation.close()
    finally:
        after = core_snapshot()
        await agent.async_stop()

    values = runs.values
    b_in, b_out = median(values["base_in"]), median(values["base_out"])
    unit = "CPU ms per audio s (ratio)"
    result.add(
        "Inbound baseline: base64 + JSON of the same 16 kHz bytes",
        f"{b_in:.3f} (x1.0)",
        unit,
        runs_text,
    )
    _row(
        result,
        "Inbound client code: batch, decimate, level, encode",
        values["client_in"],
        b_in,
        runs_text,
        target=True,
    )
    _row(
        result,
        "Inbound bare aiohttp WebSocket send of the 8 kHz frames",
        values["bare_in"],
        b_in,
        runs_text,
        target=False,
    )
    _row(
        result,
        "Inbound LayercodeSession.send_audio to local server (process)",
        values["session_in"],
        b_in,
        runs_text,
        target=True,
    )
    result.add(
        "Outbound baseline: base64 + JSON of the same 16 kHz bytes",
        f"{b_out:.3f} (x1.0)",
        unit,
        runs_text,
    )
    for label in conversions:
        _row(
            result,
            f"Outbound client code: parse, decode, convert to {label}",
            values[label],
            b_out,
            runs_text,
            target=True,
        )
    _row(
        result,
        "Outbound bare aiohttp WebSocket receive of the frames",
        values["bare_out"],
        b_out,
        runs_text,
        target=False,
    )
    _row(
        result,
        "Outbound local server -> session -> audio_stream -> PcmConverter (process)",
        values["session_out"],
        b_out,
        runs_text,
        target=True,
    )
    result.notes.append(
        "Client code rows run the exact functions LayercodeSession and tts.py call, in a loop. "
        "Process rows drive the real LayercodeSession against the local agent server (its own "
        "process, other core) and count all CPU of the client process, so they include "
        "aiohttp's WebSocket and the event loop (the bare WebSocket rows show that part alone). "
        "Audio goes in unpaced; the client and the server are pinned to separate cores. Every "
        f"kind of run is done once per round, {rounds} rounds after a warm-up round, so that "
        "load from other work on the machine falls on all of them alike; medians; "
        f"{describe_contention(before, after)}."
    )
    result.data = values
    return result


def main() -> None:
    """Run the section and write its result."""
    asyncio.run(run()).write()


if __name__ == "__main__":
    main()
