"""PCM helpers: resampling Home Assistant's 16 kHz audio to Layercode's 8 kHz, framing, levels.

All audio here is signed 16-bit little-endian mono PCM.
"""

from __future__ import annotations

from collections.abc import Iterator
import math
from typing import Any, cast

import numpy as np
import numpy.typing as npt

SAMPLE_WIDTH = 2
MIC_RATE = 16_000
"""What Home Assistant's Assist pipeline hands to an STT entity."""
WIRE_INPUT_RATE = 8_000
"""What Layercode expects in `client.audio`."""
AGENT_RATE = 16_000
"""What Layercode sends in `response.audio` (not announced in-band)."""
FRAME_BYTES = 1792
"""One `client.audio` frame: 896 samples, 112 ms at 8 kHz, the official browser SDK's size."""

_FULL_SCALE = 32768.0


def _lowpass_taps(num_taps: int, cutoff: float) -> npt.NDArray[np.float64]:
    """Blackman-windowed sinc low-pass; `cutoff` is a fraction of the input Nyquist rate."""
    n = np.arange(num_taps) - (num_taps - 1) / 2
    taps = cutoff * np.sinc(cutoff * n) * np.blackman(num_taps)
    result: npt.NDArray[np.float64] = taps / taps.sum()
    return result


class Decimator:
    """Streaming integer-ratio downsampler with an anti-aliasing filter.

    Chunks of any size go in; state carries over, so the output is the same as if the
    whole signal had been resampled at once.

    Only the output samples that are kept are computed (a polyphase filter): tap `j` of
    the low-pass only ever meets input samples whose index differs from the output's by
    `j`, so the taps are split by `j % factor` and each set is convolved with the input
    samples of the matching phase, `factor` times fewer of each. The sum is the filtered
    signal at the kept positions, as convolving every input sample and striding would give.
    """

    def __init__(self, in_rate: int = MIC_RATE, out_rate: int = WIRE_INPUT_RATE) -> None:
        if in_rate % out_rate:
            raise ValueError(f"{in_rate} Hz is not a multiple of {out_rate} Hz")
        self._factor = factor = in_rate // out_rate
        # Pass band up to 85 % of the output's Nyquist rate; 6 kHz at 16 kHz is > 70 dB down.
        self._taps = _lowpass_taps(16 * factor * 4 - 1, 0.85 / factor)
        span = len(self._taps) - 1
        # Taps r, r + factor, ...: reversed (np.correlate with them is np.convolve, without
        # the copy np.convolve makes per call), with where their input samples start
        # relative to the first kept output's window.
        self._phases = [
            (
                np.ascontiguousarray(self._taps[r::factor][::-1]),
                span - r - factor * (len(self._taps[r::factor]) - 1),
            )
            for r in range(factor)
        ]
        self._history: npt.NDArray[np.float64] = np.zeros(span)
        self._phase = 0
        """Where the next kept output lies, in input samples from the start of a chunk."""
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk; returns whatever output samples it completes."""
        return to_pcm(self.process_samples(pcm))

    def process_samples(self, pcm: bytes) -> npt.NDArray[np.float64]:
        """`process`, before rounding to 16-bit PCM: the output samples as floats."""
        samples, self._odd_byte = _whole_samples(self._odd_byte + pcm)
        if not len(samples):
            return _NO_SAMPLES
        factor = self._factor
        start = self._phase
        signal: npt.NDArray[np.float64] = np.concatenate((self._history, samples))
        self._history = signal[len(samples) :]
        # Filter outputs (one per input sample) start..len(samples) in steps of factor.
        count = -((start - len(samples)) // factor)
        self._phase = (start - len(samples)) % factor
        if count <= 0:
            return _NO_SAMPLES
        picked: npt.NDArray[np.float64] | None = None
        for taps, skip in self._phases:
            first = start + skip
            inputs = signal[first : first + factor * (count + len(taps) - 2) + 1 : factor]
            part = cast("npt.NDArray[np.float64]", np.correlate(inputs, taps, mode="valid"))
            picked = part if picked is None else picked + part
        assert picked is not None
        return picked

    def reset(self) -> None:
        """Forget the filter state (a new utterance)."""
        self._history[:] = 0
        self._phase = 0
        self._odd_byte = b""


_NO_SAMPLES: npt.NDArray[np.float64] = np.zeros(0)


def _whole_samples(pcm: bytes) -> tuple[npt.NDArray[np.float64], bytes]:
    """The whole 16-bit samples in `pcm` as floats, and the odd byte left over for later."""
    usable = len(pcm) - len(pcm) % SAMPLE_WIDTH
    return np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64), pcm[usable:]


def to_pcm(samples: npt.NDArray[np.float64]) -> bytes:
    """Round and clip float samples (full scale 32768) to 16-bit PCM."""
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


class FrameBatcher:
    """Cuts a byte stream into fixed-size frames, keeping the remainder for later."""

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    def push(self, data: bytes) -> Iterator[bytes]:
        """Add bytes and yield every complete frame."""
        self._pending += data
        while len(self._pending) >= self.frame_bytes:
            frame = bytes(self._pending[: self.frame_bytes])
            del self._pending[: self.frame_bytes]
            yield frame

    def flush(self) -> bytes:
        """Return and clear what is left (less than a frame)."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest

    def clear(self) -> None:
        """Drop what is left."""
        self._pending.clear()


def rms_level(pcm: bytes) -> float:
    """RMS level of 16-bit PCM as a fraction of full scale, 0 to 1."""
    count = len(pcm) // SAMPLE_WIDTH
    if not count:
        return 0.0
    return sample_level(np.frombuffer(pcm, dtype="<i2", count=count).astype(np.float64))


def sample_level(samples: npt.NDArray[np.float64]) -> float:
    """`rms_level` of float samples (full scale 32768), such as `Decimator.process_samples`.

    Of samples not yet rounded to PCM it differs from the PCM's level by the rounding only
    (at most 0.5 / 32768).
    """
    if not len(samples):
        return 0.0
    return min(1.0, math.sqrt(float(np.dot(samples, samples)) / len(samples)) / _FULL_SCALE)


def duration_seconds(pcm: bytes, rate: int) -> float:
    """Length of 16-bit mono PCM at `rate`."""
    return len(pcm) / (SAMPLE_WIDTH * rate)


def streaming_wav_header(rate: int, channels: int = 1, sample_width: int = SAMPLE_WIDTH) -> bytes:
    """A PCM WAV header for a stream of unknown length (sizes 0xFFFFFFFF).

    Home Assistant 2026.11 and ffmpeg both read this as "until the end of the stream".
    """
    unknown = 0xFFFFFFFF
    return b"".join(
        (
            b"RIFF",
            unknown.to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"),  # PCM
            channels.to_bytes(2, "little"),
            rate.to_bytes(4, "little"),
            (rate * channels * sample_width).to_bytes(4, "little"),
            (channels * sample_width).to_bytes(2, "little"),
            (sample_width * 8).to_bytes(2, "little"),
            b"data",
            unknown.to_bytes(4, "little"),
        )
    )


class PcmConverter:
    """Streaming conversion of 16-bit mono PCM to another rate, channel count and width.

    Rates are changed by linear interpolation, carrying the position across chunks. That is
    enough for speech at 16 kHz going up to a player's rate; going down, use Decimator.
    Same rate, mono, 16-bit in and out: the whole samples pass through as they are.
    """

    def __init__(
        self, in_rate: int, out_rate: int, channels: int = 1, sample_width: int = SAMPLE_WIDTH
    ) -> None:
        if sample_width not in (1, 2, 4):
            raise ValueError(f"Unsupported sample width {sample_width}")
        self._step = in_rate / out_rate
        self._channels = channels
        self._sample_width = sample_width
        self._position = 0.0
        """Where the next output sample lies, in input samples from `_previous`."""
        self._previous: float | None = None
        self._odd_byte = b""
        self._unchanged = in_rate == out_rate and channels == 1 and sample_width == SAMPLE_WIDTH

    def process(self, pcm: bytes) -> bytes:
        """Convert one chunk; returns the output samples it completes."""
        if self._unchanged:
            return self._pass_through(pcm)
        samples, self._odd_byte = _whole_samples(self._odd_byte + pcm)
        if self._previous is not None:
            samples = np.concatenate(([self._previous], samples))
        if len(samples) < 2:
            if len(samples):
                self._previous = float(samples[-1])
            return b""
        positions = np.arange(self._position, len(samples) - 1, self._step)
        out = np.interp(positions, np.arange(len(samples)), samples)
        self._position = (positions[-1] + self._step if len(positions) else self._position) - (
            len(samples) - 1
        )
        self._previous = float(samples[-1])
        return self._encode(out)

    def _pass_through(self, pcm: bytes) -> bytes:
        """The whole samples of `pcm`, an odd byte kept for the next chunk."""
        if self._odd_byte:
            pcm = self._odd_byte + pcm
            self._odd_byte = b""
        if len(pcm) % SAMPLE_WIDTH:
            self._odd_byte = pcm[-1:]
            return pcm[:-1]
        return pcm

    def _encode(self, samples: npt.NDArray[np.float64]) -> bytes:
        """Mono floats to the output width, then copied to every channel (in that order: the
        rounding is done once per sample, not once per channel)."""
        encoded: npt.NDArray[Any]
        if self._sample_width == 1:
            encoded = (np.clip(np.rint(samples / 256), -128, 127) + 128).astype(np.uint8)
        elif self._sample_width == 4:
            encoded = (np.rint(samples) * 65536).astype("<i4")
        else:
            encoded = np.clip(np.rint(samples), -32768, 32767).astype("<i2")
        if self._channels > 1:
            encoded = np.repeat(encoded, self._channels)
        return encoded.tobytes()
