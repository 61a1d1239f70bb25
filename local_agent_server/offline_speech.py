"""Real offline speech engines: pocketsphinx hears, espeak-ng speaks.

They plug into the server beside the deterministic test pair (`engines.py`) so that the demo
hears and says real words with no network. Both come from registries: pocketsphinx from PyPI
(its wheel ships an English acoustic model, dictionary and language model), espeak-ng from
Debian (`apt install espeak-ng`). Neither is imported until an engine is first used, so the
server imports without them.

Recognising espeak-ng's voice with pocketsphinx's free language model is poor; with the audio
resampled properly and a JSGF grammar of the sentences the demo supports it is reliable, so a
grammar is the default and the free language model is the fallback for `sentences=None`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
import math
import re
import shutil
import struct
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from .layercode_client import AGENT_RATE, SAMPLE_WIDTH, WIRE_INPUT_RATE, to_pcm

type Decoder = Any
"""A `pocketsphinx.Decoder` (the package has no type information)."""

DEMO_SENTENCES: tuple[str, ...] = (
    "hello",
    "what time is it",
    *(
        f"turn {state} the {room} light"
        for state in ("on", "off")
        for room in ("kitchen", "living room", "bedroom")
    ),
)
"""What the demo understands: a greeting, the time, and the lights of three rooms."""

DECODER_RATE = 16_000
"""pocketsphinx's English model is trained on 16 kHz audio."""
NOISE_FLOOR = 100.0
"""RMS of the white noise added before decoding, about -50 dBFS (see `_noise_floor`)."""


class SpeechEngineMissing(RuntimeError):
    """An offline engine's package or program is not installed; the message says how to."""


# Resampling.


@dataclass(frozen=True, slots=True)
class _Kernel:
    """A Kaiser-windowed sinc low-pass, tabulated for every output phase of one rate ratio."""

    up: int
    down: int
    half_width: int
    taps: npt.NDArray[np.float64]
    """Shape (up, 2 * half_width): weights of inputs `floor(pos) - half_width + 1 ...`."""


def _kernel(in_rate: int, out_rate: int, zero_crossings: int = 16, beta: float = 8.6) -> _Kernel:
    gcd = math.gcd(in_rate, out_rate)
    up, down = out_rate // gcd, in_rate // gcd
    # Cut off a little below the lower Nyquist rate, so that aliases land > 80 dB down.
    cutoff = 0.94 * min(1.0, up / down)
    half_width = math.ceil(zero_crossings / cutoff)
    offsets = np.arange(-half_width + 1, half_width + 1)
    phases = np.arange(up)[:, None] / up
    distance = phases - offsets[None, :]
    window = np.i0(beta * np.sqrt(np.clip(1 - (distance / half_width) ** 2, 0, None)))
    taps = cutoff * np.sinc(cutoff * distance) * window
    taps /= taps.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    return _Kernel(up, down, half_width, taps)


class Resampler:
    """Streaming band-limited resampling of 16-bit mono PCM between any two rates.

    Chunks of any size go in; the output is the same as resampling the whole signal at once,
    delayed by nothing (every output sample is centred on its input position). Linear
    interpolation is not enough for recognition: it leaves images of the speech above the
    old Nyquist rate, which pocketsphinx hears as noise.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._kernel = _kernel(in_rate, out_rate)
        # Input samples from absolute index `_start`, zero-padded before the first one.
        self._buffer: npt.NDArray[np.float64] = np.zeros(self._kernel.half_width)
        self._start = -self._kernel.half_width
        self._received = 0
        self._produced = 0
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk; returns the output samples it completes."""
        data = self._odd_byte + pcm
        usable = len(data) - len(data) % SAMPLE_WIDTH
        self._odd_byte = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float64)
        self._received += len(samples)
        return to_pcm(self._consume(samples, final=False))

    def flush(self) -> bytes:
        """The output samples still held back for look-ahead; the stream is over."""
        return to_pcm(self._consume(np.zeros(self._kernel.half_width), final=True))

    def _consume(self, samples: npt.NDArray[np.float64], *, final: bool) -> npt.NDArray[np.float64]:
        kernel = self._kernel
        self._buffer = np.concatenate((self._buffer, samples))
        last_input = self._start + len(self._buffer) - 1
        # Output n sits at input position n * down / up and needs inputs up to
        # floor(position) + half_width.
        end = (last_input - kernel.half_width + 1) * kernel.up // kernel.down
        if final:
            end = min(end, -(-self._received * kernel.up // kernel.down))
        outputs = np.arange(self._produced, max(self._produced, end))
        self._produced += len(outputs)
        numerators = outputs * kernel.down
        bases = numerators // kernel.up
        phases = numerators % kernel.up
        first = bases - kernel.half_width + 1 - self._start
        window = first[:, None] + np.arange(2 * kernel.half_width)[None, :]
        result: npt.NDArray[np.float64] = np.einsum(
            "ij,ij->i", self._buffer[window], kernel.taps[phases]
        )
        # Keep what the next output still needs.
        keep_from = self._produced * kernel.down // kernel.up - kernel.half_width + 1
        drop = max(0, keep_from - self._start)
        self._buffer = self._buffer[drop:]
        self._start += drop
        return result


def resample(pcm: bytes, in_rate: int, out_rate: int) -> bytes:
    """Resample a whole clip of 16-bit mono PCM."""
    if in_rate == out_rate:
        return pcm
    resampler = Resampler(in_rate, out_rate)
    return resampler.process(pcm) + resampler.flush()


# Speech to text.


def _words(sentence: str) -> list[str]:
    """Lower-case words without punctuation, as the dictionary spells them."""
    return re.findall(r"[a-z']+", sentence.lower())


_GRAMMAR_NAME = "demo"


def jsgf_grammar(sentences: Iterable[str], name: str = _GRAMMAR_NAME) -> str:
    """A JSGF grammar whose only public rule is any one of `sentences`."""
    alternatives = [" ".join(_words(sentence)) for sentence in sentences]
    alternatives = [a for a in dict.fromkeys(alternatives) if a]
    if not alternatives:
        raise ValueError("a grammar needs at least one sentence with words")
    body = "\n    | ".join(f"( {a} )" for a in alternatives)
    return f"#JSGF V1.0;\ngrammar {name};\npublic <sentence> =\n      {body} ;\n"


def _import_pocketsphinx() -> Any:
    """The pocketsphinx module, imported only when an engine needs it (it is optional)."""
    try:
        import pocketsphinx  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError as err:
        raise SpeechEngineMissing(
            "pocketsphinx is not installed: pip install pocketsphinx "
            "(it is pinned in requirements/ha-*.txt)"
        ) from err
    return pocketsphinx


class PocketsphinxSpeechToText:
    """Speech to text with pocketsphinx's English model, restricted to known sentences.

    `sentences` (default: what the demo understands) become a JSGF grammar, and the result is
    always one of them (or empty); `None` uses the free language model, which hears anything,
    badly. Decoding runs in the event loop's executor, one utterance at a time (a decoder is
    not thread-safe); the model loads on first use, or in `prepare`.
    """

    def __init__(self, sentences: Sequence[str] | None = DEMO_SENTENCES) -> None:
        self._grammar = None if sentences is None else jsgf_grammar(sentences)
        self._vocabulary = sorted({w for s in sentences or () for w in _words(s)})
        self._decoder: Decoder | None = None
        self._lock = threading.Lock()

    async def prepare(self) -> None:
        """Load the model now rather than on the first turn; raises if it cannot."""
        await asyncio.get_running_loop().run_in_executor(None, self._ensure_decoder)

    async def interim(self, pcm: bytes) -> str:
        """The best guess for the audio so far; empty while a decode is running."""
        if self._lock.locked():
            return ""  # don't hold up the session's audio behind a guess
        return await self._run(pcm, partial=True)

    async def transcribe(self, pcm: bytes) -> str:
        """The words of a whole user turn (8 kHz PCM); empty when nothing was recognised."""
        return await self._run(pcm, partial=False)

    async def _run(self, pcm: bytes, *, partial: bool) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._decode, pcm, partial)

    def _ensure_decoder(self) -> Decoder:
        with self._lock:
            return self._load()

    def _load(self) -> Decoder:
        if self._decoder is not None:
            return self._decoder
        pocketsphinx = _import_pocketsphinx()
        if self._grammar is None:
            decoder = pocketsphinx.Decoder(samprate=DECODER_RATE, loglevel="FATAL")
        else:
            # No language model to load (a third of the time) when a grammar replaces it.
            decoder = pocketsphinx.Decoder(samprate=DECODER_RATE, loglevel="FATAL", lm=None)
            unknown = [w for w in self._vocabulary if decoder.lookup_word(w) is None]
            if unknown:
                raise ValueError(f"not in pocketsphinx's dictionary: {', '.join(unknown)}")
            decoder.add_jsgf_string(_GRAMMAR_NAME, self._grammar)
            decoder.activate_search(_GRAMMAR_NAME)
        self._decoder = decoder
        return decoder

    def _decode(self, pcm: bytes, partial: bool) -> str:
        audio = _noise_floor(resample(pcm, WIRE_INPUT_RATE, DECODER_RATE))
        with self._lock:
            decoder = self._load()
            decoder.start_utt()
            decoder.process_raw(audio, full_utt=True)
            # Before end_utt the hypothesis may stop inside a sentence, which suits a guess.
            hypothesis = decoder.hyp() if partial else None
            decoder.end_utt()
            if not partial:
                hypothesis = decoder.hyp()
        return "" if hypothesis is None else str(hypothesis.hypstr)


def _noise_floor(pcm: bytes, level: float = NOISE_FLOOR) -> bytes:
    """`pcm` with a faint, fixed white noise added over the whole band.

    pocketsphinx's noise estimate and feature normalisation go wrong on digital silence and on
    the empty band above the 8 kHz wire's 4 kHz: synthetic speech sent as 8 kHz was recognised
    in 1 of 8 demo sentences as it is, and in 8 of 8 with this floor, which is below a real
    microphone's own noise. The seed is fixed, so a transcript never varies between runs.
    """
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return to_pcm(samples + np.random.default_rng(0).normal(0.0, level, len(samples)))


# Text to speech.

ESPEAK = "espeak-ng"
_WAV_HEADER_BYTES = 44


class EspeakTextToSpeech:
    """Text to speech with the espeak-ng program, streamed as 16 kHz PCM while it speaks.

    espeak-ng writes a WAV stream (22,050 Hz) to stdout as it synthesizes; each chunk is
    resampled as it arrives. `voice` and `words_per_minute` are espeak-ng's `-v` and `-s`.
    """

    def __init__(
        self,
        *,
        voice: str = "en-us",
        words_per_minute: int = 150,
        chunk_ms: float = 100.0,
        executable: str = ESPEAK,
    ) -> None:
        self._voice = voice
        self._speed = words_per_minute
        self._chunk_bytes = max(SAMPLE_WIDTH, round(chunk_ms * AGENT_RATE / 1000) * SAMPLE_WIDTH)
        self._executable = executable

    def program(self) -> str:
        """The path of espeak-ng; raises `SpeechEngineMissing` when it is not installed."""
        path = shutil.which(self._executable)
        if path is None:
            raise SpeechEngineMissing(
                f"{self._executable} not found: install espeak-ng (apt install espeak-ng)"
            )
        return path

    async def synthesize(self, text: str) -> AsyncGenerator[bytes]:
        """Chunks of `chunk_ms` (the last may be shorter) while espeak-ng speaks `text`."""
        process = await asyncio.create_subprocess_exec(
            self.program(),
            "--stdout",
            "-v",
            self._voice,
            "-s",
            str(self._speed),
            "--stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        # Text on stdin: nothing in it can be taken for an option.
        process.stdin.write(text.encode() + b"\n")
        process.stdin.close()
        try:
            rate = _wav_rate(await process.stdout.readexactly(_WAV_HEADER_BYTES))
            resampler = Resampler(rate, AGENT_RATE)
            pending = bytearray()
            while data := await process.stdout.read(8192):
                pending += resampler.process(data)
                while len(pending) >= self._chunk_bytes:
                    yield bytes(pending[: self._chunk_bytes])
                    del pending[: self._chunk_bytes]
            pending += resampler.flush()
            if pending:
                yield bytes(pending)
            if await process.wait():
                raise RuntimeError(await self._failure(process))
        except asyncio.IncompleteReadError as err:
            await process.wait()
            raise RuntimeError(await self._failure(process)) from err
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def _failure(self, process: asyncio.subprocess.Process) -> str:
        assert process.stderr is not None
        stderr = (await process.stderr.read()).decode(errors="replace").strip()
        return f"espeak-ng failed (exit {process.returncode}): {stderr or 'no message'}"


def _wav_rate(header: bytes) -> int:
    """The sample rate of espeak-ng's canonical 44-byte mono 16-bit WAV header."""
    riff, _, wave, fmt, _, audio_format, channels, rate, _, _, bits, data, _ = struct.unpack(
        "<4sI4s4sIHHIIHH4sI", header
    )
    if (riff, wave, fmt, data) != (b"RIFF", b"WAVE", b"fmt ", b"data") or (
        audio_format,
        channels,
        bits,
    ) != (1, 1, 16):
        raise RuntimeError("espeak-ng did not write 16-bit mono PCM WAV")
    return int(rate)
