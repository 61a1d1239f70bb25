"""cProfile aggregated by where the code lives: the integration, Home Assistant, aiohttp, ...

Built-in functions (numpy's kernels, the JSON encoder, socket calls) have no file of their
own, so their time goes to the Python functions that called them, pro rata. Timing is wall
clock with the waits taken out (the event loop's `epoll`, lock and sleep waits): on Python
3.12+ cProfile sees every thread, and a per-thread CPU clock would mix threads' clocks.
Sampling profilers were tried and rejected here: a sampler thread only gets the GIL where the
loop releases it (socket writes, waits), which biases the shares badly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
import contextlib
import cProfile
import pstats
import sysconfig
import time
from typing import Any

type FunctionKey = tuple[str, int, str]

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("layercode client", ("/custom_components/layercode/client/",)),
    ("layercode integration", ("/custom_components/layercode/",)),
    ("local agent server", ("/local_agent_server/",)),
    ("benchmark harness", ("/bench/",)),
    ("Home Assistant", ("/homeassistant/",)),
    (
        "test harness",
        ("/pytest_homeassistant_custom_component/", "/_pytest/", "/pluggy/", "/pytest_"),
    ),
    (
        "aiohttp",
        ("/aiohttp/", "/yarl/", "/multidict/", "/propcache/", "/frozenlist/", "/aiosignal/"),
    ),
    ("numpy", ("/numpy/",)),
    ("asyncio", ("/asyncio/",)),
)
STDLIB = "Python stdlib"
OTHER = "other libraries"
LAYERCODE = ("layercode client", "layercode integration")
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]
_WAITS = (
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'poll' of 'select.poll' objects>",
    "<built-in method select.select>",
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
    "<built-in method time.sleep>",
    "<built-in method posix.waitpid>",
    "<built-in method posix.read>",
)
"""Built-ins that wait rather than work; their time is left out."""


def group_of(filename: str) -> str:
    """The group a source file belongs to."""
    for name, needles in GROUPS:
        if any(needle in filename for needle in needles):
            return name
    if filename.startswith(_STDLIB_DIR) and "site-packages" not in filename:
        return STDLIB
    return OTHER


@contextlib.contextmanager
def profiled(profile: cProfile.Profile | None = None) -> Iterator[cProfile.Profile]:
    """Profile the block (wall clock); pass a profile to add to it."""
    profile = profile or cProfile.Profile(time.perf_counter)
    profile.enable()
    try:
        yield profile
    finally:
        profile.disable()


def _is_builtin(key: FunctionKey) -> bool:
    return key[0] == "~"


def own_times(profile: cProfile.Profile) -> dict[FunctionKey, float]:
    """Each Python function's own time plus its share of the built-ins it called, waits out."""
    stats: dict[FunctionKey, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    times: dict[FunctionKey, float] = defaultdict(float)
    for key, (_cc, _nc, tottime, _ct, callers) in stats.items():
        if not _is_builtin(key):
            times[key] += tottime
            continue
        if key[2] in _WAITS:
            continue
        python_callers = {c: v for c, v in callers.items() if not _is_builtin(c)}
        total = sum(v[2] for v in python_callers.values())
        if total <= 0:
            times[key] += tottime
            continue
        for caller, (_c, _n, caller_tt, _t) in python_callers.items():
            times[caller] += tottime * caller_tt / total
    return times


def by_group(profile: cProfile.Profile) -> dict[str, float]:
    """Seconds per group, largest first."""
    totals: dict[str, float] = defaultdict(float)
    for key, seconds in own_times(profile).items():
        totals["built-ins" if _is_builtin(key) else group_of(key[0])] += seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def top_functions(
    profile: cProfile.Profile, count: int = 10, groups: tuple[str, ...] | None = None
) -> list[tuple[str, float]]:
    """The functions with the most own time (built-ins folded in), optionally of some groups."""
    rows = [
        (f"{_short(key[0])}:{key[1]}({key[2]})", seconds)
        for key, seconds in own_times(profile).items()
        if groups is None or (not _is_builtin(key) and group_of(key[0]) in groups)
    ]
    return sorted(rows, key=lambda row: -row[1])[:count]


def _short(filename: str) -> str:
    for marker in ("/custom_components/", "/site-packages/", "/local_agent_server/", "/bench/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    if filename.startswith(_STDLIB_DIR):
        return "stdlib" + filename.removeprefix(_STDLIB_DIR)
    return filename


def shares(groups: dict[str, float], limit: float = 0.005) -> str:
    """`group 41 %, group 22 %, ...` (groups under `limit` of the total left out)."""
    total = sum(groups.values()) or 1.0
    return ", ".join(
        f"{name} {seconds / total * 100:.0f} %"
        for name, seconds in groups.items()
        if seconds / total >= limit
    )
