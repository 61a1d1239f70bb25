"""The Layercode-compatible server: authorize endpoint, WebSocket, and optionally the backend.

Routes, as on api.layercode.com:
- `POST /v1/agents/web/authorize_session` {agent_id, conversation_id?, metadata?, ...}:
  `{client_session_key, conversation_id, config}`; errors `{"error": ...}` with 401 (API key),
  404 (agent), 400 (bad body or conversation id).
- `GET /v1/agents/web/websocket?client_session_key=…`: 403 before the upgrade for an unknown,
  used or expired key; then one `Session` (see session.py for the message flow), or in relay
  mode one `RelaySession` (relay.py), which answers 502 before the upgrade when its LiveLayer
  agent cannot be reached.
- `POST /webhook`: the built-in `WebhookBackend`, when no external webhook URL is given (and
  no relay). The server still reaches it over real HTTP, signed, as Layercode would.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import aiohttp
from aiohttp import web

from .backend import Responder, WebhookBackend
from .connection import CLOSE_TIMEOUT, ClientConnection, SessionSettings
from .detection import EnergySettings
from .engines import SampleCountSpeechToText, SpeechToText, TextToSpeech, ToneTextToSpeech
from .ids import new_id
from .keys import SessionKeys
from .layercode_client import LayercodeError, SessionConfig, TurnTrigger, VadConfig
from .records import ConnectionRecording, Conversation
from .relay import LiveLayerRelay, RelaySession, failure_reason
from .session import Session
from .webhook import WebhookClient

_LOGGER = logging.getLogger(__name__)

AUTHORIZE_PATH = "/v1/agents/web/authorize_session"
WEBSOCKET_PATH = "/v1/agents/web/websocket"
WEBHOOK_PATH = "/webhook"

_SESSION_END_TIMEOUT = 10.0
"""How long stop() and drop_connections() wait for sessions to wind down."""
_SHUTDOWN_TIMEOUT = 2.0
"""How long the HTTP server waits for requests still running when it stops."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class LocalAgentServer:
    """A local stand-in for Layercode, for tests, benchmarks and demos.

    `recordings` holds every client frame per connection; `conversations` every turn and
    transcript line per conversation id; `webhook_backend.events` (built-in backend only)
    every webhook it received.
    """

    def __init__(
        self,
        *,
        agent_id: str = "ag_local",
        api_key: str | None = None,
        trigger: TurnTrigger = TurnTrigger.AUTOMATIC,
        can_interrupt: bool = True,
        vad: VadConfig | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = "whsec_local",  # noqa: S107  # a local test secret, not a credential
        stt: SpeechToText | None = None,
        tts: TextToSpeech | None = None,
        backend: Responder | None = None,
        session_key_ttl: float = 3600.0,
        replay_timeout: float = 30.0,
        pace_audio: bool = False,
        interim_interval: float = 0.5,
        energy: EnergySettings | None = None,
        webhook_connect_timeout: float = 5.0,
        webhook_read_timeout: float = 30.0,
        relay: LiveLayerRelay | None = None,
    ) -> None:
        """`webhook_url` None mounts the built-in backend (answering with `backend`).

        `pace_audio` sends agent audio at real time instead of as fast as possible, so that
        some of it is still in flight when a test barges in. With `relay`, a LiveLayer agent
        answers every connection instead of a webhook backend.
        """
        if webhook_url is not None and backend is not None:
            raise ValueError("backend answers only when there is no webhook_url")
        if relay is not None and (webhook_url is not None or backend is not None):
            raise ValueError("a relay answers with its LiveLayer agent: no webhook_url or backend")
        self.agent_id = agent_id
        self.api_key = api_key
        """The bearer token authorize requires (None: any); changing it revokes the old one."""
        self._config = SessionConfig(
            trigger=trigger, can_interrupt=can_interrupt, vad=vad or VadConfig()
        )
        self._settings = SessionSettings(
            agent_id=agent_id,
            trigger=trigger,
            can_interrupt=can_interrupt,
            replay_timeout=replay_timeout,
            pace_audio=pace_audio,
            interim_interval=interim_interval,
            energy=energy or EnergySettings(),
        )
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._webhook_timeouts = (webhook_connect_timeout, webhook_read_timeout)
        self._stt: SpeechToText = stt or SampleCountSpeechToText()
        self._tts: TextToSpeech = tts or ToneTextToSpeech()
        self._relay = relay
        self.webhook_backend = (
            WebhookBackend(webhook_secret, backend)
            if webhook_url is None and relay is None
            else None
        )
        self._keys = SessionKeys(session_key_ttl)
        self.recordings: list[ConnectionRecording] = []
        self.conversations: dict[str, Conversation] = {}
        self._sessions: dict[ClientConnection, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._webhook: WebhookClient | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        """`http://host:port` once started."""
        return self._base_url

    @property
    def authorize_url(self) -> str:
        """Where clients POST to authorize a session."""
        return self._base_url + AUTHORIZE_PATH

    @property
    def websocket_url(self) -> str:
        """Where clients open the WebSocket (add `?client_session_key=…`)."""
        return "ws" + self._base_url.removeprefix("http") + WEBSOCKET_PATH

    @property
    def webhook_url(self) -> str:
        """Where the server sends webhooks."""
        return self._webhook_url or self._base_url + WEBHOOK_PATH

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on `host`:`port` (0 picks a free port)."""
        if self._runner is not None:
            raise RuntimeError("already started")
        app = web.Application()
        app.router.add_post(AUTHORIZE_PATH, self._authorize)
        app.router.add_get(WEBSOCKET_PATH, self._websocket)
        if self.webhook_backend is not None:
            app.router.add_post(WEBHOOK_PATH, self.webhook_backend.handle)
        # Handler cancellation: a webhook request the server aborts stops its responder.
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        url_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
        self._base_url = f"http://{url_host}:{bound_port}"
        self._http = aiohttp.ClientSession()
        connect_timeout, read_timeout = self._webhook_timeouts
        self._webhook = WebhookClient(
            self._http,
            self.webhook_url,
            self._webhook_secret,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        _LOGGER.info(
            "Layercode-compatible server for agent %s at %s (%s)",
            self.agent_id,
            self._base_url,
            f"relaying to LiveLayer agent {self._relay.options.agent_id} at "
            f"{self._relay.options.session_url}"
            if self._relay is not None
            else f"webhook {self.webhook_url}",
        )

    async def stop(self) -> None:
        """Close every connection (each reports `session.end`), then the server itself."""
        if self._runner is None:
            return
        await asyncio.gather(*(session.close(CLOSE_TIMEOUT) for session in list(self._sessions)))
        await self._wait_for_sessions()
        await self._runner.cleanup()
        self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._webhook = None

    async def drop_connections(self) -> None:
        """Cut every client connection abruptly (no close frame), as a network failure would."""
        for session in list(self._sessions):
            session.abort()
        await self._wait_for_sessions()

    async def send_raw(self, text: str) -> None:
        """Send a raw text frame to every connected client."""
        await asyncio.gather(*(session.send_text(text) for session in list(self._sessions)))

    async def _wait_for_sessions(self) -> None:
        tasks = set(self._sessions.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=_SESSION_END_TIMEOUT)
        for task in pending:
            _LOGGER.warning("A session did not end in time; cancelling it")
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _authorize(self, request: web.Request) -> web.Response:
        if self.api_key is not None:
            supplied = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(supplied, f"Bearer {self.api_key}".encode()):
                return _error(401, "invalid API key")
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body is not a JSON object")
        agent_id = body.get("agent_id")
        if not isinstance(agent_id, str) or not agent_id:
            return _error(400, "agent_id is required")
        if agent_id != self.agent_id:
            return _error(404, f"agent {agent_id!r} not found")
        conversation_id = body.get("conversation_id")
        if conversation_id is None:
            conversation = Conversation(new_id("conv"))
            self.conversations[conversation.conversation_id] = conversation
        elif isinstance(conversation_id, str) and conversation_id in self.conversations:
            conversation = self.conversations[conversation_id]
        else:
            return _error(400, f"unknown conversation_id {conversation_id!r}")
        self._remember_extras(conversation, body)
        return web.json_response(
            {
                "client_session_key": self._keys.issue(conversation.conversation_id),
                "conversation_id": conversation.conversation_id,
                "config": self._config.to_json(),
            }
        )

    @staticmethod
    def _remember_extras(conversation: Conversation, body: dict[str, Any]) -> None:
        """Keep what authorize may carry for the webhooks: metadata and custom extras."""
        if isinstance(metadata := body.get("metadata"), dict):
            conversation.metadata = metadata
        if isinstance(custom_metadata := body.get("custom_metadata"), dict):
            conversation.custom_metadata = custom_metadata
        if isinstance(custom_headers := body.get("custom_headers"), dict):
            conversation.custom_headers = {
                str(name): value for name, value in custom_headers.items() if isinstance(value, str)
            }

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT)
        if not ws.can_prepare(request).ok:
            return _error(400, "expected a WebSocket upgrade")
        conversation_id = self._keys.redeem(request.query.get("client_session_key", ""))
        if conversation_id is None or self._webhook is None:
            return _error(403, "invalid, used or expired client_session_key")
        session = self._connection(request, ws, self.conversations[conversation_id])
        try:
            await session.accept()
        except LayercodeError as err:
            return _error(502, failure_reason(err))
        self.recordings.append(session.recording)
        # The session runs in a task of its own so that it still reports `session.end`
        # when aiohttp cancels this handler because the client went away.
        task = asyncio.create_task(session.run())
        self._sessions[session] = task
        task.add_done_callback(lambda _: self._sessions.pop(session, None))
        await asyncio.shield(task)
        return ws

    def _connection(
        self, request: web.Request, ws: web.WebSocketResponse, conversation: Conversation
    ) -> ClientConnection:
        if self._relay is not None:
            assert self._http is not None
            return RelaySession(
                request,
                ws,
                relay=self._relay,
                http=self._http,
                settings=self._settings,
                conversation=conversation,
            )
        assert self._webhook is not None
        return Session(
            request,
            ws,
            settings=self._settings,
            webhook=self._webhook,
            stt=self._stt,
            tts=self._tts,
            conversation=conversation,
        )
