"""The audio helpers: resampling checked by spectrum, framing, levels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from custom_components.layercode.client.audio import (
    FRAME_BYTES,
    MIC_RATE,
    WIRE_INPUT_RATE,
    Decimator,
    FrameBatcher,
    PcmConverter,
    _lowpass_taps,
    duration_seconds,
    rms_level,
    sample_level,
    to_pcm,
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


class ReferenceDecimator:
    """The straightforward algorithm, kept as the reference for the polyphase Decimator.

    Every input sample is filtered (np.convolve over history and chunk), then every
    `factor`-th result is kept; the phase of the next kept result carries over chunks.
    """

    def __init__(self, in_rate: int = MIC_RATE, out_rate: int = WIRE_INPUT_RATE) -> None:
        self._factor = in_rate // out_rate
        self._taps = _lowpass_taps(16 * self._factor * 4 - 1, 0.85 / self._factor)
        self._history: npt.NDArray[np.float64] = np.zeros(len(self._taps) - 1)
        self._phase = 0
        self._odd_byte = b""

    def process_samples(self, pcm: bytes) -> npt.NDArray[np.float64]:
        """The kept filter outputs of one chunk, as floats."""
        pcm = self._odd_byte + pcm
        usable = len(pcm) - len(pcm) % 2
        self._odd_byte = pcm[usable:]
        samples = np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64)
        if not len(samples):
            return np.zeros(0)
        signal = np.concatenate((self._history, samples))
        filtered = np.convolve(signal, self._taps, mode="valid")
        self._history = signal[len(signal) - len(self._history) :]
        picked = filtered[self._phase :: self._factor]
        self._phase = (self._phase - len(filtered)) % self._factor
        return picked

    def reset(self) -> None:
        """Forget the filter state."""
        self._history[:] = 0
        self._phase = 0
        self._odd_byte = b""


def random_chunks(rng: np.random.Generator, pcm: bytes, largest: int) -> list[bytes]:
    """`pcm` cut at random places (odd byte counts included)."""
    chunks = []
    start = 0
    while start < len(pcm):
        size = int(rng.integers(1, largest + 1))
        chunks.append(pcm[start : start + size])
        start += size
    return chunks


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16_000, 8_000), (48_000, 16_000)])
@pytest.mark.parametrize("seed", range(6))
def test_polyphase_equals_the_reference_for_any_chunking(
    in_rate: int, out_rate: int, seed: int
) -> None:
    """The polyphase filter gives the reference's samples, chunk for chunk, resets included."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 6000, 12_000).clip(-32768, 32767).astype("<i2").tobytes()
    signals = {
        "noise": noise + (b"\x7f" if seed % 2 else b""),
        "tones": tone(440, 0.4, in_rate) + tone(1500, 0.3, in_rate, amplitude=0.9),
        "full scale": np.tile(np.array([32767, -32768], "<i2"), 3000).tobytes(),
    }
    for name, pcm in signals.items():
        decimator, reference = Decimator(in_rate, out_rate), ReferenceDecimator(in_rate, out_rate)
        got: list[npt.NDArray[np.float64]] = []
        expected: list[npt.NDArray[np.float64]] = []
        for chunk in random_chunks(rng, pcm, int(rng.choice([16, 400, 5000]))):
            got.append(decimator.process_samples(chunk))
            expected.append(reference.process_samples(chunk))
            assert len(got[-1]) == len(expected[-1]), name
            if rng.random() < 0.03:
                decimator.reset()
                reference.reset()
        out, ref = np.concatenate(got), np.concatenate(expected)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6, err_msg=name)
        assert to_pcm(out) == to_pcm(ref), name


def test_process_is_process_samples_rounded() -> None:
    """`process` gives the PCM of `process_samples`, and an empty chunk nothing."""
    pcm = tone(700, 0.2)
    a, b = Decimator(), Decimator()
    assert a.process(pcm[:1001]) == to_pcm(b.process_samples(pcm[:1001]))
    assert a.process(pcm[1001:]) == to_pcm(b.process_samples(pcm[1001:]))
    assert a.process(b"") == b""
    assert len(b.process_samples(b"")) == 0


def test_levels_match_the_mean_square() -> None:
    """The dot-product level is the RMS; of unrounded floats it is that of their PCM."""
    rng = np.random.default_rng(7)
    for amplitude in (10.0, 3000.0, 8000.0):  # no clipping: 4 sigma below full scale
        samples = rng.normal(0, amplitude, 999)
        pcm = to_pcm(samples)
        ints = np.frombuffer(pcm, "<i2").astype(np.float64)
        expected = min(1.0, float(np.sqrt(np.mean(ints * ints))) / 32768)
        assert rms_level(pcm) == pytest.approx(expected, rel=1e-12)
        assert rms_level(pcm + b"\x01") == rms_level(pcm)  # an odd byte is not a sample
        assert sample_level(samples) == pytest.approx(rms_level(pcm), abs=1e-5)
    assert sample_level(np.zeros(0)) == 0.0
    assert sample_level(np.full(10, 40000.0)) == 1.0


def convert(converter: PcmConverter, chunks: list[bytes]) -> bytes:
    """A stream through a converter."""
    return b"".join(converter.process(chunk) for chunk in chunks)


@pytest.mark.parametrize("largest", [1, 3, 320, 5000])
def test_16khz_mono_passes_through_unchanged(largest: int) -> None:
    """Same rate, mono, 16-bit: the input comes out as it went in, odd bytes carried over.

    The interpolating path gives the same samples, each one chunk later (it holds back the
    last sample to interpolate towards the next): all but the very last one.
    """
    rng = np.random.default_rng(largest)
    pcm = tone(440, 0.3) + b"\x01\x02\x03"
    chunks = random_chunks(rng, pcm, largest)
    assert convert(PcmConverter(16_000, 16_000), chunks) == pcm[:-1]
    interpolating = PcmConverter(16_000, 16_000)
    interpolating._unchanged = False  # the general path, for comparison
    assert convert(interpolating, chunks) == pcm[:-3]

    converter = PcmConverter(16_000, 16_000)
    assert converter.process(b"\x01") == b""
    assert converter.process(b"\x02\x03") == b"\x01\x02"
    assert converter.process(b"") == b""
    assert converter.process(b"\x04") == b"\x03\x04"


@pytest.mark.parametrize(
    ("rate", "channels", "width"), [(16_000, 2, 2), (16_000, 1, 1), (16_000, 1, 4), (22_050, 1, 2)]
)
def test_other_formats_still_convert(rate: int, channels: int, width: int) -> None:
    """Anything but 16 kHz mono 16-bit out is converted, at the requested size."""
    pcm = tone(440, 0.5)
    out = convert(PcmConverter(16_000, rate, channels, width), [pcm[:777], pcm[777:]])
    samples = len(out) // (channels * width)
    assert samples == pytest.approx(0.5 * rate, abs=2)
