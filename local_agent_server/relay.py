"""Relay mode: a LiveLayer agent answers every Layercode connection.

For a Home Assistant that cannot load LiveKit's native library (Home Assistant OS and
Container are musl-based): Home Assistant speaks Layercode's protocol to this server, and for
each WebSocket connection the server joins the LiveLayer agent's LiveKit room with the client
library's `LiveLayerSession`, translating both ways.

Client to agent:
- User speech, found as in a normal session (detection.py: `vad_events`, push-to-talk
  triggers, or energy): `turn.start {role: user}` to the client and `begin_user_speech`; the
  turn's `client.audio`, 8 kHz, resampled to 16 kHz and published as it comes (the session
  paces it in real time); at its end, `end_user_speech`.
- `client.response.text`: the user turn (`turn.start`, `user.transcript`, `turn.end`) at once,
  then `send_text` (a chat message in the room).
- `client.response.data {data}`: `send_data` (a data message in the room).
- User input while the agent's reply is still playing is a barge-in: the reply is dropped here
  and in the session, and gets no `response.end` or `turn.end`. Whether the agent itself
  stops is the agent's affair (LiveKit has no barge-in message): the server's `can_interrupt`
  only reaches the client, in the authorize answer.

Agent to client:
- The user's words as the agent transcribed them (`UserTranscript`): `user.transcript` and
  `turn.end` of the open user turn (opening one first if none is open and no reply is out).
- An agent turn (the agent speaking, cut by its `lk.agent.state`): `turn.start {role:
  assistant}`, its text as `response.text` pieces of whole words and its voice as
  `response.audio` as they come (LiveKit's 16 kHz is also Layercode's agent rate, so the audio
  passes as it is); `response.end` when the agent stops speaking; `turn.end` after the client's
  `replay_finished` (at most `replay_timeout` later), or at once when the next turn begins.
  Reading the turn's audio to its end is what counts it as played in the session.
- Data messages from the agent: `response.data`.
- The session failing for good (no agent joined, the room lost and not rejoined): the socket
  closes with code 1014 (bad gateway) and the reason.

The room is joined before the WebSocket upgrade. When the session endpoint or the room refuses,
the upgrade is answered with HTTP 502 and the reason, so the client's connect (or resume) fails;
a socket that opened and closed at once would only make the client resume again and again.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
import logging
import re
import time
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, web

from .agent_turn import AgentTurn
from .connection import CLOSE_TIMEOUT, ClientConnection, SessionSettings, decode_audio
from .detection import SpeechStarted, TurnEvent, UserTurnDetector, as_vad_event
from .ids import new_id
from .layercode_client import (
    AGENT_JOIN_TIMEOUT,
    AUDIO_RATE,
    RECONNECT_DELAYS,
    WIRE_INPUT_RATE,
    AgentTurn as LiveLayerTurn,
    AgentTurnStarted,
    ErrorCode,
    LayercodeError,
    LiveLayerConnectionError,
    LiveLayerError,
    LiveLayerOptions,
    LiveLayerSession,
    PcmConverter,
    ResponseData,
    RoomFactory,
    SessionEvent,
    SessionFailed,
    UserTranscript,
    default_room_factory,
)
from .records import Conversation, TurnRecord

_LOGGER = logging.getLogger(__name__)

JOIN_TIMEOUT = 8.0
"""Seconds to get a room from the session endpoint and join it: less than the Layercode client
waits for its WebSocket (10 s), so that it gets the relay's answer rather than its own timeout."""
_LEAVE_TIMEOUT = 5.0
"""Leaving a room that does not answer is abandoned after this many seconds."""
_WRAP_UP_TIMEOUT = 5.0
"""How long a new agent turn waits for the previous one to send what is left of it."""
_UP_TO_LAST_SPACE = re.compile(r".*\s", re.DOTALL)


@dataclass(frozen=True, slots=True)
class LiveLayerRelay:
    """Relay mode's upstream: the LiveLayer agent every client connection talks to."""

    options: LiveLayerOptions
    room_factory: RoomFactory = default_room_factory
    """How rooms are opened: with the LiveKit SDK (imported on first use), or a test's fake."""
    join_timeout: float = JOIN_TIMEOUT
    agent_join_timeout: float = AGENT_JOIN_TIMEOUT
    """Seconds the agent has to appear in the room before the connection is closed."""
    reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS
    """Backoff for rejoining a room that dropped, before the connection is closed."""


def failure_reason(error: LayercodeError) -> str:
    """What the client and the log are told when the agent cannot be reached (no secrets)."""
    code = error.code if isinstance(error, LiveLayerError) else None
    return f"LiveLayer: {error}" + (f" ({code})" if code else "")


@dataclass(slots=True)
class _UserTurn:
    """A user turn on the client's side: opened by the client, closed by the transcript."""

    turn_id: str
    ended_at: float | None = None
    """When the user stopped speaking or typed, for the answer's timings."""
    text: str | None = None
    closed: bool = False
    """Its `turn.end` went out."""


class RelaySession(ClientConnection):
    """Serves one client connection with a LiveLayer agent; see the module docstring."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        relay: LiveLayerRelay,
        http: aiohttp.ClientSession,
        settings: SessionSettings,
        conversation: Conversation,
    ) -> None:
        super().__init__(request, ws, conversation, settings)
        self._livelayer = LiveLayerSession(
            http,
            relay.options,
            room_factory=relay.room_factory,
            agent_join_timeout=relay.agent_join_timeout,
            reconnect_delays=relay.reconnect_delays,
        )
        self._join_timeout = relay.join_timeout
        self._events: asyncio.Queue[SessionEvent] = asyncio.Queue()
        self._livelayer.add_listener(self._on_agent_event)
        self._detector = UserTurnDetector(settings.trigger, settings.energy)
        self._upsampler = PcmConverter(WIRE_INPUT_RATE, AUDIO_RATE)
        self._published = 0
        """Bytes of the detector's current turn (8 kHz) already published."""
        self._user: _UserTurn | None = None
        """The latest user turn, until an agent turn answers it."""

    async def accept(self) -> None:
        """Join the agent's room, then upgrade. Raises a LayercodeError (and upgrades nothing)
        when the session endpoint or the room refuses."""
        try:
            await self._join()
            await super().accept()
        except BaseException as err:
            await self._leave()
            if isinstance(err, LayercodeError):
                _LOGGER.warning(
                    "Relay session %s refused: %s", self.session_id, failure_reason(err)
                )
            raise

    async def run(self) -> None:
        """Relay until the client or the agent goes away, then leave the room."""
        self._conversation.session_ids.append(self.session_id)
        _LOGGER.info(
            "Relay session %s opened (conversation %s, LiveLayer room %s)",
            self.session_id,
            self._conversation.conversation_id,
            self._livelayer.room_name,
        )
        self._spawn(self._relay_agent())
        try:
            await self._receive()
        finally:
            await self._cancel_tasks()
            await self._leave()
            if not self._ws.closed:
                await self._ws.close()
            self.recording.closed_at = time.monotonic()
            _LOGGER.info("Relay session %s closed", self.session_id)

    async def _join(self) -> None:
        try:
            async with asyncio.timeout(self._join_timeout):
                await self._livelayer.connect()
        except TimeoutError as err:
            raise LiveLayerConnectionError(
                f"No room joined within {self._join_timeout:g} s", ErrorCode.CONNECT_FAILED
            ) from err

    async def _leave(self) -> None:
        try:
            async with asyncio.timeout(_LEAVE_TIMEOUT):
                await self._livelayer.disconnect()
        except TimeoutError:
            _LOGGER.warning("Relay session %s: leaving the room timed out", self.session_id)

    # Client to agent.

    async def _on_message(self, message: dict[str, Any]) -> None:
        match message["type"]:
            case "client.ready":
                _LOGGER.debug("Relay session %s: client ready", self.session_id)
            case "client.audio":
                await self._on_audio(message.get("content"))
            case "vad_events":
                if (vad := as_vad_event(message.get("event"))) is not None:
                    await self._apply(self._detector.vad(vad))
            case "trigger.turn.start" | "trigger.turn.end" as kind:
                await self._apply(self._detector.push_to_talk(kind == "trigger.turn.start"))
            case "trigger.response.audio.replay_finished":
                await self._on_replay_finished()
            case "client.response.text":
                await self._on_typed_text(message.get("content"))
            case "client.response.data":
                await self._on_data(message.get("data"))
            case other:
                _LOGGER.warning("Ignoring a message of unknown type %r", other)

    async def _on_audio(self, content: object) -> None:
        pcm = decode_audio(content)
        if pcm is None:
            return
        in_turn = self._detector.in_turn
        events = self._detector.audio(pcm)
        if in_turn and not events:
            await self._publish(pcm)
        await self._apply(events)

    async def _apply(self, events: list[TurnEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                await self._speech_started()
                await self._publish(self._detector.turn_audio)  # energy: the onset's frames
            else:
                await self._publish(event.pcm[self._published :])  # a lone vad_end: all of it
                await self._livelayer.end_user_speech()
                if self._user is not None:
                    self._user.ended_at = time.monotonic()

    async def _speech_started(self) -> None:
        await self._livelayer.begin_user_speech()
        await self._take_turn()
        self._upsampler = PcmConverter(WIRE_INPUT_RATE, AUDIO_RATE)
        self._published = 0

    async def _publish(self, pcm: bytes) -> None:
        if not pcm:
            return
        self._published += len(pcm)
        try:
            await self._livelayer.send_audio(self._upsampler.process(pcm))
        except LayercodeError as err:
            _LOGGER.debug("Relay session %s: audio not sent: %s", self.session_id, err)

    async def _on_typed_text(self, content: object) -> None:
        if not isinstance(content, str):
            _LOGGER.warning("Ignoring client.response.text without text content")
            return
        if self._detector.in_turn:  # typed text replaces the words being spoken
            self._detector.reset()
            await self._livelayer.end_user_speech()
        user = await self._take_turn()
        user.ended_at = time.monotonic()
        await self._close_user_turn(user, content)
        try:
            await self._livelayer.send_text(content)
        except LayercodeError as err:
            _LOGGER.warning("Relay session %s: typed text not sent: %s", self.session_id, err)

    async def _on_data(self, data: object) -> None:
        if not isinstance(data, dict):
            _LOGGER.warning("Ignoring client.response.data whose data is not a JSON object")
            return
        try:
            await self._livelayer.send_data(data)
        except LayercodeError as err:
            _LOGGER.warning("Relay session %s: data not sent: %s", self.session_id, err)

    # User turns.

    async def _take_turn(self) -> _UserTurn:
        """The user takes the turn: a reply still playing is cut off (barge-in), one played
        out gets its `turn.end`; then the user turn opens, unless one is open."""
        reply, task = self._agent, self._agent_task
        if reply is not None and task is not None and not task.done():
            if reply.heard_all:
                await self._end_turn(reply)
            else:
                reply.record.interrupted = True
                self._livelayer.interrupt_agent()
            await self._cancel(task)
        user = self._user
        if user is None or user.closed:
            user = self._user = _UserTurn(new_id("turn"))
            await self._send({"type": "turn.start", "role": "user", "turn_id": user.turn_id})
        return user

    async def _close_user_turn(self, user: _UserTurn, text: str | None) -> None:
        """`user.transcript` (when the words are known) and `turn.end` of the user turn."""
        user.closed = True
        if text is not None:
            user.text = text
            self._add_transcript("user", text)
            await self._send({"type": "user.transcript", "content": text, "turn_id": user.turn_id})
        await self._send({"type": "turn.end", "role": "user", "turn_id": user.turn_id})

    # Agent to client.

    def _on_agent_event(self, event: SessionEvent) -> None:
        if isinstance(event, AgentTurnStarted | UserTranscript | ResponseData | SessionFailed):
            self._events.put_nowait(event)

    async def _relay_agent(self) -> None:
        """Translate the session's events, in order, for as long as the connection lasts."""
        while True:
            match await self._events.get():
                case AgentTurnStarted(turn=turn):
                    await self._reply_started(turn)
                case UserTranscript(content=text):
                    await self._user_transcript(text)
                case ResponseData(content=content, turn_id=turn_id):
                    await self._send(
                        {"type": "response.data", "content": content, "turn_id": turn_id}
                    )
                case SessionFailed(error=error):
                    reason = failure_reason(error)
                    _LOGGER.warning("Relay session %s closed: %s", self.session_id, reason)
                    await self.close(CLOSE_TIMEOUT, WSCloseCode.BAD_GATEWAY, reason)

    async def _user_transcript(self, text: str) -> None:
        user = self._user
        if user is None or user.closed:
            if self._agent_task is not None and not self._agent_task.done():
                # Words heard while a reply is out: a user turn.start would read as a barge-in.
                self._add_transcript("user", text)
                await self._send(
                    {"type": "user.transcript", "content": text, "turn_id": new_id("turn")}
                )
                return
            user = await self._take_turn()
        await self._close_user_turn(user, text)

    async def _reply_started(self, turn: LiveLayerTurn) -> None:
        await self._wrap_up_reply()
        user, self._user = self._user, None
        if user is not None and not user.closed:
            await self._close_user_turn(user, None)
        record = TurnRecord(
            turn.turn_id or new_id("turn"),
            time.monotonic(),
            user_turn_id=user.turn_id if user else None,
            user_text=user.text if user else None,
            user_ended_at=user.ended_at if user else None,
        )
        reply = self._agent = AgentTurn(record, send=self._send, pace_audio=False, announced=False)
        await reply.announce()
        self._agent_task = self._spawn(self._relay_reply(turn, reply))

    async def _wrap_up_reply(self) -> None:
        """A new agent turn begins, so the previous one is over in the room: what is left of it
        goes out, and its `turn.end` without waiting for `replay_finished`."""
        reply, task = self._agent, self._agent_task
        if reply is None or task is None or task.done():
            return
        reply.release()
        _, pending = await asyncio.wait({task}, timeout=_WRAP_UP_TIMEOUT)
        if pending:
            await self._cancel(task)

    async def _relay_reply(self, turn: LiveLayerTurn, reply: AgentTurn) -> None:
        """Stream the turn's text and audio as they come, then end it as a Layercode server
        does (an interrupted turn gets no end)."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._relay_text(turn, reply))
                group.create_task(self._relay_audio(turn, reply))
            if not turn.interrupted:
                await self._end_reply(reply)
        finally:
            self._finish(reply)

    @staticmethod
    async def _relay_text(turn: LiveLayerTurn, reply: AgentTurn) -> None:
        """The turn's words as `response.text` pieces that end between words: the client puts
        a space between pieces that do not."""
        pending = ""
        async with aclosing(turn.text_deltas()) as deltas:
            async for delta in deltas:
                pending += delta
                if match := _UP_TO_LAST_SPACE.match(pending):
                    await reply.send_text(match[0])
                    pending = pending[match.end() :]
        if pending and not turn.interrupted:
            await reply.send_text(pending)

    @staticmethod
    async def _relay_audio(turn: LiveLayerTurn, reply: AgentTurn) -> None:
        async with aclosing(turn.audio_stream()) as audio:
            async for pcm in audio:
                await reply.send_audio(pcm)
