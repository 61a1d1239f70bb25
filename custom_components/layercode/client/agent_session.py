"""What every provider's session offers the runtime, and the turn bookkeeping they share.

The runtime, the STT, conversation and TTS entities and the status entities talk to an
`AgentSession` only: which provider is behind it (a Layercode WebSocket, a LiveLayer room)
shows nowhere above this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections import deque
from collections.abc import Callable
import contextlib
import logging
from typing import Any

from .audio import rms_level
from .errors import LayercodeTimeoutError, SessionClosedError
from .events import (
    AgentSpeakingChanged,
    AgentState,
    AgentStateChanged,
    AgentTurnStarted,
    AmplitudeChanged,
    SessionEvent,
    SessionFailed,
    SessionStatus,
    StatusChanged,
    UserSpeakingChanged,
)
from .turns import AgentTurn

_LOGGER = logging.getLogger(__name__)

UNCONSUMED_AUDIO_TIMEOUT = 15.0
MAX_TURN_AUDIO_SECONDS = 300

type Listener = Callable[[SessionEvent], None]


class AgentSession(ABC):
    """One conversation with a hosted voice agent.

    Feed it the microphone's 16 kHz PCM with `send_audio` between `begin_user_speech` and
    `end_user_speech`; read the agent's turns from `AgentTurnStarted` events and the user's
    words from `UserTranscript` events. Listeners get every event, in order.
    """

    def __init__(
        self,
        *,
        conversation_id: str | None,
        audio_input: bool,
        audio_output: bool,
        muted: bool,
        unconsumed_audio_timeout: float,
        max_turn_audio_seconds: int,
    ) -> None:
        self.conversation_id = conversation_id
        """The provider's id of the conversation (Layercode's conversation, LiveLayer's room)."""
        self.status = SessionStatus.DISCONNECTED
        self.agent_state = AgentState.IDLE
        self.audio_input = audio_input
        self.audio_output = audio_output
        self.muted = muted
        self.user_speaking = False
        self.agent_speaking = False
        self.user_amplitude = 0.0
        self.agent_amplitude = 0.0
        self.agent_turn: AgentTurn | None = None
        self.user_turn_id: str | None = None

        self._unconsumed_audio_timeout = unconsumed_audio_timeout
        self._max_turn_audio_bytes = max_turn_audio_seconds * 16_000 * 2
        self._listeners: list[Listener] = []
        self._interrupted_turn_ids: deque[str] = deque(maxlen=32)
        self._unconsumed_timers: dict[AgentTurn, asyncio.TimerHandle] = {}

    # -- what each provider implements -------------------------------------------------

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether the connection to the agent is up."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the session. Raises a LayercodeError when it cannot."""

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the session and stop resuming. Safe to call at any time."""

    @abstractmethod
    async def begin_user_speech(self) -> None:
        """The user starts speaking."""

    @abstractmethod
    async def send_audio(self, pcm: bytes) -> None:
        """Hand over 16 kHz 16-bit mono PCM from the microphone, in chunks of any size."""

    @abstractmethod
    async def end_user_speech(self) -> None:
        """The user stopped speaking: close the turn."""

    @abstractmethod
    async def cut_in(self) -> None:
        """The user cut the agent off without a word here: stop the agent's turn."""

    @abstractmethod
    async def send_text(self, text: str) -> None:
        """Typed user input: interrupts a speaking agent, then ends the user turn."""

    @abstractmethod
    async def send_data(self, data: dict[str, Any]) -> None:
        """A JSON object for the agent's backend; does not touch the turn."""

    @abstractmethod
    async def set_muted(self, muted: bool) -> None:
        """Mute: nothing from the microphone reaches the agent."""

    @abstractmethod
    def _on_turn_played(self, turn: AgentTurn) -> None:
        """A turn's audio was played out (or skipped): a provider may tell its server."""

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def expect(
        self, predicate: Callable[[SessionEvent], bool], *, across_drops: bool = False
    ) -> EventWaiter:
        """Start watching for an event now, to await it later (no race with the trigger).

        The wait fails when the session closes or fails, and also when the connection drops
        unless `across_drops`: what a turn awaits is lost with the connection.
        """
        return EventWaiter(self, predicate, across_drops=across_drops)

    def _emit(self, event: SessionEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                _LOGGER.exception("Listener failed on %s", type(event).__name__)

    # -- state -------------------------------------------------------------------------

    def _set_status(self, status: SessionStatus) -> None:
        if status is not self.status:
            self.status = status
            self._emit(StatusChanged(status))
            if status is not SessionStatus.CONNECTED:
                self._set_agent_state(AgentState.IDLE)

    def _set_agent_state(self, state: AgentState) -> None:
        if state is not self.agent_state:
            self.agent_state = state
            self._emit(AgentStateChanged(state))

    @property
    def _capturing(self) -> bool:
        return self.audio_input and not self.muted

    def _set_user_speaking(self, speaking: bool) -> None:
        speaking = speaking and self._capturing
        if speaking != self.user_speaking:
            self.user_speaking = speaking
            self._emit(UserSpeakingChanged(speaking))

    def _set_agent_speaking(self, speaking: bool) -> None:
        speaking = speaking and self.audio_output
        if speaking != self.agent_speaking:
            self.agent_speaking = speaking
            self._emit(AgentSpeakingChanged(speaking))

    def set_audio_output(self, enabled: bool) -> None:
        """Switch agent audio on or off; off, the conversation still advances."""
        if enabled == self.audio_output:
            return
        self.audio_output = enabled
        if not enabled:
            self._set_agent_speaking(False)
            if self.agent_turn is not None:
                self.agent_turn.drop_unconsumed()

    # -- agent turns -------------------------------------------------------------------

    def _start_agent_turn(self, turn_id: str | None) -> AgentTurn:
        if self.agent_turn is not None and not self.agent_turn.ended:
            self._end_agent_turn(self.agent_turn)
        turn = AgentTurn(
            turn_id,
            max_audio_bytes=self._max_turn_audio_bytes,
            on_chunk_played=self._agent_chunk_played,
            on_played=self._agent_turn_played,
        )
        self.agent_turn = turn
        self._emit(AgentTurnStarted(turn))
        return turn

    def _add_agent_audio(self, turn: AgentTurn, pcm: bytes) -> None:
        if not pcm:
            return
        turn.add_audio(pcm)
        if not self.audio_output:
            turn.drop_unconsumed()
            return
        self._set_agent_speaking(True)

    def _end_agent_turn(self, turn: AgentTurn, *, failed: bool = False) -> None:
        if turn.ended:
            return
        turn.end(failed=failed)
        if not self.audio_output or not turn.audio_bytes_received:
            turn.drop_unconsumed()
        elif not turn.consumed:
            self._unconsumed_timers[turn] = asyncio.get_running_loop().call_later(
                self._unconsumed_audio_timeout, turn.drop_unconsumed
            )

    def interrupt_agent(self) -> None:
        """Barge-in: stop the agent's current turn here and drop its late audio."""
        turn = self.agent_turn
        if turn is None or turn.played or (turn.ended and not turn.audio_bytes_received):
            return
        _LOGGER.debug("Interrupting agent turn %s", turn.turn_id)
        if turn.turn_id is not None:
            self._interrupted_turn_ids.append(turn.turn_id)
        self._on_interrupt(turn)
        turn.interrupt()
        self._set_agent_speaking(False)

    @abstractmethod
    def _on_interrupt(self, turn: AgentTurn) -> None:
        """A turn is being interrupted: the provider drops what comes late for it."""

    def _agent_chunk_played(self, turn: AgentTurn, pcm: bytes) -> None:
        self.agent_amplitude = rms_level(pcm)
        self._emit(AmplitudeChanged("agent", self.agent_amplitude))

    def _agent_turn_played(self, turn: AgentTurn) -> None:
        if timer := self._unconsumed_timers.pop(turn, None):
            timer.cancel()
        if turn is self.agent_turn:
            self._set_agent_speaking(False)
            if self.agent_amplitude:
                self.agent_amplitude = 0.0
                self._emit(AmplitudeChanged("agent", 0.0))
        self._on_turn_played(turn)

    def _end_turn_state(self, *, lost: bool) -> None:
        """The connection is gone: end what was in flight so that nothing waits on it.

        A connection `lost` mid-turn leaves the turn failed but playable: what arrived can
        still be played, followed by a failure cue. A closed session drops everything.
        """
        turn = self.agent_turn
        if lost:
            if turn is not None:
                self._end_agent_turn(turn, failed=True)
        else:
            if turn is not None and not turn.ended:
                turn.interrupt()
            for timer in self._unconsumed_timers.values():
                timer.cancel()
            self._unconsumed_timers.clear()
        self._set_user_speaking(False)
        self._set_agent_speaking(False)


class EventWaiter:
    """A pending wait for the first event that matches; fails fast if the session closes."""

    def __init__(
        self,
        session: AgentSession,
        predicate: Callable[[SessionEvent], bool],
        *,
        across_drops: bool = False,
    ) -> None:
        self._predicate = predicate
        self._across_drops = across_drops
        self._connected = session.status is SessionStatus.CONNECTED
        self._future: asyncio.Future[SessionEvent] = asyncio.get_running_loop().create_future()
        self._remove = session.add_listener(self._on_event)

    def _on_event(self, event: SessionEvent) -> None:
        if self._future.done():
            return
        if self._predicate(event):
            self._future.set_result(event)
        elif isinstance(event, StatusChanged) and (
            self._dropped(event.status)
            or event.status in (SessionStatus.DISCONNECTED, SessionStatus.ERROR)
        ):
            self._future.set_exception(SessionClosedError(f"The session is {event.status}"))
        elif isinstance(event, SessionFailed):
            self._future.set_exception(event.error)

    def _dropped(self, status: SessionStatus) -> bool:
        """Whether `status` means the connection this wait began on was lost."""
        dropped = self._connected and status is SessionStatus.CONNECTING
        self._connected = status is SessionStatus.CONNECTED
        return dropped and not self._across_drops

    async def wait(self, timeout: float) -> SessionEvent:
        """The matching event; LayercodeTimeoutError when the bound runs out first."""
        try:
            async with asyncio.timeout(timeout):
                return await self._future
        except TimeoutError as err:
            raise LayercodeTimeoutError(f"No matching event within {timeout:g} s") from err
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop watching."""
        self._remove()
        if not self._future.done():
            self._future.cancel()
