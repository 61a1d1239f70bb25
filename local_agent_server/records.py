"""What the server saw and did, kept for tests, conformance traces and benchmarks.

Times named `*_at` are `time.monotonic()` seconds; transcript timestamps are wall-clock
milliseconds, as Layercode's `session.end` webhook carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """One WebSocket frame a client sent, as received."""

    at: float
    raw: str | bytes
    message: dict[str, Any] | None
    """The parsed JSON object; None for a frame that is not one (garbage, binary)."""


@dataclass(slots=True)
class ConnectionRecording:
    """Everything one client connection sent, in order."""

    session_id: str
    conversation_id: str
    opened_at: float
    frames: list[ClientFrame] = field(default_factory=list)
    closed_at: float | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The well-formed messages only."""
        return [frame.message for frame in self.frames if frame.message is not None]


@dataclass(slots=True)
class TurnRecord:
    """One agent turn and the user input it answered (none for a welcome)."""

    agent_turn_id: str
    started_at: float
    user_turn_id: str | None = None
    user_text: str | None = None
    user_ended_at: float | None = None
    """When the user's turn ended (speech end or typed text), before transcription."""
    agent_text: str = ""
    audio_bytes: int = 0
    """Agent audio actually sent to the client."""
    first_text_at: float | None = None
    first_audio_at: float | None = None
    interrupted: bool = False
    replay_finished: bool = False
    """Whether the client reported the turn's audio played before the turn ended."""
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One line of a conversation's transcript."""

    role: str
    text: str
    timestamp: int
    """Unix time in milliseconds."""

    def to_json(self) -> dict[str, Any]:
        """The `session.end` webhook's transcript item."""
        return {"role": self.role, "text": self.text, "timestamp": self.timestamp}


@dataclass(slots=True)
class Conversation:
    """A conversation, which outlives connections: a client resumes it by its id."""

    conversation_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    custom_metadata: dict[str, Any] | None = None
    """Forwarded on every webhook, as Layercode does."""
    custom_headers: dict[str, str] = field(default_factory=dict)
    """Added to every webhook request, as Layercode does."""
    session_ids: list[str] = field(default_factory=list)
    turns: list[TurnRecord] = field(default_factory=list)
    transcript: list[TranscriptEntry] = field(default_factory=list)
