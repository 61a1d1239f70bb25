"""Test signals and what tests measure of them: tones in, loudest frequency and level out."""

from __future__ import annotations

import math

import numpy as np

RATE = 16_000
"""Home Assistant's and LiveKit's (as the project reads it) sample rate."""


def tone(seconds: float, frequency: float = 440.0, level: float = 0.3, rate: int = RATE) -> bytes:
    """A sine tone as mono 16-bit PCM; `level` is its peak, as a fraction of full scale."""
    t = np.arange(round(seconds * rate)) / rate
    return (level * 32767 * np.sin(2 * math.pi * frequency * t)).astype("<i2").tobytes()


def _samples(pcm: bytes) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)


def dominant_frequency(pcm: bytes, rate: int = RATE) -> float:
    """The loudest frequency of 16-bit PCM."""
    samples = _samples(pcm)
    magnitudes = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(magnitudes))])


def rms(pcm: bytes) -> float:
    """The root mean square of 16-bit PCM, in sample units (a sine's is its peak / sqrt 2)."""
    return float(np.sqrt(np.mean(_samples(pcm) ** 2)))
