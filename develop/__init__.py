"""The development Home Assistant of `script/develop`, with the local agent server beside it.

`python -m develop` (run by `script/develop` in `.venv/develop`) copies `config/` into a fresh
runtime directory, creates the storage files with Home Assistant's own code (`storage.py`),
starts the local agent server and `hass`, adds the Layercode entry and its Assist pipeline
through Home Assistant's APIs, and then either waits for Ctrl-C or (`--demo`) plays one
spoken request through the pipeline (`voice_demo.py`).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository: `config/` and `custom_components/layercode` are found from here."""

USERNAME = "demo"
PASSWORD = "demo"  # noqa: S105  # the documented login of a local development instance
DISPLAY_NAME = "Demo"
AGENT_ID = "ag_demo"
AREAS = {
    "Kitchen": "light.kitchen_light",
    "Living room": "light.living_room_light",
    "Bedroom": "light.bedroom_light",
}
"""The areas onboarding would create, and the demo light (config/configuration.yaml) in each."""
