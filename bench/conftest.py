"""Fixtures for bench/pipeline.py, which runs under Home Assistant's pytest harness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest


@pytest.fixture(autouse=True)
def enable_event_loop_debug() -> None:
    """Replace the harness's fixture of this name: asyncio debug mode slows every callback.

    Tests want it on to catch mistakes; a benchmark must time the loop as it runs in
    production.
    """


@pytest.fixture(autouse=True)
def _custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/layercode."""


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Real sockets; the harness still limits them to 127.0.0.1."""


@pytest.fixture(autouse=True)
async def _core(hass: HomeAssistant) -> None:
    """Home Assistant's core integration, there in every real instance."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(autouse=True)
def _remove_tts_cache_files(hass: HomeAssistant) -> Iterator[None]:
    """Delete the TTS cache files the run wrote (the harness's config dir is shared)."""
    cache_dir = Path(hass.config.path("tts"))
    before = set(cache_dir.iterdir()) if cache_dir.is_dir() else set()
    yield
    if cache_dir.is_dir():
        for path in set(cache_dir.iterdir()) - before:
            path.unlink(missing_ok=True)
