"""What every section shares: the result format, machine facts, statistics, CPU pinning.

A section is a process that measures and writes one JSON file (`SectionResult.write`) to the
path in $BENCH_OUT; the driver (`bench/__main__.py`) merges those files into the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
import json
import os
from pathlib import Path
import platform
import sys
import time
from typing import Any

import numpy as np
import numpy.typing as npt

BENCH_OUT = "BENCH_OUT"
"""Environment variable: the JSON file a section writes its result to."""
BENCH_QUICK = "BENCH_QUICK"
"""Environment variable: `1` runs every section with far fewer runs (a smoke test only)."""

CLIENT_CPU = 0
"""The core the measured client (or Home Assistant) process is pinned to."""
AGENT_CPU = 1
"""The core the local agent server process is pinned to, so it never steals the client's."""

MIC_RATE = 16_000
CHUNK_BYTES = MIC_RATE // 100 * 2
"""Home Assistant hands an STT entity 10 ms chunks of 16 kHz 16-bit mono PCM."""


def quick() -> bool:
    """Whether this is a smoke run ($BENCH_QUICK=1): same code paths, few runs."""
    return os.environ.get(BENCH_QUICK) == "1"


@dataclass(slots=True)
class Figure:
    """One row of the results table: a value with its unit, run count and target."""

    name: str
    value: str
    unit: str
    runs: str
    target: str = ""
    met: bool | None = None


@dataclass(slots=True)
class SectionResult:
    """Everything one section measured, as the driver merges it."""

    section: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """Raw numbers behind the figures, kept in the JSON for anyone who wants to dig."""

    def add(
        self,
        name: str,
        value: str,
        unit: str,
        runs: str,
        target: str = "",
        met: bool | None = None,
    ) -> Figure:
        """Append a figure and return it."""
        figure = Figure(name, value, unit, runs, target, met)
        self.figures.append(figure)
        return figure

    def write(self, path: str | None = None) -> None:
        """Write the JSON to `path`, else $BENCH_OUT, else stdout."""
        self.env = self.env or environment()
        text = json.dumps(asdict(self), indent=1, default=_jsonable)
        target = path or os.environ.get(BENCH_OUT)
        if target:
            Path(target).write_text(text, encoding="utf-8")
        else:
            print(text)


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_result(path: Path) -> SectionResult:
    """Read a section's JSON back."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    figures = [Figure(**figure) for figure in raw.pop("figures")]
    return SectionResult(figures=figures, **raw)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def environment() -> dict[str, str]:
    """Python and library versions of this process; Home Assistant's if it is loaded."""
    return {
        "python": platform.python_version(),
        "aiohttp": _version("aiohttp"),
        "numpy": _version("numpy"),
        "homeassistant": _version("homeassistant"),
        "ha_loaded": "yes" if "homeassistant.core" in sys.modules else "no",
    }


def machine() -> dict[str, str]:
    """CPU model, core count and kernel of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "os": platform.system(),
    }


def pin(cpu: int) -> bool:
    """Pin this process to one core, when the machine has it; returns whether it did."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) <= cpu:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    """CPU time each core has spent busy and stolen, and this process's CPU, at one moment."""

    at: float
    busy: tuple[float, ...]
    steal: tuple[float, ...]
    own: float


def core_snapshot() -> CoreSnapshot:
    """Read /proc/stat (seconds per core) and this process's CPU time."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy: list[float] = []
    steal: list[float] = []
    try:
        lines = Path("/proc/stat").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        user, nice, system, _idle, _iowait, irq, softirq, stolen = (int(f) for f in fields[:8])
        busy.append((user + nice + system + irq + softirq) / tick)
        steal.append(stolen / tick)
    return CoreSnapshot(time.monotonic(), tuple(busy), tuple(steal), time.process_time())


def contention(before: CoreSnapshot, after: CoreSnapshot, core: int = CLIENT_CPU) -> float:
    """Share (0-1) of `core` that other processes and the hypervisor took between snapshots.

    The machine is shared: a measuring process pinned to a core competes with whatever else
    runs there, so sections report (and the scale section retries on) this figure.
    """
    wall = after.at - before.at
    if wall <= 0 or len(after.busy) <= core or len(before.busy) <= core:
        return float("nan")
    others = after.busy[core] - before.busy[core] - (after.own - before.own)
    stolen = after.steal[core] - before.steal[core]
    return (max(0.0, others) + stolen) / wall


def describe_contention(before: CoreSnapshot, after: CoreSnapshot, core: int = CLIENT_CPU) -> str:
    """`other processes took 12 % of core 0` for a note."""
    return f"other processes took {contention(before, after, core) * 100:.0f} % of core {core}"


def percentile(values: Sequence[float] | npt.NDArray[np.float64], q: float) -> float:
    """The q-th percentile (0-100), NaN for no values."""
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def ms(seconds: float, digits: int = 2) -> str:
    """Seconds as a millisecond string."""
    return f"{seconds * 1000:.{digits}f}"


def p50_p99(values: Sequence[float] | npt.NDArray[np.float64], digits: int = 2) -> str:
    """`p50 / p99` in milliseconds of values in seconds."""
    return f"{ms(percentile(values, 50), digits)} / {ms(percentile(values, 99), digits)}"


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values."""
    items = list(values)
    return float(np.median(items)) if items else float("nan")


def speech(seconds: float, rate: int = MIC_RATE, seed: int = 1) -> bytes:
    """A stand-in for a voice: a buzz with harmonics, syllable-modulated, a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 8))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(seed).normal(0, 0.02, len(t))
    samples = (voice * syllables + noise) * 4500
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def chunked(pcm: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """`pcm` cut into `size`-byte chunks (the last may be shorter)."""
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]
