"""One client WebSocket connection: the Layercode conversation loop, server side.

What the client sees (every frame is a JSON text frame; ids are `turn_…` strings):

- On connect, the `session.start` webhook runs with a fresh assistant `turn_id`. Only if its
  reply has content does the agent speak first, as an agent turn (below) with that id.
- User speech starts (push-to-talk press, `vad_start`, a lone `vad_end`, or energy onset):
  `turn.start {role: "user", turn_id}`. While it lasts, every `interim_interval` seconds of
  audio: `user.transcript.interim_delta {content, turn_id, delta_counter: 0}`.
- User speech ends: `user.transcript.delta {content, turn_id, delta_counter: 0}`,
  `user.transcript {content, turn_id}`, `turn.end {role: "user", turn_id}`.
- Typed text (`client.response.text`): `turn.start {role: "user"}` unless a user turn is open
  (its audio is then dropped), `user.transcript {content, turn_id}`, `turn.end {role: "user"}`.
- Agent turn, new `turn_id`: `turn.start {role: "assistant", turn_id}`; the `message` webhook
  {session_id, conversation_id, turn_id, text, interruption_context?}; per `response.tts`
  `response.text {content, turn_id}` then `response.audio {content, delta_id, turn_id}`
  frames; per `response.data` `response.data {content, turn_id}`; then `response.end
  {turn_id}`, also after `response.error`, an HTTP error or an unreachable backend. If audio
  went out, the turn waits (up to `replay_timeout`) for `trigger.response.audio.replay_finished`
  (the first one after the turn's first audio counts), then `turn.end {role: "assistant",
  turn_id}`. User input after the reply has played out is no barge-in: that `turn.end` just
  goes out first.
- Barge-in (can_interrupt): user speech or typed text during an agent turn aborts its
  webhook, stops its audio and sends `turn.start {role: "user"}`; the interrupted turn gets
  no `response.end` or `turn.end`, and the next `message` webhook carries
  `interruption_context` {previous_turn_interrupted, words_heard, text_heard,
  assistant_turn_id}. Without can_interrupt, user input during an agent turn (speech, triggers,
  typed text) is ignored.
- `client.response.data {data}`: the `data` webhook {session_id, conversation_id, turn_id,
  data} (turn_id of the latest turn); its JSON reply comes back as `response.data {content,
  turn_id}`.
- On close, the `session.end` webhook {session_id, conversation_id, transcript, duration, …}.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime
import logging
import time
from typing import Any

from aiohttp import web

from .agent_turn import AgentTurn
from .connection import ClientConnection, SessionSettings, decode_audio
from .detection import SpeechStarted, TurnEvent, UserTurnDetector, as_vad_event
from .engines import SpeechToText, TextToSpeech
from .ids import new_id
from .layercode_client import (
    AGENT_RATE,
    SAMPLE_WIDTH,
    WIRE_INPUT_RATE,
    TurnTrigger,
    duration_seconds,
)
from .records import Conversation, TurnRecord
from .webhook import WEBHOOK_ERRORS, WebhookClient

_LOGGER = logging.getLogger(__name__)

_DELTA_COUNTER = 0
"""One transcript segment per user turn, so every interim and delta shares one counter."""


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


class Session(ClientConnection):
    """Runs one connection from open to close; see the module docstring for the flow."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        settings: SessionSettings,
        webhook: WebhookClient,
        stt: SpeechToText,
        tts: TextToSpeech,
        conversation: Conversation,
    ) -> None:
        super().__init__(request, ws, conversation, settings)
        self._webhook = webhook
        self._stt = stt
        self._tts = tts
        self._started_wall = time.time()
        self._detector = UserTurnDetector(settings.trigger, settings.energy)
        self._user_turn_id: str | None = None
        self._next_interim = settings.interim_interval
        self._interruption: dict[str, Any] | None = None
        self._last_turn_id: str | None = None
        self._user_audio_seconds = 0.0

    async def run(self) -> None:
        """Serve the connection until it closes, then report `session.end`."""
        self._conversation.session_ids.append(self.session_id)
        _LOGGER.info(
            "Session %s opened (conversation %s)",
            self.session_id,
            self._conversation.conversation_id,
        )
        welcome = self._new_agent_turn(None, None, None, announced=False)
        self._start_agent(
            self._converse(welcome, self._event("session.start", turn_id=welcome.turn_id))
        )
        try:
            await self._receive()
        finally:
            await self._teardown()

    # Client frames.

    async def _on_message(self, message: dict[str, Any]) -> None:
        match message["type"]:
            case "client.ready":
                _LOGGER.debug("Session %s: client ready", self.session_id)
            case "client.audio":
                await self._on_audio(message.get("content"))
            case "vad_events":
                await self._on_vad(message.get("event"))
            case "trigger.turn.start" | "trigger.turn.end" as kind:
                await self._on_push_to_talk(kind == "trigger.turn.start")
            case "trigger.response.audio.replay_finished":
                await self._on_replay_finished()
            case "client.response.text":
                await self._on_typed_text(message.get("content"))
            case "client.response.data":
                self._on_data(message.get("data"))
            case other:
                _LOGGER.warning("Ignoring a message of unknown type %r", other)

    async def _on_audio(self, content: object) -> None:
        pcm = decode_audio(content)
        if pcm is None or self._input_blocked():
            return
        await self._apply(self._detector.audio(pcm))
        await self._send_interim()

    async def _on_vad(self, event: object) -> None:
        if self._settings.trigger is TurnTrigger.PUSH_TO_TALK:
            _LOGGER.debug("Ignoring vad_events %r in push-to-talk", event)
            return
        vad = as_vad_event(event)
        if vad is None:
            return
        if vad == "vad_model_failed":
            _LOGGER.info(
                "Session %s: client VAD failed, detecting speech by energy", self.session_id
            )
        if self._input_blocked():
            return
        await self._apply(self._detector.vad(vad))

    async def _on_push_to_talk(self, start: bool) -> None:
        if self._settings.trigger is not TurnTrigger.PUSH_TO_TALK:
            _LOGGER.debug("Ignoring a push-to-talk trigger in automatic mode")
            return
        if self._input_blocked():
            return
        await self._apply(self._detector.push_to_talk(start))

    async def _on_typed_text(self, content: object) -> None:
        if not isinstance(content, str):
            _LOGGER.warning("Ignoring client.response.text without text content")
            return
        ended_at = time.monotonic()
        if self._input_blocked():
            _LOGGER.warning("Ignoring typed text while the agent may not be interrupted")
            return
        if self._user_turn_id is None:
            await self._user_started()
        self._detector.reset()
        user_turn_id = await self._user_finished(content, spoken=False)
        await self._answer(user_turn_id, content, ended_at)

    def _on_data(self, data: object) -> None:
        turn_id = self._last_turn_id or new_id("turn")
        self._spawn(self._relay_data(turn_id, data))

    # User turns.

    def _input_blocked(self) -> bool:
        """The agent speaks and may not be interrupted: user input is dropped."""
        if self._settings.can_interrupt or not self._agent_audible():
            return False
        self._detector.reset()
        return True

    async def _apply(self, events: list[TurnEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                await self._user_started()
                continue
            ended_at = time.monotonic()
            self._user_audio_seconds += duration_seconds(event.pcm, WIRE_INPUT_RATE)
            text = await self._stt.transcribe(event.pcm)
            user_turn_id = await self._user_finished(text, spoken=True)
            await self._answer(user_turn_id, text, ended_at)

    async def _user_started(self) -> None:
        agent, task = self._agent, self._agent_task
        if agent is not None and task is not None and not task.done():
            if self._agent_audible():
                await self._interrupt()
            elif not agent.announced:
                await self._cancel(task)  # a welcome with nothing said yet
            else:
                await self._end_turn(agent)  # played out: only its turn.end was left
        self._user_turn_id = self._last_turn_id = new_id("turn")
        self._next_interim = self._settings.interim_interval
        await self._send({"type": "turn.start", "role": "user", "turn_id": self._user_turn_id})

    async def _send_interim(self) -> None:
        if self._user_turn_id is None or not self._detector.in_turn:
            return
        audio = self._detector.turn_audio
        seconds = duration_seconds(audio, WIRE_INPUT_RATE)
        if seconds < self._next_interim:
            return
        self._next_interim = seconds + self._settings.interim_interval
        text = await self._stt.interim(audio)
        if text:
            await self._send(
                {
                    "type": "user.transcript.interim_delta",
                    "content": text,
                    "turn_id": self._user_turn_id,
                    "delta_counter": _DELTA_COUNTER,
                }
            )

    async def _user_finished(self, text: str, *, spoken: bool) -> str:
        """Close the open user turn with its final text; returns its id."""
        turn_id = self._user_turn_id or new_id("turn")
        self._user_turn_id = None
        if spoken:
            await self._send(
                {
                    "type": "user.transcript.delta",
                    "content": text,
                    "turn_id": turn_id,
                    "delta_counter": _DELTA_COUNTER,
                }
            )
        await self._send({"type": "user.transcript", "content": text, "turn_id": turn_id})
        await self._send({"type": "turn.end", "role": "user", "turn_id": turn_id})
        self._add_transcript("user", text)
        return turn_id

    # Agent turns.

    def _agent_audible(self) -> bool:
        """An agent turn has started and the user has not heard all of it yet."""
        task, agent = self._agent_task, self._agent
        if task is None or task.done() or agent is None:
            return False
        return agent.announced and agent.record.ended_at is None and not agent.heard_all

    async def _answer(self, user_turn_id: str, text: str, ended_at: float) -> None:
        """Start the agent turn that answers a user turn."""
        if not text.strip():
            _LOGGER.info("Session %s: user turn %s had no words", self.session_id, user_turn_id)
            return
        turn, event = await self._open_answer(user_turn_id, text, ended_at)
        self._start_agent(self._converse(turn, event))

    async def _open_answer(
        self, user_turn_id: str, text: str, ended_at: float
    ) -> tuple[AgentTurn, dict[str, Any]]:
        turn = self._new_agent_turn(user_turn_id, text, ended_at, announced=False)
        fields: dict[str, Any] = {"turn_id": turn.turn_id, "text": text}
        if self._interruption is not None:
            fields["interruption_context"] = self._interruption
            self._interruption = None
        await turn.announce()
        return turn, self._event("message", **fields)

    def _new_agent_turn(
        self,
        user_turn_id: str | None,
        user_text: str | None,
        user_ended_at: float | None,
        *,
        announced: bool,
    ) -> AgentTurn:
        record = TurnRecord(
            new_id("turn"),
            time.monotonic(),
            user_turn_id=user_turn_id,
            user_text=user_text,
            user_ended_at=user_ended_at,
        )
        self._agent = AgentTurn(
            record,
            send=self._send,
            pace_audio=self._settings.pace_audio,
            announced=announced,
        )
        self._last_turn_id = record.agent_turn_id
        return self._agent

    async def _converse(self, turn: AgentTurn, event: dict[str, Any]) -> None:
        """Run one agent turn: webhook, reply, `response.end`, playback, `turn.end`."""
        try:
            try:
                async with self._webhook.stream(
                    event, self._conversation.custom_headers
                ) as replies:
                    await turn.play(replies, self._tts)
            except WEBHOOK_ERRORS as err:
                _LOGGER.warning(
                    "Session %s: %s webhook of turn %s failed: %r",
                    self.session_id,
                    event["type"],
                    turn.turn_id,
                    err,
                )
            if turn.announced:  # else a welcome with nothing to say
                await self._end_reply(turn)
        finally:
            self._finish(turn)

    async def _interrupt(self) -> None:
        """Barge-in: abort the agent turn and remember what the user heard of it."""
        turn, task = self._agent, self._agent_task
        assert turn is not None and task is not None
        heard = turn.heard(time.monotonic())
        turn.record.interrupted = True
        await self._cancel(task)
        self._interruption = {
            "previous_turn_interrupted": True,
            "words_heard": len(heard.split()),
            "text_heard": heard,
            "assistant_turn_id": turn.turn_id,
        }

    async def _relay_data(self, turn_id: str, data: object) -> None:
        event = self._event("data", turn_id=turn_id, data=data)
        try:
            reply = await self._webhook.call(event, self._conversation.custom_headers)
        except WEBHOOK_ERRORS as err:
            _LOGGER.warning("Session %s: data webhook failed: %r", self.session_id, err)
            return
        await self._send({"type": "response.data", "content": reply, "turn_id": turn_id})

    # Tasks and teardown.

    def _start_agent(self, coro: Coroutine[Any, Any, None]) -> None:
        self._agent_task = self._spawn(coro)

    async def _teardown(self) -> None:
        await self._cancel_tasks()
        if not self._ws.closed:
            await self._ws.close()
        self.recording.closed_at = time.monotonic()
        try:
            await self._webhook.call(self._session_end_event(), self._conversation.custom_headers)
        except WEBHOOK_ERRORS as err:
            _LOGGER.warning("Session %s: session.end webhook failed: %r", self.session_id, err)
        _LOGGER.info("Session %s closed", self.session_id)

    # Webhook payloads.

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": kind,
            "session_id": self.session_id,
            "conversation_id": self._conversation.conversation_id,
            **fields,
        }
        if self._conversation.custom_metadata is not None:
            event["custom_metadata"] = self._conversation.custom_metadata
        return event

    def _session_end_event(self) -> dict[str, Any]:
        latencies = [
            record.first_audio_at - record.started_at
            for record in self._turns
            if record.first_audio_at is not None
        ]
        audio_bytes = sum(record.audio_bytes for record in self._turns)
        return self._event(
            "session.end",
            agent_id=self._settings.agent_id,
            started_at=_iso(self._started_wall),
            ended_at=_iso(time.time()),
            duration=round((time.monotonic() - self.recording.opened_at) * 1000),
            transcription_duration_seconds=round(self._user_audio_seconds, 3),
            tts_duration_seconds=round(audio_bytes / (AGENT_RATE * SAMPLE_WIDTH), 3),
            latency=round(1000 * sum(latencies) / len(latencies)) if latencies else None,
            ip_address=self._request.remote,
            country_code=None,
            recording_status="disabled",
            transcript=[entry.to_json() for entry in self._transcript],
        )
