"""A speech-like test signal, synthesised with numpy, for the browser's fake microphone.

A steady tone is not speech to Silero's VAD, and Chromium's noise suppression and gain
control (which the SDK asks for) fade it out. What works is a crude formant synthesiser:
a glottal pulse train with a drifting pitch, shaped by three vowel resonances, cut into
syllables with a 4-5 Hz rhythm and short noise bursts between them, as consonants.
"""

from __future__ import annotations

from pathlib import Path
import wave

import numpy as np
import numpy.typing as npt

RATE = 16_000

type Signal = npt.NDArray[np.float64]

# (F1, F2, F3) in Hz of a few vowels: /a/, /i/, /o/, /e/, /u/.
_VOWELS = (
    (730, 1090, 2440),
    (270, 2290, 3010),
    (570, 840, 2410),
    (530, 1840, 2480),
    (300, 870, 2240),
)


def _resonate(signal: Signal, frequency: float, bandwidth: float) -> Signal:
    """A two-pole resonator: one formant."""
    r = np.exp(-np.pi * bandwidth / RATE)
    a1 = -2 * r * np.cos(2 * np.pi * frequency / RATE)
    a2 = r * r
    gain = 1 - r
    out = np.zeros_like(signal)
    y1 = y2 = 0.0
    for i, x in enumerate(signal):
        y = gain * x - a1 * y1 - a2 * y2
        out[i] = y
        y2, y1 = y1, y
    return out


def _syllable(
    seconds: float, vowel: tuple[int, int, int], pitch: float, rng: np.random.Generator
) -> Signal:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    # Pitch glides a little within the syllable, as in running speech.
    f0 = pitch * (1 + 0.08 * np.sin(2 * np.pi * 3 * t) - 0.1 * t / seconds)
    phase = np.cumsum(2 * np.pi * f0 / RATE)
    source = np.zeros(n)
    for k in range(1, 30):  # a band-limited sawtooth: the glottal buzz
        partial = k * f0
        source += np.where(partial < RATE / 2 - 500, np.sin(k * phase) / k, 0.0)
    voiced = sum(_resonate(source, formant, 80 + 40 * i) for i, formant in enumerate(vowel))
    envelope = np.sin(np.pi * np.clip(t / seconds, 0, 1)) ** 0.6
    consonant = rng.normal(0, 0.25, n) * np.exp(-t / 0.02)  # a short noisy onset
    return np.asarray(voiced * envelope + consonant, dtype=np.float64)


def speech_like(seconds: float, *, seed: int = 7) -> Signal:
    """About `seconds` of syllables, peak-normalised to 1."""
    rng = np.random.default_rng(seed)
    parts: list[Signal] = []
    total = 0.0
    index = 0
    while total < seconds:
        length = float(rng.uniform(0.16, 0.26))
        vowel = _VOWELS[index % len(_VOWELS)]
        parts.append(_syllable(length, vowel, float(rng.uniform(110, 150)), rng))
        gap = float(rng.uniform(0.02, 0.06))
        parts.append(np.zeros(int(gap * RATE)))
        total += length + gap
        index += 1
    signal = np.concatenate(parts)
    peak = float(np.max(np.abs(signal))) or 1.0
    return np.asarray(signal / peak, dtype=np.float64)


def write_microphone_wav(
    path: Path,
    bursts: list[tuple[float, float]],
    *,
    total: float,
    level: float = 0.5,
    noise: float = 0.001,
) -> None:
    """A 16 kHz 16-bit mono WAV: a faint noise floor with speech at each (start, seconds).

    16-bit matters: Chromium's fake capture plays 24-bit PCM as nothing at all. The noise
    floor (-60 dBFS) matters too: the SDK's recorder sends nothing until it has seen the
    first non-zero sample, so a WAV that starts with digital silence holds back the
    pre-roll and every push-to-talk frame until the speech begins. A real microphone is
    never exactly silent.
    """
    signal = np.random.default_rng(3).normal(0.0, noise, int(total * RATE))
    for number, (start, seconds) in enumerate(bursts):
        burst = speech_like(seconds, seed=7 + number)
        begin = int(start * RATE)
        signal[begin : begin + len(burst)] += burst[: len(signal) - begin]
    pcm = np.clip(np.rint(signal * level * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
