"""The event entity: what the user and the agent said and did, for automations."""

from __future__ import annotations

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import LayercodeConfigEntry
from .entity import LayercodeEntity
from .runtime import RuntimeEvent, RuntimeEventType

PARALLEL_UPDATES = 0

EVENT_DESCRIPTION = EventEntityDescription(
    key="conversation",
    translation_key="conversation",
    event_types=[event_type.value for event_type in RuntimeEventType],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the conversation event entity."""
    async_add_entities([LayercodeEventEntity(entry, EVENT_DESCRIPTION)])


class LayercodeEventEntity(LayercodeEntity, EventEntity):
    """Fires one event per transcript, reply, data message, speaking change or error."""

    async def async_added_to_hass(self) -> None:
        """Listen to the runtime's events."""
        await super().async_added_to_hass()
        self.async_on_remove(self.runtime.async_add_event_listener(self._handle_event))

    @callback
    def _handle_event(self, event: RuntimeEvent) -> None:
        self._trigger_event(
            event.event_type,
            {
                **event.attributes,
                "conversation_id": event.conversation_id,
                "device_id": event.device_id,
            },
        )
        self.async_write_ha_state()
