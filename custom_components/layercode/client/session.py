"""A Layercode session: authorize, WebSocket, audio in and out, resume after a drop.

It behaves on the wire like the official browser SDK's `LayercodeClient`; the few
deliberate differences are listed in tests/conformance.
"""

from __future__ import annotations

import asyncio
from collections import deque
import contextlib
import logging
from typing import Any

import aiohttp
from yarl import URL

from .agent_session import (
    MAX_TURN_AUDIO_SECONDS,
    UNCONSUMED_AUDIO_TIMEOUT,
    AgentSession,
)
from .audio import FRAME_BYTES, Decimator, FrameBatcher, sample_level, to_pcm
from .authorize import Authorizer
from .config import Authorization, SessionConfig, TurnTrigger
from .errors import (
    TRANSIENT_ERRORS,
    LayercodeConnectionError,
    LayercodeError,
    LayercodeTimeoutError,
    SessionClosedError,
)
from .events import (
    AgentState,
    AmplitudeChanged,
    Connected,
    MuteChanged,
    SessionFailed,
    SessionStatus,
)
from .messages import (
    ClientMessage,
    InvalidMessageError,
    ResponseAudio,
    ResponseData,
    ResponseEnd,
    ResponseText,
    ResponseTextDelta,
    ServerMessage,
    TurnEnd,
    TurnStart,
    client_audio_frame,
    client_ready,
    encode_client_message,
    parse_server_message,
    replay_finished,
    response_data,
    response_text,
    turn_trigger,
    vad_event,
)
from .turns import AgentTurn

_LOGGER = logging.getLogger(__name__)

LAYERCODE_WEBSOCKET_URL = "wss://api.layercode.com/v1/agents/web/websocket"
CONNECT_TIMEOUT = 10.0
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
HEARTBEAT = 20.0


class LayercodeSession(AgentSession):
    """One conversation with a Layercode agent over one (re)connected WebSocket.

    Its agent state follows the turns: listening from a user turn's start (and between
    turns), thinking from its end, speaking from the agent's first audio until it has played.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        authorizer: Authorizer,
        *,
        websocket_url: str = LAYERCODE_WEBSOCKET_URL,
        conversation_id: str | None = None,
        trigger: TurnTrigger | None = None,
        audio_input: bool = True,
        audio_output: bool = True,
        muted: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        reconnect_delays: tuple[float, ...] = RECONNECT_DELAYS,
        unconsumed_audio_timeout: float = UNCONSUMED_AUDIO_TIMEOUT,
        max_turn_audio_seconds: int = MAX_TURN_AUDIO_SECONDS,
        server_turn_detection: bool = False,
    ) -> None:
        super().__init__(
            conversation_id=conversation_id,
            audio_input=audio_input,
            audio_output=audio_output,
            muted=muted,
            unconsumed_audio_timeout=unconsumed_audio_timeout,
            max_turn_audio_seconds=max_turn_audio_seconds,
        )
        self._http = http
        self._authorizer = authorizer
        self._websocket_url = websocket_url
        self._trigger_override = trigger
        self._server_turn_detection = server_turn_detection
        self._connect_timeout = connect_timeout
        self._reconnect_delays = reconnect_delays
        self.config = SessionConfig()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._decimator = Decimator()
        # 16 kHz input is collected a frame's worth at a time and resampled once per frame,
        # not once per 10 ms chunk: an even-length block gives exactly one 8 kHz frame.
        self._batcher = FrameBatcher(2 * FRAME_BYTES)
        self._preroll: deque[bytes] = deque(maxlen=self.config.vad.buffer_frames)
        self._speech_open = False
        self._dropping_untagged_audio = False
        self._background: set[asyncio.Task[None]] = set()

    # -- connection --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the WebSocket is open."""
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        """Authorize and open the WebSocket. Raises a LayercodeError when it cannot."""
        if self.connected:
            return
        self._closing = False
        self._set_status(SessionStatus.CONNECTING)
        try:
            await self._open(resumed=False)
        except LayercodeError:
            self._set_status(SessionStatus.ERROR)
            raise

    async def _open(self, *, resumed: bool) -> None:
        auth = await self._authorizer(self._http, self.conversation_id)
        url = URL(self._websocket_url).update_query(client_session_key=auth.client_session_key)
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await self._http.ws_connect(url, heartbeat=HEARTBEAT, autoping=True)
        except TimeoutError as err:
            raise LayercodeTimeoutError("The WebSocket did not open in time") from err
        except aiohttp.WSServerHandshakeError as err:
            raise LayercodeConnectionError(
                f"The WebSocket was refused with HTTP {err.status}"
            ) from err
        except aiohttp.ClientError as err:
            raise LayercodeConnectionError(f"Cannot open the WebSocket: {err}") from err
        if self._closing:
            await ws.close()
            raise SessionClosedError("The session was closed while connecting")
        self._apply_authorization(auth)
        self._ws = ws
        self._reader = asyncio.get_running_loop().create_task(
            self._read(ws), name=f"layercode reader {self.conversation_id}"
        )
        await self._send(client_ready())
        self._set_status(SessionStatus.CONNECTED)
        self._set_agent_state(AgentState.LISTENING)
        self._emit(Connected(auth.conversation_id, resumed))

    def _apply_authorization(self, auth: Authorization) -> None:
        self.conversation_id = auth.conversation_id
        self.config = auth.config.with_trigger(self._trigger_override)
        self._preroll = deque(self._preroll, maxlen=max(0, self.config.vad.buffer_frames))

    async def disconnect(self) -> None:
        """Close the WebSocket and stop resuming. Safe to call at any time."""
        self._closing = True
        for task in (self._reconnect, self._reader, *self._background):
            if task and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconnect = self._reader = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        self._end_conversation_state()
        self._set_status(SessionStatus.DISCONNECTED)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    self._handle_frame(msg.data)
                except Exception:
                    _LOGGER.exception("Failed to handle a server message")
            elif msg.type is aiohttp.WSMsgType.BINARY:
                _LOGGER.debug("Ignoring a binary frame of %d bytes", len(msg.data))
        if self._ws is ws:
            self._ws = None
        if not self._closing:
            _LOGGER.info(
                "Conversation %s: connection lost (close code %s), resuming",
                self.conversation_id,
                ws.close_code,
            )
            self._end_conversation_state(lost=True)
            self._set_status(SessionStatus.CONNECTING)
            self._reconnect = asyncio.get_running_loop().create_task(
                self._resume(), name=f"layercode resume {self.conversation_id}"
            )

    async def _resume(self) -> None:
        """Authorize again with the same conversation id, with bounded backoff."""
        error: LayercodeError = LayercodeConnectionError("Connection lost")
        for delay in self._reconnect_delays:
            await asyncio.sleep(delay)
            try:
                await self._open(resumed=True)
            except TRANSIENT_ERRORS as err:
                error = err
            except LayercodeError as err:
                error = err
                break
            else:
                self._reconnect = None
                return
            _LOGGER.debug("Resume of %s failed: %s", self.conversation_id, error)
        self._reconnect = None
        _LOGGER.warning("Conversation %s: could not resume: %s", self.conversation_id, error)
        self._emit(SessionFailed(error))
        self._set_status(SessionStatus.ERROR)

    async def _send(self, message: ClientMessage) -> None:
        await self._send_frame(message["type"], encode_client_message(message))

    async def _send_audio(self, pcm: bytes) -> None:
        """A `client.audio` frame, its text built directly (the same bytes as `_send`'s)."""
        await self._send_frame("client.audio", client_audio_frame(pcm))

    async def _send_frame(self, kind: str, frame: str) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise SessionClosedError(f"Cannot send {kind}: not connected")
        async with self._send_lock:
            try:
                await ws.send_str(frame)
            except (ConnectionError, aiohttp.ClientError) as err:
                raise SessionClosedError(f"Cannot send {kind}: {err}") from err

    # -- server messages ---------------------------------------------------------------

    def _handle_frame(self, raw: str) -> None:
        try:
            message = parse_server_message(raw)
        except InvalidMessageError as err:
            _LOGGER.warning("Ignoring a bad frame from the server: %s", err)
            return
        if message is None:
            _LOGGER.debug("Ignoring a message of unknown type: %.80s", raw)
            return
        self._handle_message(message)

    def _handle_message(self, message: ServerMessage) -> None:
        match message:
            case TurnStart(role="assistant", turn_id=turn_id):
                self._set_user_speaking(False)
                self._dropping_untagged_audio = False
                self._agent_turn_for(turn_id, create=True)
                self._set_agent_state(AgentState.THINKING)
            case TurnStart(role="user", turn_id=turn_id):
                self.user_turn_id = turn_id
                if self.config.trigger is TurnTrigger.AUTOMATIC:
                    self.interrupt_agent()
                self._set_agent_speaking(False)
                self._set_user_speaking(self._capturing)
                self._set_agent_state(AgentState.LISTENING)
            case TurnEnd(role="user"):
                self._set_user_speaking(False)
                self._set_agent_state(AgentState.THINKING)
            case TurnEnd(role="assistant", turn_id=turn_id):
                if turn := self._agent_turn_for(turn_id, create=False):
                    self._end_agent_turn(turn)
            case ResponseAudio(pcm=pcm, turn_id=turn_id):
                if turn := self._agent_turn_for(turn_id, create=True, audio=True):
                    self._add_agent_audio(turn, pcm)
                    self._set_agent_state(AgentState.SPEAKING)
            case ResponseText(content=content, turn_id=turn_id):
                if turn := self._agent_turn_for(turn_id, create=True):
                    turn.add_text(content, delta=False)
            case ResponseTextDelta(content=content, turn_id=turn_id):
                if turn := self._agent_turn_for(turn_id, create=True):
                    turn.add_text(content, delta=True)
            case ResponseData(content=content, turn_id=turn_id):
                if turn := self._agent_turn_for(turn_id, create=False):
                    turn.add_data(content)
            case ResponseEnd(turn_id=turn_id):
                if turn := self._agent_turn_for(turn_id, create=False):
                    self._end_agent_turn(turn)
        self._emit(message)

    def _agent_turn_for(
        self, turn_id: str | None, *, create: bool, audio: bool = False
    ) -> AgentTurn | None:
        """The agent turn a server message belongs to; None when it must be dropped."""
        if turn_id is not None and turn_id in self._interrupted_turn_ids:
            _LOGGER.debug("Dropping a late message of interrupted turn %s", turn_id)
            return None
        current = self.agent_turn
        if turn_id is None:
            if audio and self._dropping_untagged_audio:
                return None
            if current is not None and not current.ended:
                return current
        elif current is not None and not current.ended and current.turn_id in (turn_id, None):
            current.turn_id = turn_id
            return current
        elif current is not None and current.turn_id == turn_id:
            return None
        return self._start_agent_turn(turn_id) if create else None

    def _on_interrupt(self, turn: AgentTurn) -> None:
        if turn.turn_id is None:
            self._dropping_untagged_audio = True

    def _on_turn_played(self, turn: AgentTurn) -> None:
        """Tell the server the turn was played out, once per turn."""
        if turn is self.agent_turn and self.connected:
            self._set_agent_state(AgentState.LISTENING)
        if (turn.audio_bytes_received or not self.audio_output) and self.connected:
            task = asyncio.get_running_loop().create_task(self._send_quietly(replay_finished()))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_quietly(self, message: ClientMessage) -> None:
        try:
            await self._send(message)
        except SessionClosedError as err:
            _LOGGER.debug("%s", err)

    def _end_conversation_state(self, *, lost: bool = False) -> None:
        self._end_turn_state(lost=lost)
        self._speech_open = False
        self._reset_input()

    # -- state -------------------------------------------------------------------------

    async def set_muted(self, muted: bool) -> None:
        """Mute: nothing from the microphone is sent, and what is buffered is dropped."""
        if muted == self.muted:
            return
        if muted:
            await self._close_speech_for_mute()
        self.muted = muted
        self._reset_input()
        self._emit(MuteChanged(muted))

    async def set_audio_input(self, enabled: bool) -> None:
        """Switch the microphone path on or off (off behaves like mute on the wire)."""
        if enabled == self.audio_input:
            return
        if not enabled:
            await self._close_speech_for_mute()
        self.audio_input = enabled
        self._reset_input()

    async def _close_speech_for_mute(self) -> None:
        """The browser SDK sends a synthetic vad_end when muted mid-speech (automatic)."""
        if self._speech_open and self.config.trigger is TurnTrigger.AUTOMATIC and self._capturing:
            self._speech_open = False
            await self._send_quietly(vad_event("vad_end"))
            self._set_user_speaking(False)

    def _reset_input(self) -> None:
        self._decimator.reset()
        self._batcher.clear()
        self._preroll.clear()

    # -- microphone --------------------------------------------------------------------

    @property
    def _server_detects_speech(self) -> bool:
        """Automatic turn-taking left to the server: audio streams, no vad_events."""
        return self._server_turn_detection and self.config.trigger is TurnTrigger.AUTOMATIC

    @property
    def _gated(self) -> bool:
        """Whether audio only flows during speech (it always does in push-to-talk)."""
        if self.config.trigger is TurnTrigger.PUSH_TO_TALK:
            return True
        if self._server_detects_speech:
            return False
        vad = self.config.vad
        return vad.enabled and vad.gate_audio

    async def begin_user_speech(self) -> None:
        """The user starts speaking: open the turn as the session's turn-taking asks."""
        if self._speech_open:
            return
        self._speech_open = True
        if self.config.trigger is TurnTrigger.PUSH_TO_TALK:
            await self._send(turn_trigger(start=True))
            self.interrupt_agent()
        elif self._capturing and not self._server_detects_speech:
            await self._send(vad_event("vad_start"))
        else:
            return
        self._set_user_speaking(True)
        if self._capturing:
            await self._flush_preroll()

    async def cut_in(self) -> None:
        """The user cut the agent off without a word here (the satellite moved on to a new
        run): an empty user turn, so that the server stops the agent's turn too."""
        if self._speech_open:
            return  # a real user turn already does it
        self.interrupt_agent()
        await self.begin_user_speech()
        await self.end_user_speech()

    async def send_audio(self, pcm: bytes) -> None:
        """Hand over 16 kHz 16-bit mono PCM from the microphone, in chunks of any size."""
        if not self._capturing:
            return
        for block in self._batcher.push(pcm):
            samples = self._decimator.process_samples(block)
            frame = to_pcm(samples)
            self.user_amplitude = sample_level(samples)
            self._emit(AmplitudeChanged("user", self.user_amplitude))
            if self._speech_open or not self._gated:
                await self._send_audio(frame)
            else:
                self._preroll.append(frame)

    async def end_user_speech(self) -> None:
        """The user stopped: send what is left at once, then close the turn."""
        if not self._speech_open:
            return
        self._speech_open = False
        rest = self._decimator.process(self._batcher.flush())
        if rest and self._capturing:
            await self._send_audio(rest)
        self._decimator.reset()
        if self.config.trigger is TurnTrigger.PUSH_TO_TALK:
            await self._send(turn_trigger(start=False))
        elif self._capturing and not self._server_detects_speech:
            await self._send(vad_event("vad_end"))
            self._preroll.clear()
        else:
            self._set_user_speaking(False)
            return
        self._set_user_speaking(False)

    async def _flush_preroll(self) -> None:
        while self._preroll:
            await self._send_audio(self._preroll.popleft())

    # -- text and data -----------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Typed user input: interrupts a speaking agent, then ends the user turn."""
        self.interrupt_agent()
        await self._send(response_text(text))

    async def send_data(self, data: dict[str, Any]) -> None:
        """A JSON object for the agent's backend; does not touch the turn."""
        await self._send(response_data(data))
