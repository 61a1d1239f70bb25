"""The base class of the integration's entities: one service device per entry."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription

from .const import CONF_AGENT_ID, DOMAIN, Provider
from .providers import entry_provider
from .runtime import LayercodeRuntime

PROVIDER_NAMES = {Provider.LAYERCODE: "Layercode", Provider.LIVELAYER: "LiveLayer"}


class LayercodeEntity(Entity):
    """An entity of a Layercode agent; follows the runtime's aggregate state."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(
        self, entry: ConfigEntry[LayercodeRuntime], description: EntityDescription
    ) -> None:
        self.entity_description = description
        self.runtime = entry.runtime_data
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            manufacturer=PROVIDER_NAMES[entry_provider(entry)],
            model="Voice agent",
            model_id=entry.data[CONF_AGENT_ID],
            entry_type=DeviceEntryType.SERVICE,
        )

    @property
    def available(self) -> bool:
        """Unavailable while the agent cannot be reached."""
        return self.runtime.available

    async def async_added_to_hass(self) -> None:
        """Follow the runtime's state."""
        await super().async_added_to_hass()
        self.async_on_remove(self.runtime.async_add_state_listener(self._handle_state))

    @callback
    def _handle_state(self) -> None:
        self.async_write_ha_state()
