"""A LiveLayer session: LiveLayer's browser `LiveKitSession`, in Python, as an AgentSession.

The agent runs in a LiveKit room. The session asks LiveLayer's session endpoint for a room
token, joins the room, publishes Home Assistant's microphone audio paced in real time, and
reads the agent's state, transcripts, data and voice. Agent speech becomes agent turns (from
`speaking` until the agent leaves that state), the user's final transcript a `UserTranscript`,
so that nothing above the session knows which provider it talks to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
import contextlib
from enum import StrEnum
import itertools
import json
import logging
import time
from typing import Any

import aiohttp

from ..agent_session import MAX_TURN_AUDIO_SECONDS, UNCONSUMED_AUDIO_TIMEOUT, AgentSession
from ..audio import rms_level
from ..errors import LayercodeError, SessionClosedError
from ..events import (
    AgentState,
    AmplitudeChanged,
    Connected,
    MuteChanged,
    SessionFailed,
    SessionStatus,
    TranscriptEntry,
    TranscriptUpdated,
)
from ..messages import ResponseData, ResponseEnd, UserTranscript
from ..turns import AgentTurn
from .api import (
    AgentConfig,
    ErrorCode,
    LiveLayerConnectionError,
    LiveLayerError,
    LiveLayerOptions,
    request_session,
)
from .room import AUDIO_RATE, MicrophoneTrack, Room, RoomFactory, Segment

_LOGGER = logging.getLogger(__name__)

RESUME_WINDOW = 300.0
"""A reconnect within this many seconds of the last connect continues the conversation."""
AGENT_JOIN_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0)
FRAME_BYTES = AUDIO_RATE // 50 * 2
"""20 ms of 16 kHz mono PCM: what is published at a time."""
CATCH_UP = 0.1
"""Seconds of audio the pacer may send ahead of real time after a stall."""
END_OF_SPEECH_SILENCE = 3.0
"""Silence published after the user's speech, so that the agent's own turn detection hears
its end; stops early once the agent answers."""
AGENT_STATE_ATTRIBUTE = "lk.agent.state"
SEGMENT_ATTRIBUTE = "lk.segment_id"
FINAL_ATTRIBUTE = "lk.transcription_final"
TRANSCRIBED_TRACK_ATTRIBUTE = "lk.transcribed_track_id"


class ConnectionState(StrEnum):
    """The browser SDK's connection states."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"
    DISCONNECTED = "disconnected"


_STATUS = {
    ConnectionState.IDLE: SessionStatus.DISCONNECTED,
    ConnectionState.CONNECTING: SessionStatus.CONNECTING,
    ConnectionState.CONNECTED: SessionStatus.CONNECTED,
    ConnectionState.ERROR: SessionStatus.ERROR,
    ConnectionState.DISCONNECTED: SessionStatus.DISCONNECTED,
}
_AGENT_STATES = {
    "initializing": AgentState.IDLE,
    "idle": AgentState.IDLE,
    "listening": AgentState.LISTENING,
    "thinking": AgentState.THINKING,
    "speaking": AgentState.SPEAKING,
}


def default_room_factory(handler: Any) -> Room:
    """A room on the official LiveKit SDK (imported here, on first use)."""
    from .livekit_room import LiveKitRoom  # noqa: PLC0415 - optional native dependency

    return LiveKitRoom(handler)


class LiveLayerSession(AgentSession):
    """One conversation with a LiveLayer agent in a LiveKit room."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        options: LiveLayerOptions,
        *,
        room_factory: RoomFactory = default_room_factory,
        clock: Callable[[], float] = time.monotonic,
        audio_input: bool = True,
        audio_output: bool = True,
        muted: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        agent_join_timeout: float = AGENT_JOIN_TIMEOUT,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
        end_of_speech_silence: float = END_OF_SPEECH_SILENCE,
        unconsumed_audio_timeout: float = UNCONSUMED_AUDIO_TIMEOUT,
        max_turn_audio_seconds: int = MAX_TURN_AUDIO_SECONDS,
    ) -> None:
        super().__init__(
            conversation_id=None,
            audio_input=audio_input,
            audio_output=audio_output,
            muted=muted,
            unconsumed_audio_timeout=unconsumed_audio_timeout,
            max_turn_audio_seconds=max_turn_audio_seconds,
        )
        self._http = http
        self.options = options
        self._room_factory = room_factory
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._agent_join_timeout = agent_join_timeout
        self._reconnect_delays = reconnect_delays
        self._end_of_speech_silence = end_of_speech_silence

        self.connection_state = ConnectionState.IDLE
        self.agent_config = AgentConfig()
        self.agent_identity: str | None = None
        self.room_name: str | None = None
        self.error: LiveLayerError | None = None
        self._transcript: dict[str, TranscriptEntry] = {}
        self._room: Room | None = None
        self._microphone: MicrophoneTrack | None = None
        self._last_connect: float | None = None
        self._agent_timer: asyncio.TimerHandle | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._turn_ids = itertools.count(1)
        self._turn_segments: dict[str, str] = {}
        """Agent segments of the current turn, with the text already added to it."""
        self._heard: list[TranscriptEntry] = []
        """Final user segments not yet reported as the user's transcript."""
        self._ignoring_agent = False
        """The current agent utterance was interrupted: drop it until the agent stops."""
        self._pending = bytearray()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._speech_open = False
        self._silence_until = 0.0

    # -- the browser SDK's API ---------------------------------------------------------

    @property
    def room(self) -> Room | None:
        """The underlying room, while joined."""
        return self._room

    @property
    def transcript(self) -> list[TranscriptEntry]:
        """The conversation so far, in order of first appearance."""
        return list(self._transcript.values())

    @property
    def connected(self) -> bool:
        return self.connection_state is ConnectionState.CONNECTED

    def can_resume(self) -> bool:
        """Whether a connect now continues the last room's conversation."""
        return (
            self.room_name is not None
            and self._last_connect is not None
            and self._clock() - self._last_connect < RESUME_WINDOW
        )

    async def connect(self) -> None:
        """Ask the session endpoint for a room, then join it. Raises a LiveLayerError."""
        if self.connected:
            return
        self._closing = False
        self._set_connection(ConnectionState.CONNECTING)
        try:
            await self._request_and_join()
        except LiveLayerError as err:
            self._fail_connect(err)
            raise

    async def connect_with_token(self, url: str, token: str) -> None:
        """Join a room with a token minted elsewhere (no session request)."""
        if self.connected:
            return
        self._closing = False
        self._set_connection(ConnectionState.CONNECTING)
        try:
            await self._join(url, token, self.room_name, resumed=False)
        except LiveLayerError as err:
            self._fail_connect(err)
            raise

    async def disconnect(self) -> None:
        """Leave the room and clear the transcript. Safe when already disconnected."""
        self._closing = True
        for task in (self._reconnect, self._sender, *self._tasks):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconnect = self._sender = None
        await self._leave()
        self._transcript.clear()
        self._end_state(lost=False)
        if self.connection_state is not ConnectionState.IDLE:
            self._set_connection(ConnectionState.DISCONNECTED)

    # -- connecting --------------------------------------------------------------------

    async def _request_and_join(self) -> None:
        prior = self.room_name if self.can_resume() else None
        grant = await request_session(self._http, self.options, prior)
        self.agent_config = grant.agent_config
        await self._join(grant.url, grant.token, grant.room_name, resumed=prior is not None)

    async def _join(self, url: str, token: str, room_name: str | None, *, resumed: bool) -> None:
        room = self._room_factory(self)
        self._room = room
        try:
            async with asyncio.timeout(self._connect_timeout):
                await room.connect(url, token)
                self._microphone = await room.publish_microphone()
        except (TimeoutError, Exception) as err:
            self._room = self._microphone = None
            with contextlib.suppress(Exception):
                await room.disconnect()
            if isinstance(err, LayercodeError):
                raise
            raise LiveLayerConnectionError(
                f"Cannot join the LiveKit room: {str(err) or 'timed out'}", ErrorCode.CONNECT_FAILED
            ) from err
        if self._closing:
            await self._leave()
            raise SessionClosedError("The session was closed while connecting")
        self.room_name = self.conversation_id = room_name
        self._last_connect = self._clock()
        self.error = None
        self._sender = asyncio.get_running_loop().create_task(
            self._send_microphone(), name=f"livelayer microphone {room_name}"
        )
        if self.agent_identity is None:
            self._agent_timer = asyncio.get_running_loop().call_later(
                self._agent_join_timeout, self._agent_missing
            )
        self._set_connection(ConnectionState.CONNECTED)
        if self.agent_state is AgentState.IDLE and self.agent_identity is not None:
            self._set_agent_state(AgentState.LISTENING)
        self._emit(Connected(room_name or "", resumed))

    def _fail_connect(self, err: LiveLayerError) -> None:
        self.error = err
        self._set_connection(ConnectionState.ERROR)

    async def _leave(self) -> None:
        if self._agent_timer is not None:
            self._agent_timer.cancel()
            self._agent_timer = None
        room, self._room, self._microphone = self._room, None, None
        self.agent_identity = None
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()
        self._sender = None
        if room is not None:
            with contextlib.suppress(Exception):
                await room.disconnect()

    def _agent_missing(self) -> None:
        self._agent_timer = None
        self._fail(
            LiveLayerError(
                f"No agent joined the room within {self._agent_join_timeout:g} s",
                ErrorCode.AGENT_TIMEOUT,
            )
        )

    def _fail(self, err: LiveLayerError) -> None:
        """Give up: leave the room, report the error, stay in the error state."""
        _LOGGER.warning("LiveLayer room %s: %s", self.room_name, err)
        self.error = err
        self._end_state(lost=True)
        self._spawn(self._leave())
        self._emit(SessionFailed(err))
        self._set_connection(ConnectionState.ERROR)

    async def _resume(self, reason: str) -> None:
        """The room dropped: join again (resuming the conversation), with bounded backoff.

        A refusal that retrying cannot fix (an expired key) ends it with that refusal.
        """
        error = LiveLayerError(f"The room disconnected: {reason}", ErrorCode.ROOM_DISCONNECT)
        for delay in self._reconnect_delays:
            await asyncio.sleep(delay)
            try:
                await self._request_and_join()
            except LiveLayerConnectionError as err:
                _LOGGER.debug("Rejoining room %s failed: %s", self.room_name, err)
                continue
            except LiveLayerError as err:
                error = err
                break
            self._reconnect = None
            return
        self._reconnect = None
        self._fail(error)

    def _set_connection(self, state: ConnectionState) -> None:
        self.connection_state = state
        self._set_status(_STATUS[state])

    # -- what the room reports (RoomHandler) -------------------------------------------

    def participant_joined(
        self, identity: str, is_agent: bool, attributes: Mapping[str, str]
    ) -> None:
        if self.agent_identity is not None and not is_agent:
            return
        self.agent_identity = identity
        if self._agent_timer is not None:
            self._agent_timer.cancel()
            self._agent_timer = None
        if self.connected and self.agent_state is AgentState.IDLE:
            self._set_agent_state(AgentState.LISTENING)
        self.attributes_changed(identity, attributes)

    def participant_left(self, identity: str) -> None:
        if identity != self.agent_identity:
            return
        self.agent_identity = None
        self._on_agent_state(AgentState.IDLE)
        if self.connected and self._agent_timer is None:
            self._agent_timer = asyncio.get_running_loop().call_later(
                self._agent_join_timeout, self._agent_missing
            )

    def attributes_changed(self, identity: str, attributes: Mapping[str, str]) -> None:
        if identity != self.agent_identity:
            return
        if (state := _AGENT_STATES.get(attributes.get(AGENT_STATE_ATTRIBUTE, ""))) is not None:
            self._on_agent_state(state)

    def data_received(self, payload: bytes, identity: str | None, topic: str | None) -> None:
        try:
            content: Any = json.loads(payload)
        except ValueError:
            content = payload.decode(errors="replace")
        if isinstance(content, dict):
            kind = content.get("type")
            if kind == "agent_state":
                if (state := _AGENT_STATES.get(str(content.get("state")))) is not None:
                    self._on_agent_state(state)
                else:
                    _LOGGER.debug("Ignoring an unknown agent state: %.80s", content)
                return
            if kind == "agent_caption":
                caption_id, text = content.get("id"), content.get("text")
                if isinstance(caption_id, str) and isinstance(text, str):
                    self._upsert(caption_id, "agent", text, bool(content.get("final")))
                else:
                    _LOGGER.debug("Ignoring a caption without id or text: %.80s", content)
                return
        turn = self.agent_turn
        if turn is not None and not turn.ended:
            turn.add_data(content)
        self._emit(ResponseData(content, turn.turn_id if turn else None))

    def transcription(self, identity: str, segments: list[Segment]) -> None:
        role = self._role(identity, {})
        for segment in segments:
            self._upsert(segment.id, role, segment.text, segment.final)

    def text_stream(
        self, identity: str, attributes: Mapping[str, str], chunks: AsyncIterator[str]
    ) -> None:
        self._spawn(self._read_text_stream(identity, dict(attributes), chunks))

    def agent_audio(self, identity: str, frames: AsyncIterator[bytes]) -> None:
        self._spawn(self._read_agent_audio(identity, frames))

    def disconnected(self, reason: str) -> None:
        if self._closing or self._reconnect is not None:
            return
        _LOGGER.info("LiveLayer room %s disconnected (%s): rejoining", self.room_name, reason)
        self._end_state(lost=True)
        self._spawn(self._leave())
        self._set_connection(ConnectionState.CONNECTING)
        self._reconnect = asyncio.get_running_loop().create_task(
            self._resume(reason), name=f"livelayer resume {self.room_name}"
        )

    # -- transcripts -------------------------------------------------------------------

    def _role(self, identity: str, attributes: Mapping[str, str]) -> str:
        """Whose words: the local participant's are the user's, anyone else's the agent's."""
        room = self._room
        local = room.local_identity if room is not None else None
        if identity == local:
            return "user"
        track = attributes.get(TRANSCRIBED_TRACK_ATTRIBUTE)
        if track and identity != self.agent_identity and identity:
            return "user"
        return "agent"

    async def _read_text_stream(
        self, identity: str, attributes: dict[str, str], chunks: AsyncIterator[str]
    ) -> None:
        role = self._role(identity, attributes)
        segment_id = attributes.get(SEGMENT_ATTRIBUTE) or f"stream-{id(chunks)}"
        final = attributes.get(FINAL_ATTRIBUTE, "true").lower() == "true"
        text = ""
        try:
            async for chunk in chunks:
                text += chunk
                self._upsert(segment_id, role, text, False)
        except Exception as err:
            _LOGGER.debug("Transcription stream %s broke: %s", segment_id, err)
        self._upsert(segment_id, role, text, final)

    def _upsert(self, entry_id: str, role: str, text: str, final: bool) -> None:
        """Add or update a transcript entry; one segment on two paths is one entry."""
        old = self._transcript.get(entry_id)
        if old is not None and old.final and not final:
            return  # a late interim after the final from another path
        entry = TranscriptEntry(entry_id, role, text, final)
        if old == entry:
            return
        self._transcript[entry_id] = entry
        self._emit(TranscriptUpdated(entry))
        if role == "user":
            if final and (old is None or not old.final) and text.strip():
                self._heard.append(entry)
                if self.agent_state in (AgentState.THINKING, AgentState.SPEAKING):
                    self._report_heard()
        else:
            self._add_agent_text(entry)

    def _report_heard(self) -> None:
        """The agent took the user's turn: its final words are the user's transcript."""
        if not self._heard:
            return
        heard, self._heard = self._heard, []
        self.user_turn_id = heard[-1].id
        self._emit(UserTranscript(" ".join(e.text.strip() for e in heard), heard[-1].id))

    # -- agent turns -------------------------------------------------------------------

    def _on_agent_state(self, state: AgentState) -> None:
        previous = self.agent_state
        if state is previous:
            return
        self._set_agent_state(state)
        if state in (AgentState.THINKING, AgentState.SPEAKING):
            self._report_heard()
            self._silence_until = 0.0
        if state is AgentState.SPEAKING and not self._ignoring_agent:
            self._current_turn()
        elif previous is AgentState.SPEAKING:
            self._ignoring_agent = False
            if (turn := self.agent_turn) is not None and not turn.ended:
                self._end_agent_turn(turn)
                self._emit(ResponseEnd(turn.turn_id))

    def _current_turn(self) -> AgentTurn | None:
        """The open agent turn, started if the agent speaks; None while it is ignored."""
        if self._ignoring_agent:
            return None
        turn = self.agent_turn
        if turn is None or turn.ended:
            self._turn_segments.clear()
            turn = self._start_agent_turn(f"{self.room_name}-{next(self._turn_ids)}")
        return turn

    def _add_agent_text(self, entry: TranscriptEntry) -> None:
        """Agent words go to the open turn as they grow (a new segment may open a turn)."""
        turn = self.agent_turn
        known = self._turn_segments.get(entry.id)
        if known is None and (turn is None or turn.ended):
            if self.agent_state not in (AgentState.THINKING, AgentState.SPEAKING):
                return  # a caption of a turn already over
            turn = self._current_turn()
        if turn is None or turn.ended:
            return
        known = known or ""
        if entry.text.startswith(known) and len(entry.text) > len(known):
            turn.add_text(entry.text[len(known) :], delta=bool(known))
            self._turn_segments[entry.id] = entry.text

    async def _read_agent_audio(self, identity: str, frames: AsyncIterator[bytes]) -> None:
        async for pcm in frames:
            if self.agent_identity is not None and identity != self.agent_identity:
                continue
            if self.agent_state is not AgentState.SPEAKING:
                continue
            if (turn := self._current_turn()) is not None:
                self._add_agent_audio(turn, pcm)

    def _on_interrupt(self, turn: AgentTurn) -> None:
        if self.agent_state is AgentState.SPEAKING:
            self._ignoring_agent = True

    def _on_turn_played(self, turn: AgentTurn) -> None:
        """Nothing to tell: the agent's own playout ends its turn in the room."""

    def _end_state(self, *, lost: bool) -> None:
        self._end_turn_state(lost=lost)
        if lost and (turn := self.agent_turn) is not None:
            self._emit(ResponseEnd(turn.turn_id))
        self._set_agent_state(AgentState.IDLE)
        self._speech_open = False
        self._pending.clear()
        self._heard.clear()
        self._drain_outgoing()

    # -- microphone --------------------------------------------------------------------

    async def begin_user_speech(self) -> None:
        if self._speech_open:
            return
        self._speech_open = True
        self._silence_until = 0.0
        if self.agent_state is AgentState.SPEAKING or (
            self.agent_turn is not None and not self.agent_turn.played
        ):
            self.interrupt_agent()
        self._set_user_speaking(True)

    async def send_audio(self, pcm: bytes) -> None:
        if not self._capturing or not self._speech_open:
            return
        if not self.connected:
            raise SessionClosedError("Cannot send audio: not connected")
        self._pending += pcm
        while len(self._pending) >= FRAME_BYTES:
            self._outgoing.put_nowait(bytes(self._pending[:FRAME_BYTES]))
            del self._pending[:FRAME_BYTES]

    async def end_user_speech(self) -> None:
        if not self._speech_open:
            return
        self._speech_open = False
        if self._pending:
            self._outgoing.put_nowait(bytes(self._pending).ljust(FRAME_BYTES, b"\0"))
            self._pending.clear()
        self._set_user_speaking(False)
        if self._capturing and self.agent_state is AgentState.LISTENING:
            self._silence_until = asyncio.get_running_loop().time() + self._end_of_speech_silence
            self._outgoing.put_nowait(b"")  # wakes an idle sender for the silence tail

    async def cut_in(self) -> None:
        self.interrupt_agent()

    async def _send_microphone(self) -> None:
        """Publish queued audio in real time; silence after speech while the agent listens."""
        loop = asyncio.get_running_loop()
        silence = bytes(FRAME_BYTES)
        frame_time = FRAME_BYTES / 2 / AUDIO_RATE
        next_at = loop.time()
        while True:
            if self._outgoing.empty() and loop.time() >= self._silence_until:
                frame = await self._outgoing.get()
                next_at = max(next_at, loop.time())
            elif self._outgoing.empty():
                frame = silence
            else:
                frame = self._outgoing.get_nowait()
            if not frame:
                continue
            if (delay := next_at - loop.time()) > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at, loop.time() - CATCH_UP) + frame_time
            microphone = self._microphone
            if microphone is None:
                continue
            try:
                await microphone.capture(frame)
            except Exception as err:
                _LOGGER.debug("Publishing microphone audio failed: %s", err)
                continue
            if frame is not silence:
                self.user_amplitude = rms_level(frame)
                self._emit(AmplitudeChanged("user", self.user_amplitude))

    def _drain_outgoing(self) -> None:
        while not self._outgoing.empty():
            self._outgoing.get_nowait()

    async def set_muted(self, muted: bool) -> None:
        if muted == self.muted:
            return
        self.muted = muted
        if muted:
            self._pending.clear()
            self._drain_outgoing()
            self._set_user_speaking(False)
        self._emit(MuteChanged(muted))

    # -- text and data -----------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        self.interrupt_agent()
        await self._publish("text", lambda room: room.send_chat(text))
        self._on_agent_state(AgentState.THINKING)

    async def send_data(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, separators=(",", ":")).encode()
        await self._publish("data", lambda room: room.publish_data(payload))

    async def _publish(self, kind: str, send: Callable[[Room], Awaitable[None]]) -> None:
        room = self._room
        if room is None or not self.connected:
            raise SessionClosedError(f"Cannot send {kind}: not connected")
        try:
            await send(room)
        except Exception as err:
            raise SessionClosedError(f"Cannot send {kind}: {err}") from err

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
