"""The LiveKit SDK that LiveLayer agents need, installed and checked when first wanted.

`livekit` is not in manifest.json: Layercode agents never need it, and its wheel carries a
native library that Home Assistant OS and Container (Alpine, musl) cannot load. It is
installed through Home Assistant's own installer (which keeps to Home Assistant's package
constraints) when a LiveLayer agent is added or set up.
"""

from __future__ import annotations

import logging

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.requirements import RequirementsNotFound, async_process_requirements
from homeassistant.util.hass_dict import HassKey

from .client.livelayer.livekit_room import (
    LIVEKIT_REQUIREMENT,
    LiveKitUnavailableError,
    load_livekit,
)
from .const import DOMAIN

_LOGGER = logging.getLogger(__name__)

DATA_LIVEKIT_READY: HassKey[bool] = HassKey(f"{DOMAIN}_livekit_ready")
"""Set once LiveKit is installed and its native library has loaded."""


class LiveKitUnavailable(HomeAssistantError):
    """LiveKit cannot be used on this system; `reason` says why."""

    def __init__(self, reason: str) -> None:
        """Keep the reason for the config flow's form and the set-up error."""
        super().__init__(
            translation_domain=DOMAIN,
            translation_key="livekit_unavailable",
            translation_placeholders={"error": reason},
        )
        self.reason = reason


async def async_ensure_livekit(hass: HomeAssistant) -> None:
    """Install the LiveKit SDK if needed and load its native library; once per run.

    Raises LiveKitUnavailable saying why it cannot be used here.
    """
    if hass.data.get(DATA_LIVEKIT_READY):
        return
    try:
        if not hass.config.skip_pip:
            await async_process_requirements(hass, DOMAIN, [LIVEKIT_REQUIREMENT])
        await hass.async_add_executor_job(load_livekit)
    except (RequirementsNotFound, LiveKitUnavailableError) as err:
        reason = (
            f"Home Assistant could not install {LIVEKIT_REQUIREMENT} (its log has the details)"
            if isinstance(err, RequirementsNotFound)
            else str(err)
        )
        _LOGGER.warning("LiveLayer agents cannot be used on this system: %s", reason)
        raise LiveKitUnavailable(reason) from err
    _LOGGER.debug("LiveKit is installed and its native library loads")
    hass.data[DATA_LIVEKIT_READY] = True
