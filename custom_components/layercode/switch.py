"""Switches: mute the microphone path, and play the agent's audio or not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import STATE_ON, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from . import LayercodeConfigEntry
from .entity import LayercodeEntity
from .runtime import LayercodeRuntime

PARALLEL_UPDATES = 0


async def _set_audio_output(runtime: LayercodeRuntime, enabled: bool) -> None:
    runtime.async_set_audio_output(enabled)


@dataclass(frozen=True, kw_only=True)
class LayercodeSwitchDescription(SwitchEntityDescription):
    """A switch that sets a runtime flag; `restore` keeps it across restarts."""

    is_on_fn: Callable[[LayercodeRuntime], bool]
    set_fn: Callable[[LayercodeRuntime, bool], Awaitable[None]]
    restore: bool = False


SWITCHES: tuple[LayercodeSwitchDescription, ...] = (
    LayercodeSwitchDescription(
        key="mute",
        translation_key="mute",
        entity_category=EntityCategory.CONFIG,
        restore=True,
        is_on_fn=lambda runtime: runtime.muted,
        set_fn=lambda runtime, on: runtime.async_set_muted(on),
    ),
    LayercodeSwitchDescription(
        key="audio_output",
        translation_key="audio_output",
        entity_category=EntityCategory.CONFIG,
        is_on_fn=lambda runtime: runtime.audio_output,
        set_fn=_set_audio_output,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the mute and audio output switches."""
    async_add_entities(LayercodeSwitch(entry, description) for description in SWITCHES)


class LayercodeSwitch(LayercodeEntity, SwitchEntity, RestoreEntity):
    """A runtime flag as a switch."""

    entity_description: LayercodeSwitchDescription

    @property
    def is_on(self) -> bool:
        """Whether the flag is set."""
        return self.entity_description.is_on_fn(self.runtime)

    async def async_added_to_hass(self) -> None:
        """Restore the last state where the description asks for it."""
        await super().async_added_to_hass()
        if self.entity_description.restore and (state := await self.async_get_last_state()):
            await self.entity_description.set_fn(self.runtime, state.state == STATE_ON)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Set the flag."""
        await self.entity_description.set_fn(self.runtime, True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Clear the flag."""
        await self.entity_description.set_fn(self.runtime, False)
