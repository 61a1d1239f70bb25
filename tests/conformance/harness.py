"""What the browser run and the Python client run share: scenarios, the local stack, traces.

Each run starts a local stack on 127.0.0.1: one `LocalAgentServer` per turn-taking mode
(automatic, push-to-talk) and a page app. The page app serves the browser harness (the page,
the SDK's ESM bundle and every file it loads: the VAD model and worklet from
`@ricky0123/vad-web`, the ONNX runtime from `onnxruntime-web-1.23.2`) and three small
endpoints both clients use:
- `POST /authorize/<mode>` forwards to that server's authorize endpoint and keeps the body.
  That is the usual set-up: a browser never holds the API key, its own backend calls
  Layercode's authorize endpoint for it.
- `POST /mark` (body: `<mode>.<step>`): a scenario starts; the time is noted, so that the
  server's recording (every client frame, with its monotonic time) can be cut per scenario.
- `POST /drop/<mode>`: that server cuts its connections, as a network failure would.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
)
import contextlib
import copy
from dataclasses import dataclass, field
import json
from pathlib import Path
import shutil
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web

from local_agent_server import ClientFrame, ConnectionRecording, Conversation, LocalAgentServer
from local_agent_server.layercode_client import TurnTrigger

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
SDK_DIST = NODE_MODULES / "@layercode" / "js-sdk" / "dist"
VAD_DIST = NODE_MODULES / "@ricky0123" / "vad-web" / "dist"
ORT_DIST = NODE_MODULES / "onnxruntime-web-1.23.2" / "dist"

AGENT_ID = "ag_conformance"
METADATA = {"user": "conformance"}

AUTOMATIC = "automatic"
PUSH_TO_TALK = "push_to_talk"

# The fake microphone, from the first getUserMedia of each connect() on: 5 s of quiet (the
# SDK loads its VAD meanwhile, and a `vad_start` before the socket opens would be lost),
# 1.6 s of speech for the automatic turn, quiet while the agent answers, then 2 s of speech
# that the user mutes part-way through. Each connect() starts the file again.
MIC_SPEECH = ((5.0, 1.6), (12.5, 2.0))
MIC_SECONDS = 16.0

TEXT = "Héllo, what's the weather? 👋"
DATA = {"kind": "ping", "n": 1, "note": "ça va"}
LONG_TEXT = "Tell me a long story about the sea, the wind and the old lighthouse."
PREROLL_FRAMES = 10
"""`config.vad.buffer_frames`, the local server's default like Layercode's."""
PUSH_TO_TALK_HOLD_MS = 1000
INTERRUPT_HOLD_MS = 600
MUTE_SPEAK_MS = 500

AUTOMATIC_STEPS: list[dict[str, Any]] = [
    {"name": "connect", "kind": "connect"},
    {"name": "vad_turn", "kind": "vad_turn"},
    {"name": "mute_speech", "kind": "mute_speech", "speak_ms": MUTE_SPEAK_MS},
    {"name": "text", "kind": "text", "content": TEXT},
    {"name": "data", "kind": "data", "data": DATA},
    {"name": "disconnect", "kind": "disconnect"},
]
PUSH_TO_TALK_STEPS: list[dict[str, Any]] = [
    {"name": "connect", "kind": "connect"},
    {
        "name": "push_to_talk",
        "kind": "push_to_talk",
        "idle_ms": 1500,
        "hold_ms": PUSH_TO_TALK_HOLD_MS,
    },
    {
        "name": "interrupt",
        "kind": "interrupt",
        "content": LONG_TEXT,
        "before_ms": 800,
        "hold_ms": INTERRUPT_HOLD_MS,
    },
    {"name": "mute", "kind": "mute", "hold_ms": 600},
    {"name": "disconnect", "kind": "disconnect"},
    {"name": "reconnect", "kind": "connect"},
    {"name": "drop", "kind": "drop", "watch_ms": 1500},
]
PLAN: dict[str, tuple[TurnTrigger, list[dict[str, Any]]]] = {
    AUTOMATIC: (TurnTrigger.AUTOMATIC, AUTOMATIC_STEPS),
    PUSH_TO_TALK: (TurnTrigger.PUSH_TO_TALK, PUSH_TO_TALK_STEPS),
}
SCENARIOS = [f"{mode}.{step['name']}" for mode, (_, steps) in PLAN.items() for step in steps]

AUDIO = "client.audio"
REPLAY_FINISHED = "trigger.response.audio.replay_finished"
FRAME_BYTES = 1792
"""896 samples, 112 ms at 8 kHz: the browser SDK's `client.audio` frame."""
FRAME_MS = 112


def installed_version(package: str) -> str:
    """The version of an npm package installed in tests/conformance/node_modules."""
    manifest = json.loads((NODE_MODULES / package / "package.json").read_text())
    return str(manifest["version"])


def run_in_thread[T](main: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run `main()` on an event loop of its own, for a session-scoped (sync) fixture.

    The thread has ended when this returns, so no test sees it linger; `timeout` bounds it.
    """
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(asyncio.run(main()))
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)

    thread = threading.Thread(target=target, name=f"conformance {main.__name__}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{main.__name__} did not end within {timeout:g} s")
    if errors:
        raise errors[0]
    return results[0]


def missing_requirements(*, browser: bool) -> str | None:
    """What is missing to run the official SDKs here, as one line; None when nothing is."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Node.js)")
    if browser and shutil.which("chromium") is None:
        missing.append("chromium")
    if not (NODE_MODULES / "@layercode").is_dir():
        missing.append("tests/conformance/node_modules (npm ci)")
    if not missing:
        return None
    return f"{', '.join(missing)} not installed here: run script/setup-conformance"


# -- what a run leaves behind ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """A scenario (`<mode>.<step>`) started at monotonic time `at`."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class AuthorizeCall:
    """One authorize request as the client sent it."""

    mode: str
    body: dict[str, Any]
    at: float


@dataclass(slots=True)
class ServerRecord:
    """What one local server saw."""

    trigger: TurnTrigger
    recordings: list[ConnectionRecording]
    conversations: dict[str, Conversation]
    webhook_events: list[dict[str, Any]]
    """What the built-in backend received (session.start, message, data, session.end)."""


@dataclass
class Run:
    """The marks, authorize calls and server records of one run of the scenarios."""

    marks: list[Mark]
    authorize_calls: list[AuthorizeCall]
    servers: dict[str, ServerRecord]

    def frames(self, scenario: str) -> list[ClientFrame]:
        """Every client frame the server received from the start of `scenario` to the next."""
        mode = scenario.partition(".")[0]
        names = [mark.name for mark in self.marks]
        index = names.index(scenario)
        start = self.marks[index].at
        end = self.marks[index + 1].at if index + 1 < len(self.marks) else float("inf")
        return [
            frame
            for recording in self.servers[mode].recordings
            for frame in recording.frames
            if start <= frame.at < end
        ]

    def messages(self, scenario: str) -> list[dict[str, Any]]:
        """The well-formed client messages of `scenario`."""
        return [frame.message for frame in self.frames(scenario) if frame.message is not None]

    def webhook_events(self, mode: str, kind: str) -> list[dict[str, Any]]:
        """The webhooks of one type the mode's server sent to its built-in backend."""
        return [e for e in self.servers[mode].webhook_events if e["type"] == kind]


# -- the local stack ---------------------------------------------------------------------


_CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".map": "application/json",
}

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _serve_file(path: Path) -> web.FileResponse:
    content_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": content_type})


def _file(path: Path) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _serve_file(path)

    return handler


def _directory(directory: Path) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = directory / name
        if name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound
        return _serve_file(path)

    return handler


class PageApp:
    """The harness page and its files, plus `/authorize`, `/mark` and `/drop` for both runs."""

    def __init__(self, http: aiohttp.ClientSession, servers: Mapping[str, LocalAgentServer]):
        self._http = http
        self._servers = servers
        self.marks: list[Mark] = []
        self.authorize_calls: list[AuthorizeCall] = []

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_get("/", _file(HERE / "harness.html"))
        app.router.add_get("/harness.js", _file(HERE / "harness.js"))
        app.router.add_get("/sdk/{name}", _directory(SDK_DIST))
        app.router.add_get("/assets/vad-web/0.0.29/{name}", _directory(VAD_DIST))
        app.router.add_get("/assets/onnxruntime-web/1.23.2/{name}", _directory(ORT_DIST))
        app.router.add_get("/config.json", self._config)
        app.router.add_post("/mark", self._mark)
        app.router.add_post("/authorize/{mode}", self._authorize)
        app.router.add_post("/drop/{mode}", self._drop)
        return app

    def mark(self, name: str) -> None:
        """A scenario starts now."""
        self.marks.append(Mark(name, time.monotonic()))

    def _server(self, request: web.Request) -> LocalAgentServer:
        server = self._servers.get(request.match_info["mode"])
        if server is None:
            raise web.HTTPNotFound
        return server

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "agent_id": AGENT_ID,
                "metadata": METADATA,
                "timeouts": {"connect": 10_000, "vad": 12_000, "reply": 8_000, "playback": 12_000},
                "connections": [
                    {
                        "name": mode,
                        "authorize_path": f"/authorize/{mode}",
                        "websocket_url": self._servers[mode].websocket_url,
                        "steps": steps,
                    }
                    for mode, (_, steps) in PLAN.items()
                ],
            }
        )

    async def _mark(self, request: web.Request) -> web.Response:
        self.mark(await request.text())
        return web.json_response({"ok": True})

    async def _authorize(self, request: web.Request) -> web.Response:
        server = self._server(request)
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"<not JSON>": raw.decode(errors="replace")}
        self.authorize_calls.append(
            AuthorizeCall(request.match_info["mode"], body, time.monotonic())
        )
        async with self._http.post(
            server.authorize_url, data=raw, headers={"Content-Type": "application/json"}
        ) as response:
            return web.Response(
                status=response.status, body=await response.read(), content_type="application/json"
            )

    async def _drop(self, request: web.Request) -> web.Response:
        await self._server(request).drop_connections()
        return web.json_response({"ok": True})


@dataclass
class Stack:
    """The local servers and the page app of one run."""

    servers: dict[str, LocalAgentServer]
    page_app: PageApp
    base_url: str
    """The page app's `http://127.0.0.1:<port>`."""
    _records: dict[str, ServerRecord] = field(default_factory=dict)

    def authorize_url(self, mode: str) -> str:
        """The recording authorize proxy of one mode's server."""
        return f"{self.base_url}/authorize/{mode}"

    def run(self) -> Run:
        """What the run left behind; complete once the stack has stopped."""
        return Run(self.page_app.marks, self.page_app.authorize_calls, self._records)

    def _snapshot(self) -> None:
        for mode, server in self.servers.items():
            backend = server.webhook_backend
            self._records[mode] = ServerRecord(
                trigger=PLAN[mode][0],
                recordings=list(server.recordings),
                conversations=dict(server.conversations),
                webhook_events=copy.deepcopy(backend.events) if backend is not None else [],
            )


@contextlib.asynccontextmanager
async def local_stack(http: aiohttp.ClientSession) -> AsyncIterator[Stack]:
    """Start the servers of PLAN and the page app; stop them all (sessions end first)."""
    servers = {
        mode: LocalAgentServer(agent_id=AGENT_ID, trigger=trigger)
        for mode, (trigger, _) in PLAN.items()
    }
    page_app = PageApp(http, servers)
    runner = web.AppRunner(page_app.app(), handle_signals=False, access_log=None)
    try:
        for server in servers.values():
            await server.start()
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        stack = Stack(servers, page_app, f"http://127.0.0.1:{runner.addresses[0][1]}")
        yield stack
    finally:
        await runner.cleanup()
        for server in servers.values():
            await server.stop()  # each session still open reports session.end first
    stack._snapshot()


# -- traces ------------------------------------------------------------------------------


def token(message: Mapping[str, Any]) -> str:
    """A message's type, with the event for `vad_events` (`vad_events:vad_start`)."""
    kind = str(message["type"])
    return f"{kind}:{message.get('event')}" if kind == "vad_events" else kind


def collapse(tokens: Iterable[str]) -> list[str]:
    """Tokens with each stretch of `client.audio` and `replay_finished` made canonical.

    A stretch becomes `replay_finished` (if it held any: the browser SDK sends one each time
    its playback buffer runs dry, the Python client one per agent turn) followed by
    `client.audio*` (if it held any: frame counts follow how long someone talked). Where in
    the stretch the `replay_finished` fell is a race in both clients between the player and
    the microphone (a push-to-talk press flushes the pre-roll while the player stops).
    """
    result: list[str] = []
    stretch: set[str] = set()

    def close() -> None:
        if REPLAY_FINISHED in stretch:
            result.append(REPLAY_FINISHED)
        if AUDIO in stretch:
            result.append(AUDIO + "*")
        stretch.clear()

    for item in tokens:
        if item in (AUDIO, REPLAY_FINISHED):
            stretch.add(item)
            continue
        close()
        result.append(item)
    close()
    return result


def audio_frames(messages: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """The decoded PCM of each `client.audio` message."""
    return [base64.b64decode(m["content"]) for m in messages if m["type"] == AUDIO]
