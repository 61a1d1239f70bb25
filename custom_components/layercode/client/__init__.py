"""A Python client for Layercode voice agents, modelled on the official browser SDK.

Pure asyncio on aiohttp; nothing here imports Home Assistant, so that it could ship on
PyPI as its own library.
"""

from .agent_session import AgentSession, EventWaiter
from .authorize import LAYERCODE_AUTHORIZE_URL, SDK_VERSION, Authorizer
from .config import Authorization, SessionConfig, TurnTrigger, VadConfig
from .errors import (
    TRANSIENT_ERRORS,
    AgentNotFoundError,
    AuthorizeError,
    BadRequestError,
    ConcurrencyLimitError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    InvalidResponseError,
    LayercodeConnectionError,
    LayercodeError,
    LayercodeTimeoutError,
    ServerError,
    SessionClosedError,
)
from .events import (
    AgentSpeakingChanged,
    AgentState,
    AgentStateChanged,
    AgentTurnStarted,
    AmplitudeChanged,
    Connected,
    MuteChanged,
    SessionEvent,
    SessionFailed,
    SessionStatus,
    StatusChanged,
    UserSpeakingChanged,
)
from .session import LAYERCODE_WEBSOCKET_URL, LayercodeSession
from .turns import AgentTurn

__all__ = [
    "LAYERCODE_AUTHORIZE_URL",
    "LAYERCODE_WEBSOCKET_URL",
    "SDK_VERSION",
    "TRANSIENT_ERRORS",
    "AgentNotFoundError",
    "AgentSession",
    "AgentSpeakingChanged",
    "AgentState",
    "AgentStateChanged",
    "AgentTurn",
    "AgentTurnStarted",
    "AmplitudeChanged",
    "Authorization",
    "AuthorizeError",
    "Authorizer",
    "BadRequestError",
    "ConcurrencyLimitError",
    "Connected",
    "EventWaiter",
    "InsufficientBalanceError",
    "InvalidApiKeyError",
    "InvalidResponseError",
    "LayercodeConnectionError",
    "LayercodeError",
    "LayercodeSession",
    "LayercodeTimeoutError",
    "MuteChanged",
    "ServerError",
    "SessionClosedError",
    "SessionConfig",
    "SessionEvent",
    "SessionFailed",
    "SessionStatus",
    "StatusChanged",
    "TurnTrigger",
    "UserSpeakingChanged",
    "VadConfig",
]
