"""One spoken request through Home Assistant's Assist pipeline, as the frontend sends it.

`assist_pipeline/run` from `stt` to `tts` over the WebSocket API, then the audio as binary
frames prefixed with the STT handler's id byte, paced at real time like a microphone; when
Home Assistant's voice activity detection hears the end (`stt-vad-end`), a frame with only the
id byte ends the stream (`ha-voice-command-dialog` does the same). Every pipeline event is
printed with its time since the end of the speech, the moment a user stops talking; the
agent's reply is fetched from the TTS URL and saved as a WAV file.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
import io
import json
from pathlib import Path
import shutil
import struct
import time
from typing import Any
import wave

from .hass_api import HomeAssistantApi

RATE = 16_000
CHUNK_SECONDS = 0.02
CHUNK_BYTES = int(RATE * CHUNK_SECONDS) * 2
LEAD_IN_SECONDS = 0.3
"""Silence before the words, as a microphone picks up before one speaks."""
TRAILING_SECONDS = 3.0
"""Silence after the words at most; the stream ends earlier at `stt-vad-end`."""
RUN_TIMEOUT = 60.0


@dataclass
class DemoResult:
    """What one run showed: the events in order, the texts, the saved reply."""

    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    heard: str | None = None
    answer: str | None = None
    wav: Path | None = None
    reply_seconds: float = 0.0
    error: str | None = None


def _summary(data: dict[str, Any]) -> str:
    """The event's data on one line, shortened."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text if len(text) <= 160 else text[:157] + "..."


async def _stream_audio(
    api: HomeAssistantApi, handler_id: int, pcm: bytes, vad_end: asyncio.Event, start: float
) -> None:
    """Send lead-in, words and trailing silence in real time from `start`.

    The stream stops at `vad_end` (or when the trailing silence is used up), then ends.
    """
    prefix = bytes([handler_id])
    silence = bytes(CHUNK_BYTES)
    lead_in = [silence] * round(LEAD_IN_SECONDS / CHUNK_SECONDS)
    words = [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]
    trailing = [silence] * round(TRAILING_SECONDS / CHUNK_SECONDS)
    sent_seconds = 0.0
    for chunk in [*lead_in, *words, *trailing]:
        if vad_end.is_set():
            break
        # An absolute schedule: no drift over the clip.
        await asyncio.sleep(max(0.0, start + sent_seconds - time.monotonic()))
        await api.send_bytes(prefix + chunk)
        sent_seconds += len(chunk) / (2 * RATE)
    await api.send_bytes(prefix)


async def run_voice_request(
    api: HomeAssistantApi, pipeline_id: str, pcm: bytes, reply_wav: Path
) -> DemoResult:
    """Run the pipeline on `pcm` (16 kHz mono), print its events, save the reply audio."""
    result = DemoResult()
    vad_end = asyncio.Event()
    sender: asyncio.Task[None] | None = None
    end_of_speech: float | None = None
    run = {
        "type": "assist_pipeline/run",
        "pipeline": pipeline_id,
        "start_stage": "stt",
        "end_stage": "tts",
        "input": {"sample_rate": RATE},
    }
    try:
        async with api.subscription(run, RUN_TIMEOUT) as events:
            async for event in events:
                now = time.monotonic()
                kind, data = event["type"], event.get("data") or {}
                if kind == "run-start":
                    handler_id = data["runner_data"]["stt_binary_handler_id"]
                    start = time.monotonic()
                    end_of_speech = start + LEAD_IN_SECONDS + len(pcm) / (2 * RATE)
                    sender = asyncio.create_task(
                        _stream_audio(api, handler_id, pcm, vad_end, start)
                    )
                elif kind == "stt-vad-end":
                    vad_end.set()
                elif kind == "stt-end":
                    result.heard = data.get("stt_output", {}).get("text")
                elif kind == "intent-end":
                    speech = data.get("intent_output", {}).get("response", {}).get("speech", {})
                    result.answer = speech.get("plain", {}).get("speech")
                elif kind == "error":
                    result.error = f"{data.get('code')}: {data.get('message')}"
                offset = now - (end_of_speech or now)
                result.events.append((offset, kind, data))
                print(f"  {offset * 1000:+7.0f} ms  {kind:<15} {_summary(data)}", flush=True)
                if kind == "tts-end" and (url := data.get("tts_output", {}).get("url")):
                    result.wav, result.reply_seconds = await _save_reply(api, url, reply_wav)
                    print(
                        f"  {(time.monotonic() - (end_of_speech or now)) * 1000:+7.0f} ms  "
                        f"reply audio saved: {result.wav} ({result.reply_seconds:.2f} s)",
                        flush=True,
                    )
                if kind in ("run-end", "error"):
                    break
    finally:
        if sender is not None:
            if not sender.done():
                vad_end.set()
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
    return result


async def _save_reply(api: HomeAssistantApi, url: str, path: Path) -> tuple[Path, float]:
    """Fetch the TTS URL and write its audio as a WAV file with exact sizes.

    Without a preferred format (the frontend asks for none) Home Assistant 2025.4 serves MP3,
    converted by ffmpeg from the agent's WAV; ffmpeg turns it back. Without ffmpeg the MP3 is
    saved as it came.
    """
    body, _ = await api.download(url)
    if not body.startswith(b"RIFF"):
        try:
            body = await _to_wav(body)
        except (OSError, RuntimeError) as err:
            path = path.with_suffix(".mp3")
            path.write_bytes(body)
            print(f"  (could not convert the reply to WAV: {err})")
            return path, 0.0
    rate, channels, width, pcm = parse_wav(body)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path, len(pcm) / (rate * channels * width)


async def _to_wav(audio: bytes) -> bytes:
    """Decode any audio ffmpeg reads into 16-bit PCM WAV (bounded in time)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed")
    process = await asyncio.create_subprocess_exec(
        ffmpeg,
        *("-hide_banner", "-loglevel", "error", "-i", "pipe:0"),
        *("-f", "wav", "-acodec", "pcm_s16le", "pipe:1"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            wav, errors = await process.communicate(audio)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError("ffmpeg took over 30 s") from None
    if process.returncode:
        raise RuntimeError(f"ffmpeg failed: {errors.decode(errors='replace').strip()}")
    return wav


def parse_wav(data: bytes) -> tuple[int, int, int, bytes]:
    """Rate, channels, sample width and PCM of a WAV, also a streamed one whose sizes are
    placeholders (the data chunk then runs to the end of the file)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    stream = io.BytesIO(data[12:])
    fmt: tuple[int, int, int] | None = None
    while header := stream.read(8):
        if len(header) < 8:
            break
        chunk_id, size = struct.unpack("<4sI", header)
        if chunk_id == b"fmt ":
            body = stream.read(size)
            _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            fmt = (rate, channels, bits // 8)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError("WAV data before its format")
            pcm = stream.read() if size in (0, 0xFFFFFFFF) else stream.read(size)
            return (*fmt, pcm[: len(pcm) - len(pcm) % (fmt[1] * fmt[2])])
        else:
            stream.seek(size + size % 2, io.SEEK_CUR)
    raise ValueError("WAV without a data chunk")
