"""What a session tells its listeners: every server message, plus its own state changes.

Both providers speak this vocabulary: a LiveLayer session reports its transcripts, data and
turn ends with the same message types a Layercode server sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from .errors import LayercodeError
from .messages import ServerMessage

if TYPE_CHECKING:
    from .turns import AgentTurn


class SessionStatus(StrEnum):
    """Connection status, the same four values the browser SDK reports."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class AgentState(StrEnum):
    """What the agent is doing, the four states LiveLayer's agents report."""

    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The connection status changed."""

    status: SessionStatus


@dataclass(frozen=True, slots=True)
class Connected:
    """A WebSocket is open and `client.ready` was sent; `resumed` after a drop."""

    conversation_id: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class AgentTurnStarted:
    """A new agent turn: its text, data and audio collect in `turn`."""

    turn: AgentTurn


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """The agent is now idle, listening, thinking or speaking."""

    state: AgentState


@dataclass(frozen=True, slots=True)
class AgentSpeakingChanged:
    """The agent started or stopped speaking (its audio is being played out)."""

    speaking: bool


@dataclass(frozen=True, slots=True)
class UserSpeakingChanged:
    """The user started or stopped speaking."""

    speaking: bool


@dataclass(frozen=True, slots=True)
class MuteChanged:
    """The microphone was muted or unmuted."""

    muted: bool


@dataclass(frozen=True, slots=True)
class AmplitudeChanged:
    """RMS level, 0 to 1, of the user's audio going out or the agent's audio played."""

    role: str
    level: float


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One line of the conversation's transcript, upserted by `id` as it firms up."""

    id: str
    role: str
    """"user" or "agent"."""
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class TranscriptUpdated:
    """A transcript entry was added or changed."""

    entry: TranscriptEntry


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """The session gave up (for example resume failed); it is now in the error status."""

    error: LayercodeError


type SessionEvent = (
    ServerMessage
    | StatusChanged
    | Connected
    | AgentTurnStarted
    | AgentStateChanged
    | AgentSpeakingChanged
    | UserSpeakingChanged
    | MuteChanged
    | AmplitudeChanged
    | TranscriptUpdated
    | SessionFailed
)
