"""The audio helpers: resampling checked by spectrum, framing, levels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.layercode.client.audio import (
    FRAME_BYTES,
    Decimator,
    FrameBatcher,
    duration_seconds,
    rms_level,
)


def tone(frequency: float, seconds: float, rate: int = 16_000, amplitude: float = 0.5) -> bytes:
    """A sine tone as 16-bit PCM."""
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype("<i2").tobytes()


def spectrum(pcm: bytes, rate: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Frequencies and magnitudes of the signal (Hann window)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    magnitudes = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate), magnitudes


def resample_in_chunks(pcm: bytes, chunk: int) -> bytes:
    """Feed the decimator the way Home Assistant does: fixed-size chunks."""
    decimator = Decimator()
    return b"".join(decimator.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk))


def test_1khz_tone_survives_at_8khz() -> None:
    """A 1 kHz tone keeps its frequency and level through 16 kHz -> 8 kHz."""
    out = resample_in_chunks(tone(1000, 1.0), 320)
    assert len(out) == 8000 * 2
    freqs, mags = spectrum(out[400:], 8000)
    assert freqs[np.argmax(mags)] == pytest.approx(1000, abs=5)
    assert rms_level(out[400:]) == pytest.approx(rms_level(tone(1000, 1.0)), rel=0.02)


def test_6khz_tone_is_removed() -> None:
    """6 kHz cannot exist at 8 kHz: it is filtered out, not aliased to 2 kHz."""
    out = resample_in_chunks(tone(6000, 1.0), 320)
    level_in = rms_level(tone(6000, 1.0))
    assert rms_level(out[400:]) < level_in / 1000  # more than 60 dB down
    freqs, mags = spectrum(out[400:], 8000)
    alias = mags[np.argmin(np.abs(freqs - 2000))]
    _, reference = spectrum(resample_in_chunks(tone(2000, 1.0), 320)[400:], 8000)
    assert alias < reference.max() / 1000


def test_mixed_tones_keep_the_low_one_only() -> None:
    """1 kHz + 6 kHz in: only the 1 kHz peak comes out."""
    mixed = np.frombuffer(tone(1000, 1.0, amplitude=0.3), "<i2").astype(np.int32) + np.frombuffer(
        tone(6000, 1.0, amplitude=0.3), "<i2"
    )
    out = resample_in_chunks(mixed.astype("<i2").tobytes(), 160)
    freqs, mags = spectrum(out[400:], 8000)
    peaks = freqs[mags > mags.max() / 100]
    assert peaks.min() > 900
    assert peaks.max() < 1100


@pytest.mark.parametrize("chunk", [1, 3, 320, 777, 32000])
def test_chunking_does_not_change_the_output(chunk: int) -> None:
    """Odd chunk sizes (even odd byte counts) give the same samples as one big chunk."""
    pcm = tone(440, 0.5) + tone(1500, 0.25)
    assert resample_in_chunks(pcm, chunk) == resample_in_chunks(pcm, len(pcm))


def test_decimator_rejects_non_integer_ratio() -> None:
    """Only integer ratios are supported."""
    with pytest.raises(ValueError, match="not a multiple"):
        Decimator(16_000, 6_000)


def test_frame_batcher_cuts_frames_and_keeps_the_rest() -> None:
    """Frames are exactly FRAME_BYTES; the remainder is flushed or cleared."""
    batcher = FrameBatcher()
    frames = list(batcher.push(bytes(FRAME_BYTES * 2 + 100)))
    assert [len(f) for f in frames] == [FRAME_BYTES, FRAME_BYTES]
    assert list(batcher.push(bytes(FRAME_BYTES - 101))) == []
    assert len(list(batcher.push(bytes(2)))) == 1
    assert batcher.flush() == bytes(1)
    assert batcher.flush() == b""
    list(batcher.push(bytes(10)))
    batcher.clear()
    assert batcher.flush() == b""


def test_levels_and_durations() -> None:
    """RMS of a full-scale square wave is 1, of silence 0; durations follow the rate."""
    square = np.tile(np.array([32767, -32768], dtype="<i2"), 100).tobytes()
    assert rms_level(square) == pytest.approx(1.0, abs=1e-4)
    assert rms_level(bytes(200)) == 0.0
    assert rms_level(b"") == 0.0
    assert rms_level(tone(440, 1.0, amplitude=0.5)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert duration_seconds(bytes(16000), 8000) == 1.0
