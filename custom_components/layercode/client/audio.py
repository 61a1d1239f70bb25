"""PCM helpers: resampling Home Assistant's 16 kHz audio to Layercode's 8 kHz, framing, levels.

All audio here is signed 16-bit little-endian mono PCM.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    """

    def __init__(self, in_rate: int = MIC_RATE, out_rate: int = WIRE_INPUT_RATE) -> None:
        if in_rate % out_rate:
            raise ValueError(f"{in_rate} Hz is not a multiple of {out_rate} Hz")
        self._factor = in_rate // out_rate
        # Pass band up to 85 % of the output's Nyquist rate; 6 kHz at 16 kHz is > 70 dB down.
        self._taps = _lowpass_taps(16 * self._factor * 4 - 1, 0.85 / self._factor)
        self._history: npt.NDArray[np.float64] = np.zeros(len(self._taps) - 1)
        self._phase = 0
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk; returns whatever output samples it completes."""
        samples, self._odd_byte = _whole_samples(self._odd_byte + pcm)
        if not len(samples):
            return b""
        signal: npt.NDArray[np.float64] = np.concatenate((self._history, samples))
        filtered = np.convolve(signal, self._taps, mode="valid").astype(np.float64)
        self._history = signal[len(signal) - len(self._history) :]
        picked = filtered[self._phase :: self._factor]
        self._phase = (self._phase - len(filtered)) % self._factor
        return to_pcm(picked)

    def reset(self) -> None:
        """Forget the filter state (a new utterance)."""
        self._history[:] = 0
        self._phase = 0
        self._odd_byte = b""


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
    samples = np.frombuffer(pcm[: count * SAMPLE_WIDTH], dtype="<i2").astype(np.float64)
    return min(1.0, float(np.sqrt(np.mean(samples * samples))) / _FULL_SCALE)


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

    def process(self, pcm: bytes) -> bytes:
        """Convert one chunk; returns the output samples it completes."""
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

    def _encode(self, samples: npt.NDArray[np.float64]) -> bytes:
        if self._channels > 1:
            samples = np.repeat(samples, self._channels)
        if self._sample_width == 1:
            return (np.clip(np.rint(samples / 256), -128, 127) + 128).astype(np.uint8).tobytes()
        if self._sample_width == 4:
            return (np.rint(samples) * 65536).astype("<i4").tobytes()
        return to_pcm(samples)
