"""LiveLayer agents: LiveLayer's browser `LiveKitSession`, ported to Python on asyncio.

The LiveKit SDK it joins rooms with is imported only when a room is opened
(`livekit_room`); the rest of the package loads without it.
"""

from .api import (
    AUTH_ERROR_CODES,
    DEFAULT_SESSION_ENDPOINT,
    AgentConfig,
    ErrorCode,
    LiveLayerConnectionError,
    LiveLayerError,
    LiveLayerOptions,
    SessionGrant,
    request_session,
)
from .room import AUDIO_RATE, MicrophoneTrack, Room, RoomFactory, RoomHandler, Segment
from .session import ConnectionState, LiveLayerSession

__all__ = [
    "AUDIO_RATE",
    "AUTH_ERROR_CODES",
    "DEFAULT_SESSION_ENDPOINT",
    "AgentConfig",
    "ConnectionState",
    "ErrorCode",
    "LiveLayerConnectionError",
    "LiveLayerError",
    "LiveLayerOptions",
    "LiveLayerSession",
    "MicrophoneTrack",
    "Room",
    "RoomFactory",
    "RoomHandler",
    "Segment",
    "SessionGrant",
    "request_session",
]
