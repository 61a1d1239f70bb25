"""Binary sensors: whether the agent or the user is speaking (in any conversation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import LayercodeConfigEntry
from .entity import LayercodeEntity
from .runtime import LayercodeRuntime

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class LayercodeBinarySensorDescription(BinarySensorEntityDescription):
    """A binary sensor read from the runtime."""

    is_on_fn: Callable[[LayercodeRuntime], bool]


BINARY_SENSORS: tuple[LayercodeBinarySensorDescription, ...] = (
    LayercodeBinarySensorDescription(
        key="agent_speaking",
        translation_key="agent_speaking",
        device_class=BinarySensorDeviceClass.SOUND,
        is_on_fn=lambda runtime: runtime.agent_speaking,
    ),
    LayercodeBinarySensorDescription(
        key="user_speaking",
        translation_key="user_speaking",
        device_class=BinarySensorDeviceClass.SOUND,
        is_on_fn=lambda runtime: runtime.user_speaking,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the speaking sensors."""
    async_add_entities(LayercodeBinarySensor(entry, description) for description in BINARY_SENSORS)


class LayercodeBinarySensor(LayercodeEntity, BinarySensorEntity):
    """A speaking state."""

    entity_description: LayercodeBinarySensorDescription

    @property
    def is_on(self) -> bool:
        """Whether the runtime says so."""
        return self.entity_description.is_on_fn(self.runtime)
