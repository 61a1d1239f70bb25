"""What every client WebSocket connection does, whoever answers it.

A connection records and parses the client's frames, sends JSON frames back, and streams
agent turns with `AgentTurn`: each ends with `turn.end` once its audio has played (or the
next turn needs it over), and is recorded in the conversation and logged. `Session` answers
through a webhook backend, `RelaySession` through a LiveLayer agent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
import base64
import binascii
from collections.abc import Coroutine
from dataclasses import dataclass
import json
import logging
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .agent_turn import AgentTurn
from .detection import EnergySettings
from .ids import new_id
from .layercode_client import TurnTrigger
from .records import ClientFrame, ConnectionRecording, Conversation, TranscriptEntry, TurnRecord

_LOGGER = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0
"""How long a clean WebSocket close may take before the connection is cut."""
_MAX_CLOSE_REASON = 123
"""Bytes a WebSocket close frame has room for after its code."""


def decode_audio(content: object) -> bytes | None:
    """The PCM of a `client.audio` frame's `content`; None (logged) when it is not base64."""
    if not isinstance(content, str):
        _LOGGER.warning("Ignoring client.audio without text content")
        return None
    try:
        return base64.b64decode(content, validate=True)
    except binascii.Error:
        _LOGGER.warning("Ignoring client.audio whose content is not base64")
        return None


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """How every session of a server behaves."""

    agent_id: str
    trigger: TurnTrigger
    can_interrupt: bool
    replay_timeout: float
    pace_audio: bool
    interim_interval: float
    energy: EnergySettings


def _ms_between(start: float | None, end: float | None) -> str:
    return "-" if start is None or end is None else f"{(end - start) * 1000:.0f} ms"


class ClientConnection(ABC):
    """One client WebSocket from upgrade to close; what its messages mean is the subclass's."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        conversation: Conversation,
        settings: SessionSettings,
    ) -> None:
        self._request = request
        self._ws = ws
        self._conversation = conversation
        self._settings = settings
        self.recording = ConnectionRecording(
            new_id("sess"), conversation.conversation_id, time.monotonic()
        )
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._agent: AgentTurn | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self._turns: list[TurnRecord] = []
        self._transcript: list[TranscriptEntry] = []

    @property
    def session_id(self) -> str:
        """New for every connection; `conversation_id` stays across reconnects."""
        return self.recording.session_id

    async def accept(self) -> None:
        """Upgrade the request to the WebSocket."""
        await self._ws.prepare(self._request)

    @abstractmethod
    async def run(self) -> None:
        """Serve the accepted connection until it closes."""

    async def close(
        self,
        timeout: float,
        code: int = WSCloseCode.GOING_AWAY,
        reason: str = "server shutting down",
    ) -> None:
        """Close the socket cleanly, or cut it after `timeout` seconds."""
        message = reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore").encode()
        try:
            async with asyncio.timeout(timeout):
                await self._ws.close(code=code, message=message)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection without a close handshake, like a network failure."""
        if self._request.transport is not None:
            self._request.transport.abort()

    async def send_text(self, text: str) -> None:
        """Send a raw text frame; a socket that is already gone is ignored."""
        if self._ws.closed:
            return
        async with self._send_lock:
            try:
                await self._ws.send_str(text)
            except ConnectionError as err:
                _LOGGER.debug("Session %s: send failed: %s", self.session_id, err)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message, ensure_ascii=False))

    # Client frames.

    async def _receive(self) -> None:
        """Hand every client message to `_on_message` until the socket closes."""
        async for message in self._ws:
            if message.type is WSMsgType.TEXT:
                await self._on_frame(message.data)
            elif message.type is WSMsgType.BINARY:
                self.recording.frames.append(ClientFrame(time.monotonic(), message.data, None))
                _LOGGER.warning("Ignoring a binary frame of %d bytes", len(message.data))
            else:
                _LOGGER.warning("Session %s socket error: %s", self.session_id, message.data)
                break

    async def _on_frame(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.recording.frames.append(ClientFrame(time.monotonic(), raw, None))
            _LOGGER.warning("Ignoring a frame that is not a protocol message: %.200r", raw)
            return
        self.recording.frames.append(ClientFrame(time.monotonic(), raw, message))
        await self._on_message(message)

    @abstractmethod
    async def _on_message(self, message: dict[str, Any]) -> None:
        """One well-formed client message (a JSON object with a string `type`)."""

    # Agent turns.

    async def _end_reply(self, turn: AgentTurn) -> None:
        """Send `response.end`; once the client has played the turn's audio, `turn.end`."""
        await turn.end_reply()
        if turn.record.audio_bytes and not await turn.wait_played(self._settings.replay_timeout):
            _LOGGER.warning(
                "Session %s: no replay_finished for turn %s within %.1f s",
                self.session_id,
                turn.turn_id,
                self._settings.replay_timeout,
            )
        await self._end_turn(turn)

    async def _on_replay_finished(self) -> None:
        agent = self._agent
        if agent is None:
            return
        agent.note_replay_finished()
        if agent.heard_all:
            await self._end_turn(agent)  # at once, so that the next frame finds the turn over

    async def _end_turn(self, turn: AgentTurn) -> None:
        """Send the agent turn's `turn.end`, once, whoever gets there first."""
        if turn.record.ended_at is None:
            self._finish(turn)
            await self._send({"type": "turn.end", "role": "assistant", "turn_id": turn.turn_id})

    def _finish(self, turn: AgentTurn) -> None:
        """Record a finished agent turn and log it, once."""
        record = turn.record
        if record.ended_at is not None or not turn.announced:
            return
        record.ended_at = time.monotonic()
        self._turns.append(record)
        self._conversation.turns.append(record)
        if record.agent_text:
            self._add_transcript("assistant", record.agent_text)
        _LOGGER.info(
            "Turn %s: user %r -> agent %r; transcribed in %s, first text after %s, "
            "first audio after %s, %d audio bytes, %s, %s in all",
            record.agent_turn_id,
            record.user_text,
            record.agent_text,
            _ms_between(record.user_ended_at, record.started_at),
            _ms_between(record.started_at, record.first_text_at),
            _ms_between(record.started_at, record.first_audio_at),
            record.audio_bytes,
            "interrupted"
            if record.interrupted
            else ("played" if record.replay_finished else "no replay_finished"),
            _ms_between(record.user_ended_at or record.started_at, record.ended_at),
        )

    def _add_transcript(self, role: str, text: str) -> None:
        entry = TranscriptEntry(role, text, round(time.time() * 1000))
        self._transcript.append(entry)
        self._conversation.transcript.append(entry)

    # Tasks.

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            _LOGGER.error("Session %s: task failed", self.session_id, exc_info=err)

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.wait({task})

    async def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            await self._cancel(task)
