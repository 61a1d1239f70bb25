"""The parts of the project's Layercode client library that the server reuses.

That includes the LiveLayer session the relay mode drives; the LiveKit SDK under it is only
imported when a real room is opened (`default_room_factory`).

The library (`custom_components/layercode/client`) imports nothing from Home Assistant, but a
plain `import custom_components.layercode.client` first runs the integration's own
`custom_components/layercode/__init__.py`, which does. The server has to run where Home
Assistant is not installed (a bare aiohttp + numpy venv), so unless the integration is already
loaded, the library's package is loaded straight from its directory, under its usual name:
every later import of it, by the server or by the integration, gets these same modules.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys

_PACKAGE = "custom_components.layercode.client"


def _load_without_integration() -> None:
    if _PACKAGE in sys.modules:
        return
    root = importlib.util.find_spec("custom_components")
    if root is None or not root.submodule_search_locations:
        raise ImportError("custom_components is not on the path", name=_PACKAGE)
    directory = Path(next(iter(root.submodule_search_locations)), "layercode", "client")
    spec = importlib.util.spec_from_file_location(
        _PACKAGE, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"no Layercode client library in {directory}", name=_PACKAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PACKAGE]
        raise


_load_without_integration()

# The imports below must follow the loading above.
from custom_components.layercode.client.audio import (  # noqa: E402
    AGENT_RATE,
    FRAME_BYTES,
    SAMPLE_WIDTH,
    WIRE_INPUT_RATE,
    PcmConverter,
    duration_seconds,
    rms_level,
    to_pcm,
)
from custom_components.layercode.client.config import (  # noqa: E402
    SessionConfig,
    TurnTrigger,
    VadConfig,
)
from custom_components.layercode.client.errors import LayercodeError  # noqa: E402
from custom_components.layercode.client.events import (  # noqa: E402
    AgentTurnStarted,
    SessionEvent,
    SessionFailed,
)
from custom_components.layercode.client.livelayer import (  # noqa: E402
    AUDIO_RATE,
    DEFAULT_SESSION_ENDPOINT,
    ErrorCode,
    LiveLayerConnectionError,
    LiveLayerError,
    LiveLayerOptions,
    LiveLayerSession,
    RoomFactory,
)
from custom_components.layercode.client.livelayer.session import (  # noqa: E402
    AGENT_JOIN_TIMEOUT,
    RECONNECT_DELAYS,
    default_room_factory,
)
from custom_components.layercode.client.messages import (  # noqa: E402
    ResponseData,
    UserTranscript,
    VadEvent,
)
from custom_components.layercode.client.turns import AgentTurn  # noqa: E402

__all__ = [
    "AGENT_JOIN_TIMEOUT",
    "AGENT_RATE",
    "AUDIO_RATE",
    "DEFAULT_SESSION_ENDPOINT",
    "FRAME_BYTES",
    "RECONNECT_DELAYS",
    "SAMPLE_WIDTH",
    "WIRE_INPUT_RATE",
    "AgentTurn",
    "AgentTurnStarted",
    "ErrorCode",
    "LayercodeError",
    "LiveLayerConnectionError",
    "LiveLayerError",
    "LiveLayerOptions",
    "LiveLayerSession",
    "PcmConverter",
    "ResponseData",
    "RoomFactory",
    "SessionConfig",
    "SessionEvent",
    "SessionFailed",
    "TurnTrigger",
    "UserTranscript",
    "VadConfig",
    "VadEvent",
    "default_room_factory",
    "duration_seconds",
    "rms_level",
    "to_pcm",
]
