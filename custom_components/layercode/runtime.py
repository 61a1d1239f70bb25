"""What one config entry runs: agent sessions keyed by Home Assistant conversation id.

The runtime opens a Layercode session on first use for each conversation, closes it when
idle, and folds the sessions' states into the one state the entities show (speaking = any
of them). Entities and actions talk to the runtime, never to a WebSocket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
import logging
from typing import Any, Protocol

import aiohttp
from homeassistant.components import tts
from homeassistant.components.conversation import async_converse
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import CALLBACK_TYPE, Context, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import intent
from homeassistant.helpers.event import async_call_later
from homeassistant.util import dt as dt_util, ulid as ulid_util

from .client import (
    AgentSession,
    AgentSpeakingChanged,
    AgentState,
    AgentStateChanged,
    AgentTurn,
    AgentTurnStarted,
    AmplitudeChanged,
    LayercodeError,
    SessionEvent,
    SessionFailed,
    SessionStatus,
    StatusChanged,
    UserSpeakingChanged,
)
from .client.audio import AGENT_RATE, SAMPLE_WIDTH
from .client.messages import ResponseData, ResponseEnd, UserTranscript
from .client.playout import Playout
from .compat import HA_2026_11
from .const import DOMAIN
from .tools import HomeControl, ToolScope, is_tool_call

_LOGGER = logging.getLogger(__name__)

ASSIST_SATELLITE_DOMAIN = "assist_satellite"
SERVICE_ANNOUNCE = "announce"
ATTR_MEDIA_ID = "media_id"
ATTR_PREANNOUNCE = "preannounce"

REPLY_TIMEOUT = 20.0
"""Bound on waiting for the agent to start answering typed or spoken input; the user then
hears a failure message instead of silence."""
UNCLAIMED_AUDIO_TIMEOUT = 5.0
"""How long an agent turn's audio waits for a TTS stream to claim it. The TTS stage starts
right after the conversation stage, so anything longer means no TTS stage follows."""
INPUT_HISTORY = 4
WELCOME_TIMEOUT = 4.0
"""Bound on waiting for the agent's welcome on a new session."""
SPARE_LIFETIME = timedelta(seconds=60)
"""How long a session opened ahead (a welcome, a prepare) waits for its conversation."""
RECENT_TURNS = 10
"""How many turns' timings diagnostics keep."""
TOOL_RECORDS = 20
"""Tool calls kept per conversation until the conversation entity writes them to the chat log."""


_BUSIEST_FIRST = (AgentState.SPEAKING, AgentState.THINKING, AgentState.LISTENING)


class InputSource(StrEnum):
    """Where a user turn came from; decides who may play the agent's answer."""

    VOICE = "voice"
    """Spoken through the STT entity: a TTS stage will play the answer."""
    ASSIST = "assist"
    """Typed into the conversation entity: a TTS stage may follow."""
    ACTION = "action"
    """layercode.send_text: nobody plays the answer."""
    ANNOUNCE = "announce"
    """layercode.send_text with a satellite: the answer is announced there."""


ACTION_INPUT: ContextVar[InputSource | None] = ContextVar("layercode_action_input", default=None)
"""Set while layercode.send_text runs the conversation agent: who plays the answer, if anyone."""


@dataclass(slots=True)
class UserInput:
    """One user turn from Home Assistant and the agent turn that answers it.

    The agent starts answering before the pipeline reaches its next stage, so the answer is
    collected here as soon as it starts, for the conversation and TTS entities to pick up.
    """

    source: InputSource
    text: str | None = None
    closed: bool = False
    """Set just before the turn's end goes on the wire; only then can an answer start."""
    agent_turn: AgentTurn | None = None
    answered: bool = False
    abandoned: bool = False
    """The run that sent it was aborted: its answer is played by nobody."""
    audio_claimed: bool = False
    earlier_user_turn: str | None = None
    """The agent's id of the user turn before this one. An aborted run closes its turn without
    waiting for the transcript, which may then arrive during the next run: it is not this one's."""
    failed: bool = False
    """The connection was lost before an answer started: none will come."""
    ended_at: float | None = None
    """Loop time of the end of the user's speech (or of sending typed text)."""
    transcript_at: float | None = None
    attached: asyncio.Event = field(default_factory=asyncio.Event)

    def close(self, ended_at: float | None = None) -> None:
        """The user's turn is over (its end goes on the wire next): an answer may start.

        `ended_at` is when the user stopped speaking, if known; else now.
        """
        if not self.closed:
            self.closed = True
            self.ended_at = ended_at or asyncio.get_running_loop().time()

    def fail(self) -> None:
        """No answer will come (the connection was lost): stop waiting for one."""
        if self.agent_turn is None:
            self.failed = True
            self.attached.set()

    def owns_transcript(self, turn_id: str | None) -> bool:
        """Whether a user transcript of the agent's user turn `turn_id` may be this input's."""
        return turn_id is None or turn_id != self.earlier_user_turn

    async def wait_agent_turn(self, timeout: float) -> AgentTurn | None:
        """The agent turn answering this input; None if none started within the bound or
        the connection was lost."""
        try:
            async with asyncio.timeout(timeout):
                await self.attached.wait()
        except TimeoutError:
            return None
        return self.agent_turn


class RuntimeEventType(StrEnum):
    """Event types of the event entity, also its translation keys."""

    USER_TRANSCRIPT = "user_transcript"
    AGENT_RESPONSE = "agent_response"
    AGENT_DATA = "agent_data"
    AGENT_SPEAKING_STARTED = "agent_speaking_started"
    AGENT_SPEAKING_STOPPED = "agent_speaking_stopped"
    TURN_FINISHED = "turn_finished"
    """A played turn's timings, in ms from the end of the user's speech."""
    AGENT_TOOL_CALL = "agent_tool_call"
    """A Home Assistant tool the agent called: name, arguments, result or error."""
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RuntimeEvent:
    """Something the agent or user did, for the event entity and automations."""

    event_type: RuntimeEventType
    conversation_id: str
    device_id: str | None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentReply:
    """The agent's answer to typed text."""

    text: str
    conversation_id: str
    data: list[Any]


@dataclass(slots=True)
class Conversation:
    """One Home Assistant conversation and its agent session."""

    conversation_id: str
    session: AgentSession
    device_id: str | None = None
    last_activity: datetime = field(default_factory=dt_util.utcnow)
    remove_listener: Callable[[], None] = lambda: None
    idle_timer: CALLBACK_TYPE | None = None
    inputs: deque[UserInput] = field(default_factory=lambda: deque(maxlen=INPUT_HISTORY))
    unprompted: AgentTurn | None = None
    """The latest agent turn no input asked for (a welcome, agent-initiated speech)."""
    heard: UserInput | None = None
    """The input whose transcript came last: the next agent turn answers it."""
    chat_session_bound: bool = False
    welcomed: bool = False
    """Its welcome was played (a spare with it is used up)."""
    speaking: bool = False
    """The agent's audio is playing at a listener (a TTS stream), by the audio's own length."""
    speaking_ends: asyncio.TimerHandle | None = None
    tools: ToolScope = field(default_factory=ToolScope)
    """Home control: who its tool calls act for, and calls not yet in the chat log."""

    def input_for(self, turn: AgentTurn) -> UserInput | None:
        """The user input that `turn` answers, if it is still remembered."""
        return next((i for i in self.inputs if i.agent_turn is turn), None)


class SessionFactory(Protocol):
    """Opens a session with the entry's agent (a Layercode or a LiveLayer one)."""

    def __call__(
        self,
        http: aiohttp.ClientSession,
        *,
        conversation_id: str | None,
        audio_output: bool,
        muted: bool,
        unconsumed_audio_timeout: float,
    ) -> AgentSession:
        """A new, not yet connected session."""
        ...


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """The entry's settings a runtime needs, read from data and options."""

    new_session: SessionFactory
    idle_timeout: float
    audio_output: bool
    fallback_tts: str | None = None
    agent_turn_detection: bool = False
    llm_apis: tuple[str, ...] = ()
    """The LLM APIs whose tools the agent's backend is offered ("Control Home Assistant")."""
    llm_prompt: str = ""


class LayercodeRuntime:
    """Sessions per conversation, aggregate state, and the events automations see."""

    def __init__(
        self,
        hass: HomeAssistant,
        http: aiohttp.ClientSession,
        settings: RuntimeSettings,
        reauth: Callable[[], None],
    ) -> None:
        self.hass = hass
        self._http = http
        self.settings = settings
        self._reauth = reauth
        """Asks the user for new credentials (the entry's reauth flow)."""
        self.conversations: dict[str, Conversation] = {}
        self.muted = False
        self.audio_output = settings.audio_output
        self.available = True
        self.last_error: str | None = None
        self.agent_entity_id: str | None = None
        """The conversation entity, once added (pipelines refer to it)."""
        self.tts_entity_id: str | None = None
        """The TTS entity, once added (announcements play through it)."""
        self._layercode_ids: dict[str, str] = {}
        self._spare_id: str | None = None
        self._opening: dict[str, asyncio.Future[Conversation]] = {}
        self._state_listeners: list[CALLBACK_TYPE] = []
        self._event_listeners: list[Callable[[RuntimeEvent], None]] = []
        self._amplitude_listeners: list[CALLBACK_TYPE] = []
        self._closed = False
        self._playing: dict[Playout, Callable[[], Conversation | None]] = {}
        """Playouts streaming now, with the conversation each belongs to."""
        self.recent_turns: deque[dict[str, Any]] = deque(maxlen=RECENT_TURNS)
        """Timings of the last turns played, for diagnostics."""
        self.home_control = HomeControl(hass, settings.llm_apis, settings.llm_prompt)
        self._tool_tasks: set[asyncio.Task[None]] = set()

    # -- aggregate state -------------------------------------------------------------

    @property
    def status(self) -> SessionStatus:
        """Connected if any session is; else connecting, error, disconnected in that order."""
        statuses = {c.session.status for c in self.conversations.values()}
        for status in (
            SessionStatus.CONNECTED,
            SessionStatus.CONNECTING,
            SessionStatus.ERROR,
        ):
            if status in statuses:
                return status
        return SessionStatus.ERROR if not self.available else SessionStatus.DISCONNECTED

    @property
    def agent_state(self) -> AgentState:
        """Speaking while the agent's voice waits to play or plays; else the busiest session's.

        A LiveLayer agent says it listens once it has sent its voice, which may not have
        played yet: until it has, the agent still speaks here.
        """
        if self.agent_speaking or any(
            c.session.agent_speaking for c in self.conversations.values()
        ):
            return AgentState.SPEAKING
        states = {c.session.agent_state for c in self.conversations.values()}
        return next((s for s in _BUSIEST_FIRST if s in states), AgentState.IDLE)

    @property
    def agent_speaking(self) -> bool:
        """Whether the agent's voice is playing on a listener, in any conversation."""
        return any(c.speaking for c in self.conversations.values())

    @property
    def user_speaking(self) -> bool:
        """Whether the user speaks in any conversation."""
        return any(c.session.user_speaking for c in self.conversations.values())

    @property
    def user_amplitude(self) -> float:
        """The loudest user audio going out, 0 to 1."""
        return max((c.session.user_amplitude for c in self.conversations.values()), default=0.0)

    @property
    def agent_amplitude(self) -> float:
        """The loudest agent audio being played, 0 to 1."""
        return max((c.session.agent_amplitude for c in self.conversations.values()), default=0.0)

    @callback
    def async_add_state_listener(self, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call `listener` whenever the aggregate state may have changed."""
        return _add(self._state_listeners, listener)

    @callback
    def async_add_amplitude_listener(self, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call `listener` on every amplitude change (throttling is the listener's job)."""
        return _add(self._amplitude_listeners, listener)

    @callback
    def async_add_event_listener(self, listener: Callable[[RuntimeEvent], None]) -> CALLBACK_TYPE:
        """Call `listener` with every runtime event."""
        return _add(self._event_listeners, listener)

    @callback
    def _notify_state(self) -> None:
        for listener in list(self._state_listeners):
            listener()

    @callback
    def _fire(self, event: RuntimeEvent) -> None:
        for listener in list(self._event_listeners):
            listener(event)

    # -- conversations ---------------------------------------------------------------

    async def async_get_conversation(
        self,
        conversation_id: str | None = None,
        *,
        device_id: str | None = None,
        user_id: str | None = None,
        language: str | None = None,
    ) -> Conversation:
        """The conversation's session, opened (or resumed) on first use.

        With home control on, its backend is offered the tools for the conversation's device,
        user and language (again whenever one of them becomes known or changes).
        """
        conversation = await self._async_get_conversation(conversation_id, device_id)
        scope = conversation.tools
        scope.device_id = conversation.device_id
        if user_id:
            scope.user_id = user_id
        if language:
            scope.language = language
        if self.home_control.enabled and scope.offered != scope.key:
            await self._async_offer_tools(conversation)
        return conversation

    async def _async_offer_tools(self, conversation: Conversation) -> None:
        scope = conversation.tools
        scope.offered = scope.key
        try:
            message = await self.home_control.async_tools_message(scope)
            await conversation.session.send_data(message)
        except (HomeAssistantError, LayercodeError, TimeoutError) as err:
            scope.offered = None
            _LOGGER.warning("Could not offer Home Assistant's tools to the agent: %s", err)

    async def _async_get_conversation(
        self, conversation_id: str | None, device_id: str | None
    ) -> Conversation:
        if self._closed:
            raise HomeAssistantError(translation_domain=DOMAIN, translation_key="not_loaded")
        conversation_id = conversation_id or ulid_util.ulid_now()
        if (pending := self._opening.get(conversation_id)) is not None:
            return await asyncio.shield(pending)
        if (conversation := self.conversations.get(conversation_id)) is not None:
            if device_id:
                conversation.device_id = device_id
            self._touch(conversation)
            return conversation
        if (spare := self._adopt_spare(conversation_id)) is not None:
            if device_id:
                spare.device_id = device_id
            return spare
        future: asyncio.Future[Conversation] = self.hass.loop.create_future()
        self._opening[conversation_id] = future
        try:
            conversation = await self._open(conversation_id, device_id)
        except BaseException as err:
            if not future.done():
                future.set_exception(err)
                future.exception()  # retrieved here; waiters get it too
            raise
        finally:
            self._opening.pop(conversation_id, None)
        future.set_result(conversation)
        return conversation

    def _adopt_spare(self, conversation_id: str) -> Conversation | None:
        """Give a fresh spare session (opened for a welcome) to a new conversation."""
        spare_id, self._spare_id = self._spare_id, None
        spare = self.conversations.get(spare_id or "")
        if spare is None or dt_util.utcnow() - spare.last_activity > SPARE_LIFETIME:
            return None
        del self.conversations[spare.conversation_id]
        spare.conversation_id = conversation_id
        self.conversations[conversation_id] = spare
        if spare.session.conversation_id:
            self._layercode_ids[conversation_id] = spare.session.conversation_id
        self._touch(spare)
        return spare

    async def async_welcome(self) -> AgentTurn | None:
        """Open a session for the conversation about to start; its agent speaks first.

        For `assist_satellite.start_conversation` without a message: Home Assistant asks for
        the start audio before it creates the conversation, so the session waits as a spare
        that the conversation's first turn adopts.
        """
        conversation = await self._async_spare()
        if conversation.unprompted is None:
            waiter = conversation.session.expect(lambda e: isinstance(e, AgentTurnStarted))
            try:
                await waiter.wait(WELCOME_TIMEOUT)
            except LayercodeError:
                return None
        turn, conversation.unprompted = conversation.unprompted, None
        conversation.welcomed = True
        return turn

    async def _open(self, conversation_id: str, device_id: str | None) -> Conversation:
        session = self.settings.new_session(
            self._http,
            conversation_id=self._layercode_ids.get(conversation_id),
            audio_output=self.audio_output,
            muted=self.muted,
            unconsumed_audio_timeout=UNCLAIMED_AUDIO_TIMEOUT,
        )
        conversation = Conversation(conversation_id, session, device_id)
        conversation.remove_listener = session.add_listener(
            lambda event: self._on_session_event(conversation, event)
        )
        self.conversations[conversation_id] = conversation
        try:
            await session.connect()
        except LayercodeError as err:
            self.conversations.pop(conversation_id, None)
            conversation.remove_listener()
            self._set_unavailable(err)
            self._notify_state()
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err)},
            ) from err
        if session.conversation_id:
            self._layercode_ids[conversation_id] = session.conversation_id
        self._set_available()
        self._touch(conversation)
        return conversation

    async def async_end_conversation(self, conversation_id: str | None = None) -> None:
        """Close one conversation's session, or all of them."""
        ids = [conversation_id] if conversation_id else list(self.conversations)
        for cid in ids:
            self._layercode_ids.pop(cid, None)
            if (conversation := self.conversations.pop(cid, None)) is not None:
                await self._close(conversation)
        self._notify_state()

    async def _close(self, conversation: Conversation) -> None:
        if conversation.idle_timer:
            conversation.idle_timer()
            conversation.idle_timer = None
        if conversation.speaking_ends is not None:
            conversation.speaking_ends.cancel()
            conversation.speaking_ends = None
        conversation.speaking = False
        await conversation.session.disconnect()
        conversation.remove_listener()

    async def async_shutdown(self) -> None:
        """Close every session and forget every listener: nothing is left running."""
        self._closed = True
        for pending in list(self._opening.values()):
            pending.cancel()
        for task in list(self._tool_tasks):
            task.cancel()
        await self.async_end_conversation()
        self._state_listeners.clear()
        self._event_listeners.clear()
        self._amplitude_listeners.clear()

    def _touch(self, conversation: Conversation) -> None:
        """Activity: restart the idle timer."""
        conversation.last_activity = dt_util.utcnow()
        if conversation.idle_timer:
            conversation.idle_timer()

        @callback
        def _idle(_now: datetime) -> None:
            conversation.idle_timer = None
            if self.conversations.get(conversation.conversation_id) is conversation:
                _LOGGER.debug("Closing idle conversation %s", conversation.conversation_id)
                self.conversations.pop(conversation.conversation_id)
                self.hass.async_create_task(self._close_idle(conversation), eager_start=True)

        conversation.idle_timer = async_call_later(self.hass, self.settings.idle_timeout, _idle)

    async def _close_idle(self, conversation: Conversation) -> None:
        await self._close(conversation)
        self._notify_state()

    # -- availability, logged once each way --------------------------------------------

    def _set_unavailable(self, error: LayercodeError) -> None:
        self.last_error = str(error)
        if self.available:
            self.available = False
            _LOGGER.warning("The Layercode agent is unavailable: %s", error)
        if error.needs_new_credentials:
            self._reauth()  # a key revoked or expired while Home Assistant runs

    def _set_available(self) -> None:
        if not self.available:
            self.available = True
            _LOGGER.info("The Layercode agent is available again")

    # -- session events --------------------------------------------------------------

    @callback
    def _on_session_event(self, conversation: Conversation, event: SessionEvent) -> None:
        cid = conversation.conversation_id
        match event:
            case StatusChanged(status=status):
                if status is not SessionStatus.CONNECTED:
                    # Lost, closed or failed: no answer will come to what is waiting.
                    for user_input in conversation.inputs:
                        user_input.fail()
                self._notify_state()
            case UserSpeakingChanged() | AgentSpeakingChanged() | AgentStateChanged():
                self._notify_state()
            case AmplitudeChanged():
                for listener in list(self._amplitude_listeners):
                    listener()
            case UserTranscript(content=content, turn_id=turn_id):
                self._touch(conversation)
                conversation.heard = next(
                    (i for i in reversed(conversation.inputs) if i.owns_transcript(turn_id)),
                    None,
                )
                if conversation.heard is not None:
                    # The agent heard the turn end (its own turn detection may decide it).
                    conversation.heard.close()
                    conversation.heard.transcript_at = self.hass.loop.time()
                self._fire(
                    RuntimeEvent(
                        RuntimeEventType.USER_TRANSCRIPT,
                        cid,
                        conversation.device_id,
                        {"text": content, "turn_id": turn_id},
                    )
                )
            case ResponseData(content=content) if is_tool_call(content):
                self._touch(conversation)
                task = self.hass.async_create_task(
                    self._async_tool_call(conversation, content), eager_start=False
                )
                self._tool_tasks.add(task)
                task.add_done_callback(self._tool_tasks.discard)
            case ResponseData(content=content, turn_id=turn_id):
                self._touch(conversation)
                self._fire(
                    RuntimeEvent(
                        RuntimeEventType.AGENT_DATA,
                        cid,
                        conversation.device_id,
                        {"data": content, "turn_id": turn_id},
                    )
                )
            case ResponseEnd():
                turn = conversation.session.agent_turn
                if turn is not None and turn.ended:
                    self._agent_turn_ended(conversation, turn)
            case AgentTurnStarted(turn=turn):
                self._touch(conversation)
                self._attach_agent_turn(conversation, turn)
            case SessionFailed(error=error):
                self._set_unavailable(error)
                self._fire(
                    RuntimeEvent(
                        RuntimeEventType.ERROR,
                        cid,
                        conversation.device_id,
                        {"message": str(error)},
                    )
                )
                self._notify_state()

    async def _async_tool_call(self, conversation: Conversation, content: dict[str, Any]) -> None:
        """Run the agent's tool call, record it (chat log, event entity), and answer it: the
        event comes first, so that automations see the call before the agent goes on."""
        record = await self.home_control.async_call(conversation.tools, content)
        records = conversation.tools.records
        records.append(record)
        del records[:-TOOL_RECORDS]  # calls no chat log took (e.g. after the reply) are dropped
        self._fire_conversation(conversation, RuntimeEventType.AGENT_TOOL_CALL, record.attributes())
        try:
            await conversation.session.send_data(record.message())
        except LayercodeError as err:
            _LOGGER.warning("Could not send the result of tool %s: %s", record.name, err)

    @staticmethod
    def _attach_agent_turn(conversation: Conversation, turn: AgentTurn) -> None:
        """Join a new agent turn to the input it answers, or keep it as unprompted.

        That is the input whose transcript came last (the latest input if none came): an
        aborted run's late answer must not go to the input that followed it.
        """
        answered, conversation.heard = conversation.heard, None
        if answered is None and conversation.inputs:
            answered = conversation.inputs[-1]
        if answered is not None and answered.closed and answered.agent_turn is None:
            answered.agent_turn = turn
            answered.attached.set()
            return
        conversation.unprompted = turn

    def _agent_turn_ended(self, conversation: Conversation, turn: AgentTurn) -> None:
        """Answers to actions are never played: release their audio at once."""
        self._touch(conversation)
        source = next((i.source for i in conversation.inputs if i.agent_turn is turn), None)
        if source is InputSource.ACTION and not turn.consumed:
            turn.drop_unconsumed()
        if turn.text:
            self._fire(
                RuntimeEvent(
                    RuntimeEventType.AGENT_RESPONSE,
                    conversation.conversation_id,
                    conversation.device_id,
                    {"text": turn.text, "turn_id": turn.turn_id},
                )
            )

    # -- the turn store: STT -> conversation -> TTS of one turn -------------------------

    @callback
    def async_begin_input(self, conversation: Conversation, source: InputSource) -> UserInput:
        """Register a user turn before it is sent, so that its answer cannot be missed."""
        user_input = UserInput(source, earlier_user_turn=conversation.session.user_turn_id)
        conversation.inputs.append(user_input)
        self._touch(conversation)
        return user_input

    @callback
    def async_pending_voice_input(self, conversation: Conversation, text: str) -> UserInput | None:
        """The spoken input whose transcript is `text` and that is not answered yet."""
        for user_input in reversed(conversation.inputs):
            if (
                user_input.source is InputSource.VOICE
                and not user_input.answered
                and _same_text(user_input.text, text)
            ):
                return user_input
        return None

    @callback
    def async_claim_agent_audio(
        self, conversation_id: str | None, message: str
    ) -> AgentTurn | None:
        """The agent turn whose audio a TTS stream should play, claimed once.

        `message` is what the pipeline asks to speak: the whole reply, or (when Home
        Assistant streams the reply, 2025.8+) its first part, so a prefix of the agent's text
        matches. Anything else (an error reply, a local answer) is not the agent's audio.
        """
        if not message.strip():
            return None
        conversation = self.conversations.get(conversation_id or "")
        if conversation is None:
            # No conversation of its own (an announcement): a send_text answer to announce.
            candidates = [
                i
                for c in self.conversations.values()
                for i in c.inputs
                if i.source is InputSource.ANNOUNCE
            ]
        else:
            candidates = list(reversed(conversation.inputs))
        for user_input in candidates:
            if (turn := self._claim(user_input, message)) is not None:
                return turn
        if conversation is None:
            return None
        turn = conversation.unprompted
        if turn is not None and _playable(turn, message):
            conversation.unprompted = None
            return turn
        return None

    # -- playback: what a listener hears, and when --------------------------------------

    def async_play(
        self,
        conversation_id: str | None,
        turn: AgentTurn | Callable[[], Awaitable[AgentTurn | None]],
        *,
        paced: bool,
    ) -> AsyncGenerator[bytes]:
        """Play `turn` to a listener: its audio drives the speaking state and the turn's
        timings, and a new run on its conversation stops it (see async_interrupt).

        The conversation is the stream's own, else the one whose session the turn came from
        (a welcome is played before its conversation exists).
        """

        def owner() -> Conversation | None:
            return self.conversations.get(conversation_id or "") or next(
                (c for c in self.conversations.values() if c.session.agent_turn is playout.turn),
                None,
            )

        def started() -> None:
            if (conversation := owner()) is not None:
                self._speaking_started(conversation)

        def ends(at: float) -> None:
            if (conversation := owner()) is not None:
                self._speaking_ends(conversation, playout, at)

        playout = Playout(turn, paced=paced, on_audio_start=started, on_audio_end=ends)
        return self._tracked(playout, owner)

    async def _tracked(
        self, playout: Playout, owner: Callable[[], Conversation | None]
    ) -> AsyncGenerator[bytes]:
        self._playing[playout] = owner
        try:
            async with aclosing(playout.chunks()) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self._playing.pop(playout, None)

    @callback
    def _speaking_started(self, conversation: Conversation) -> None:
        if conversation.speaking_ends is not None:
            conversation.speaking_ends.cancel()
            conversation.speaking_ends = None
        if not conversation.speaking:
            conversation.speaking = True
            self._notify_state()
            self._fire_conversation(conversation, RuntimeEventType.AGENT_SPEAKING_STARTED)

    @callback
    def _speaking_ends(self, conversation: Conversation, playout: Playout, at: float) -> None:
        """The agent's audio plays out at loop time `at`: the speaking state ends then."""
        if conversation.speaking_ends is not None:
            conversation.speaking_ends.cancel()
        conversation.speaking_ends = self.hass.loop.call_at(
            at, self._speaking_stopped, conversation, playout
        )

    @callback
    def _speaking_stopped(self, conversation: Conversation, playout: Playout) -> None:
        conversation.speaking_ends = None
        if conversation.speaking:
            conversation.speaking = False
            self._notify_state()
            self._fire_conversation(conversation, RuntimeEventType.AGENT_SPEAKING_STOPPED)
        turn = playout.turn
        user_input = conversation.input_for(turn) if turn is not None else None
        if turn is None or user_input is None or user_input.ended_at is None:
            return
        origin = user_input.ended_at

        def since(moment: float | None) -> int | None:
            return None if moment is None else round((moment - origin) * 1000)

        timings = {
            "transcript_ms": since(user_input.transcript_at),
            "first_text_ms": since(turn.first_text_at),
            "first_audio_ms": since(playout.first_audio_at),
            "playback_end_ms": since(playout.audio_end_at),
        }
        self.recent_turns.append(
            {
                "conversation_id": conversation.conversation_id,
                "source": user_input.source,
                **timings,
            }
        )
        self._fire_conversation(conversation, RuntimeEventType.TURN_FINISHED, timings)

    @callback
    def _fire_conversation(
        self,
        conversation: Conversation,
        event_type: RuntimeEventType,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self._fire(
            RuntimeEvent(
                event_type, conversation.conversation_id, conversation.device_id, attributes or {}
            )
        )

    @callback
    def async_interrupt(self, conversation: Conversation, *, on_wire: bool = False) -> None:
        """A new run on this conversation (wake word, "stop"): silence the agent at once,
        also where its audio has all arrived and is still playing. `on_wire` tells the
        server too (when no user turn of this conversation will)."""
        conversation.session.interrupt_agent()
        if on_wire:
            self.hass.async_create_background_task(
                self._async_cut_in(conversation), "layercode cut in", eager_start=True
            )
        for playout, owner in list(self._playing.items()):
            if owner() is conversation:
                playout.stop()

    @staticmethod
    async def _async_cut_in(conversation: Conversation) -> None:
        try:
            await conversation.session.cut_in()
        except LayercodeError as err:
            _LOGGER.debug("Could not tell the agent it was cut off: %s", err)

    async def async_prepare(self, conversation_id: str | None) -> None:
        """Open the session before it is needed: the run's own, or a spare for the next one."""
        try:
            if conversation_id is None:
                await self._async_spare()
            else:
                await self.async_get_conversation(conversation_id)
        except HomeAssistantError as err:
            _LOGGER.debug("Could not prepare a session: %s", err)

    async def _async_spare(self) -> Conversation:
        """The session that the next new conversation adopts, opened if there is none."""
        spare = self.conversations.get(self._spare_id or "")
        if (
            spare is None
            or spare.welcomed
            or dt_util.utcnow() - spare.last_activity > SPARE_LIFETIME
        ):
            spare = await self.async_get_conversation()
            self._spare_id = spare.conversation_id
        return spare

    @staticmethod
    def _claim(user_input: UserInput, message: str) -> AgentTurn | None:
        """Claim the input's agent turn for a stream asked to say `message`, if it may."""
        turn = user_input.agent_turn
        if (
            turn is None
            or user_input.abandoned
            or user_input.audio_claimed
            or not _playable(turn, message)
        ):
            return None
        user_input.audio_claimed = True
        return turn

    # -- actions ---------------------------------------------------------------------

    async def async_send_text(
        self,
        text: str,
        conversation_id: str | None,
        context: Context,
        satellite: str | None = None,
    ) -> AgentReply:
        """Typed text through Home Assistant's conversation layer, as the caller.

        Going through `conversation.async_converse` records the exchange in the chat log and
        applies Home Assistant's own rules (on 2026.11 a conversation is busy while a turn
        runs, and belongs to the user who opened it). With a `satellite`, the agent's spoken
        answer is also announced there.
        """
        if (known := self.conversations.get(conversation_id or "")) is not None and any(
            i.source is InputSource.VOICE and not i.answered and not i.abandoned
            for i in known.inputs
        ):
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="conversation_busy",
                translation_placeholders={"conversation_id": conversation_id or ""},
            )
        source = InputSource.ANNOUNCE if satellite else InputSource.ACTION
        token = ACTION_INPUT.set(source)
        try:
            result = await async_converse(
                self.hass,
                text=text,
                conversation_id=conversation_id,
                context=context,
                language=self.hass.config.language,
                agent_id=self.agent_entity_id,
            )
        finally:
            ACTION_INPUT.reset(token)
        response = result.response
        speech = response.speech.get("plain", {}).get("speech", "")
        if response.response_type is intent.IntentResponseType.ERROR:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="conversation_failed",
                translation_placeholders={"error": speech},
            )
        cid = result.conversation_id or ""
        answered = self.conversations.get(cid)
        user_input = next(
            (
                i
                for i in reversed(answered.inputs if answered else ())
                if i.source is source and i.agent_turn is not None
            ),
            None,
        )
        if answered is None or user_input is None or user_input.agent_turn is None:
            return AgentReply(speech, cid, [])
        if satellite:
            await self._async_announce(satellite, answered, user_input.agent_turn, context)
        return AgentReply(speech, cid, user_input.agent_turn.data)

    async def _async_announce(
        self, satellite: str, conversation: Conversation, turn: AgentTurn, context: Context
    ) -> None:
        """Play an agent turn on a satellite as an announcement (no chime), uncached.

        On 2026.11 the agent's audio is handed to Home Assistant as raw PCM; before, the TTS
        entity plays it, found by the turn's text.
        """
        if HA_2026_11:
            for user_input in conversation.inputs:
                if user_input.agent_turn is turn:
                    user_input.audio_claimed = True
            stream = tts.async_create_audio_stream(self.hass)
            stream.async_set_audio_stream(
                tts.PcmFormat(AGENT_RATE, SAMPLE_WIDTH, 1),
                self.async_play(conversation.conversation_id, turn, paced=True),
            )
            media_id = stream.media_source_id
        else:
            media_id = tts.generate_media_source_id(
                self.hass, turn.text, engine=self.tts_entity_id, cache=False
            )
        await self.hass.services.async_call(
            ASSIST_SATELLITE_DOMAIN,
            SERVICE_ANNOUNCE,
            {ATTR_MEDIA_ID: media_id, ATTR_PREANNOUNCE: False},
            target={ATTR_ENTITY_ID: satellite},
            blocking=True,
            context=context,
        )

    async def async_answer(
        self, conversation: Conversation, user_input: UserInput
    ) -> AgentTurn | None:
        """The agent turn answering `user_input`, sending it first if it is typed.

        None when no answer (no text) starts within REPLY_TIMEOUT, or the connection is lost
        first.
        """
        if user_input.source is not InputSource.VOICE:
            user_input.close()
            try:
                await conversation.session.send_text(user_input.text or "")
            except LayercodeError as err:
                _LOGGER.warning("Could not send the text to the agent: %s", err)
                return None
        turn = await user_input.wait_agent_turn(REPLY_TIMEOUT)
        if turn is not None and (not await turn.wait_text(REPLY_TIMEOUT) or not turn.text):
            turn = None
        if turn is None and not user_input.failed:
            _LOGGER.warning("The agent did not answer within %s s", REPLY_TIMEOUT)
        return turn

    async def async_send_data(
        self, data: dict[str, Any], conversation_id: str | None = None
    ) -> str:
        """Send a data message on a conversation (the most recent one when not given)."""
        if conversation_id is None and self.conversations:
            conversation_id = max(
                self.conversations.values(), key=lambda c: c.last_activity
            ).conversation_id
        conversation = await self.async_get_conversation(conversation_id)
        try:
            await conversation.session.send_data(data)
        except LayercodeError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="send_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        return conversation.conversation_id

    async def async_set_muted(self, muted: bool) -> None:
        """Mute or unmute every session, and the ones opened later."""
        self.muted = muted
        for conversation in list(self.conversations.values()):
            await conversation.session.set_muted(muted)
        self._notify_state()

    @callback
    def async_set_audio_output(self, enabled: bool) -> None:
        """Play the agent's audio or not, in every session and the ones opened later."""
        self.audio_output = enabled
        for conversation in self.conversations.values():
            conversation.session.set_audio_output(enabled)
        self._notify_state()


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def _same_text(a: str | None, b: str | None) -> bool:
    """Equal up to whitespace and case."""
    return a is not None and b is not None and _normal(a) == _normal(b)


def _playable(turn: AgentTurn, message: str) -> bool:
    """Whether a TTS stream asked to say `message` should play this turn's audio."""
    return not turn.consumed and not turn.played and _normal(turn.text).startswith(_normal(message))


def _add[T](listeners: list[T], listener: T) -> CALLBACK_TYPE:
    listeners.append(listener)

    @callback
    def remove() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return remove
