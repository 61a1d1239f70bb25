"""Sensors: the connection status, what the agent is doing, and the audio levels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_call_later

from . import LayercodeConfigEntry
from .client import AgentState, SessionStatus
from .entity import LayercodeEntity
from .runtime import LayercodeRuntime

PARALLEL_UPDATES = 0

AMPLITUDE_INTERVAL = 1.0
"""At most one amplitude state per second, so that the recorder is not flooded."""


@dataclass(frozen=True, kw_only=True)
class LayercodeSensorDescription(SensorEntityDescription):
    """A sensor read from the runtime."""

    value_fn: Callable[[LayercodeRuntime], str | float]
    amplitude: bool = False


SENSORS: tuple[LayercodeSensorDescription, ...] = (
    LayercodeSensorDescription(
        key="connection",
        translation_key="connection",
        device_class=SensorDeviceClass.ENUM,
        options=[status.value for status in SessionStatus],
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda runtime: runtime.status.value,
    ),
    LayercodeSensorDescription(
        key="agent_state",
        translation_key="agent_state",
        device_class=SensorDeviceClass.ENUM,
        options=[state.value for state in AgentState],
        value_fn=lambda runtime: runtime.agent_state.value,
    ),
    LayercodeSensorDescription(
        key="user_amplitude",
        translation_key="user_amplitude",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_registry_enabled_default=False,
        entity_category=EntityCategory.DIAGNOSTIC,
        amplitude=True,
        value_fn=lambda runtime: round(runtime.user_amplitude * 100, 1),
    ),
    LayercodeSensorDescription(
        key="agent_amplitude",
        translation_key="agent_amplitude",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_registry_enabled_default=False,
        entity_category=EntityCategory.DIAGNOSTIC,
        amplitude=True,
        value_fn=lambda runtime: round(runtime.agent_amplitude * 100, 1),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the connection and amplitude sensors."""
    async_add_entities(LayercodeSensor(entry, description) for description in SENSORS)


class LayercodeSensor(LayercodeEntity, SensorEntity):
    """A value of the runtime; amplitude sensors are throttled."""

    entity_description: LayercodeSensorDescription
    _throttle: CALLBACK_TYPE | None = None
    _last_write = 0.0

    @property
    def native_value(self) -> str | float:
        """The runtime's current value."""
        return self.entity_description.value_fn(self.runtime)

    async def async_added_to_hass(self) -> None:
        """Amplitude sensors also follow the audio levels, at most once per interval."""
        await super().async_added_to_hass()
        if self.entity_description.amplitude:
            self.async_on_remove(self.runtime.async_add_amplitude_listener(self._handle_level))
            self.async_on_remove(self._cancel_throttle)

    @callback
    def _handle_level(self) -> None:
        """Write now if the interval has passed, else once when it does."""
        if self._throttle is not None:
            return
        wait = self._last_write + AMPLITUDE_INTERVAL - self.hass.loop.time()
        if wait <= 0:
            self._write_level(None)
        else:
            self._throttle = async_call_later(self.hass, wait, self._write_level)

    @callback
    def _write_level(self, _now: datetime | None) -> None:
        self._throttle = None
        self._last_write = self.hass.loop.time()
        self.async_write_ha_state()

    @callback
    def _cancel_throttle(self) -> None:
        if self._throttle is not None:
            self._throttle()
            self._throttle = None
