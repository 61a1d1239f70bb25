"""One run of the official browser SDK (`@layercode/js-sdk`) against the local agent server.

The test process serves, from 127.0.0.1:
- two `LocalAgentServer`s, one per turn-taking mode (automatic, push-to-talk);
- a page app: the harness page, the SDK's ESM bundle and every file it loads (the VAD model
  and worklet from `@ricky0123/vad-web`, the ONNX runtime from `onnxruntime-web-1.23.2`),
  `/config.json` (the scenarios), `/mark` (the page announces each scenario; the time is
  noted to cut the server's recordings into scenarios) and `/authorize/<mode>`, which forwards
  to that server's authorize endpoint and keeps the body. That is the usual set-up: a browser
  never holds the API key, its own backend calls Layercode's authorize endpoint for it.
Then `browser_driver.mjs` runs the page in headless Chromium with a fake microphone playing a
WAV made here, and prints what the page recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import copy
from dataclasses import dataclass, field
import json
from pathlib import Path
import shutil
import time
from typing import Any

import aiohttp
from aiohttp import web

from local_agent_server import ClientFrame, ConnectionRecording, Conversation, LocalAgentServer
from local_agent_server.layercode_client import TurnTrigger

from .speech import write_microphone_wav

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
SDK_DIST = NODE_MODULES / "@layercode" / "js-sdk" / "dist"
VAD_DIST = NODE_MODULES / "@ricky0123" / "vad-web" / "dist"
ORT_DIST = NODE_MODULES / "onnxruntime-web-1.23.2" / "dist"

AGENT_ID = "ag_conformance"
METADATA = {"user": "conformance"}
SDK_VERSION = "2.8.10"
"""The pinned `@layercode/js-sdk`; it reports itself as `sdk_version` "2.7.0"."""

# The fake microphone: 5 s of silence (the SDK loads its VAD meanwhile, and a `vad_start`
# before the socket opens would be lost), then 1.6 s of speech, then silence.
MIC_SPEECH = ((5.0, 1.6),)
MIC_SECONDS = 9.0

TEXT = "Héllo, what's the weather? 👋"
DATA = {"kind": "ping", "n": 1, "note": "ça va"}
LONG_TEXT = "Tell me a long story about the sea, the wind and the old lighthouse."

AUTOMATIC_STEPS: list[dict[str, Any]] = [
    {"name": "connect", "kind": "connect"},
    {"name": "vad_turn", "kind": "vad_turn"},
    {"name": "text", "kind": "text", "content": TEXT},
    {"name": "data", "kind": "data", "data": DATA},
    {"name": "disconnect", "kind": "disconnect"},
]
PUSH_TO_TALK_STEPS: list[dict[str, Any]] = [
    {"name": "connect", "kind": "connect"},
    {"name": "push_to_talk", "kind": "push_to_talk", "idle_ms": 1500, "hold_ms": 1000},
    {
        "name": "interrupt",
        "kind": "interrupt",
        "content": LONG_TEXT,
        "before_ms": 800,
        "hold_ms": 600,
    },
    {"name": "mute", "kind": "mute", "hold_ms": 600},
    {"name": "disconnect", "kind": "disconnect"},
    {"name": "reconnect", "kind": "connect"},
    {"name": "disconnect_again", "kind": "disconnect"},
]
CONNECTIONS: dict[str, tuple[TurnTrigger, list[dict[str, Any]]]] = {
    "automatic": (TurnTrigger.AUTOMATIC, AUTOMATIC_STEPS),
    "push_to_talk": (TurnTrigger.PUSH_TO_TALK, PUSH_TO_TALK_STEPS),
}
TIMEOUTS_MS = {"connect": 10_000, "vad": 12_000, "reply": 8_000, "playback": 12_000}
RUN_TIMEOUT = 90.0
"""Bound on the whole browser run, launch to exit."""


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
    return f"{', '.join(missing)} not installed: run script/setup-conformance"


@dataclass(frozen=True, slots=True)
class Mark:
    """The page started a scenario (`<connection>.<step>`) at monotonic time `at`."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class AuthorizeCall:
    """One authorize request as the client sent it."""

    connection: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass(slots=True)
class ServerRecord:
    """What one local server saw during the run."""

    trigger: TurnTrigger
    recordings: list[ConnectionRecording]
    conversations: dict[str, Conversation]
    webhook_events: list[dict[str, Any]]


@dataclass(slots=True)
class BrowserRun:
    """Everything one browser run produced."""

    page: dict[str, Any]
    """The driver's output: `log`, `amplitudes`, `failures`, `consoleErrors`, timings."""
    marks: list[Mark]
    authorize_calls: list[AuthorizeCall]
    servers: dict[str, ServerRecord]
    seconds: float
    stderr: str = ""

    @property
    def log(self) -> list[dict[str, Any]]:
        """Every callback the SDK made, in order, tagged with its scenario."""
        entries: list[dict[str, Any]] = self.page.get("log", [])
        return entries

    def events(self, scenario: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The page's log entries of one scenario (`<connection>.<step>`)."""
        return [e for e in self.log if e["scenario"] == scenario and kind in (None, e["kind"])]

    def messages(self, scenario: str, kind: str) -> list[dict[str, Any]]:
        """The server messages (or SDK-made events) the SDK passed to `onMessage`."""
        return [
            e["message"] for e in self.events(scenario, "message") if e["message"]["type"] == kind
        ]

    def frames(self, scenario: str) -> list[ClientFrame]:
        """The client frames the server received during one scenario."""
        connection = scenario.partition(".")[0]
        names = [mark.name for mark in self.marks]
        start = self.marks[names.index(scenario)].at
        later = [m.at for m in self.marks[names.index(scenario) + 1 :]]
        end = later[0] if later else float("inf")
        frames = [
            frame for recording in self.servers[connection].recordings for frame in recording.frames
        ]
        return [frame for frame in frames if start <= frame.at < end]


class PageApp:
    """Serves the harness page, the SDK and its assets, and forwards authorize requests."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        servers: Mapping[str, LocalAgentServer],
        plan: Mapping[str, Sequence[Mapping[str, Any]]],
    ) -> None:
        self._http = http
        self._servers = servers
        self._plan = plan
        self.marks: list[Mark] = []
        self.authorize_calls: list[AuthorizeCall] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._file(HERE / "harness.html"))
        app.router.add_get("/harness.js", self._file(HERE / "harness.js"))
        app.router.add_get("/sdk/{name}", self._directory(SDK_DIST))
        app.router.add_get("/assets/vad-web/0.0.29/{name}", self._directory(VAD_DIST))
        app.router.add_get("/assets/onnxruntime-web/1.23.2/{name}", self._directory(ORT_DIST))
        app.router.add_get("/config.json", self._config)
        app.router.add_post("/mark", self._mark)
        app.router.add_post("/authorize/{connection}", self._authorize)
        return app

    @staticmethod
    def _content_type(path: Path) -> str:
        return {
            ".html": "text/html",
            ".js": "text/javascript",
            ".mjs": "text/javascript",
            ".wasm": "application/wasm",
            ".map": "application/json",
        }.get(path.suffix, "application/octet-stream")

    def _file(self, path: Path) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Content-Type": self._content_type(path)})

        return handler

    def _directory(self, directory: Path) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            path = directory / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise web.HTTPNotFound
            return web.FileResponse(path, headers={"Content-Type": self._content_type(path)})

        return handler

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "agent_id": AGENT_ID,
                "metadata": METADATA,
                "timeouts": TIMEOUTS_MS,
                "connections": [
                    {
                        "name": name,
                        "authorize_path": f"/authorize/{name}",
                        "websocket_url": self._servers[name].websocket_url,
                        "steps": list(steps),
                    }
                    for name, steps in self._plan.items()
                ],
            }
        )

    async def _mark(self, request: web.Request) -> web.Response:
        self.marks.append(Mark(await request.text(), time.monotonic()))
        return web.json_response({"ok": True})

    async def _authorize(self, request: web.Request) -> web.Response:
        connection = request.match_info["connection"]
        if connection not in self._servers:
            raise web.HTTPNotFound
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"<not JSON>": raw.decode(errors="replace")}
        self.authorize_calls.append(
            AuthorizeCall(connection, body, dict(request.headers), time.monotonic())
        )
        async with self._http.post(
            self._servers[connection].authorize_url,
            data=raw,
            headers={"Content-Type": "application/json"},
        ) as response:
            return web.Response(
                status=response.status, body=await response.read(), content_type="application/json"
            )


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def run_browser_sdk(workdir: Path) -> BrowserRun:
    """Run every scenario of CONNECTIONS in one headless Chromium; bounded by RUN_TIMEOUT."""
    started = time.monotonic()
    wav = workdir / "microphone.wav"
    write_microphone_wav(wav, list(MIC_SPEECH), total=MIC_SECONDS)
    servers = {
        name: LocalAgentServer(agent_id=AGENT_ID, trigger=trigger)
        for name, (trigger, _) in CONNECTIONS.items()
    }
    for server in servers.values():
        await server.start()
    runner: web.AppRunner | None = None
    try:
        async with aiohttp.ClientSession() as http:
            page_app = PageApp(http, servers, {n: s for n, (_, s) in CONNECTIONS.items()})
            runner, base_url = await _serve(page_app.app())
            page, stderr = await _run_driver(
                {
                    "pageUrl": base_url + "/",
                    "wav": str(wav),
                    "chromium": shutil.which("chromium"),
                    "timeoutMs": int(RUN_TIMEOUT * 1000),
                }
            )
            await runner.cleanup()
            runner = None
    finally:
        if runner is not None:
            await runner.cleanup()
        for server in servers.values():
            await server.stop()  # each open session reports session.end first
    return BrowserRun(
        page=page,
        marks=page_app.marks,
        authorize_calls=page_app.authorize_calls,
        servers={
            name: ServerRecord(
                trigger=CONNECTIONS[name][0],
                recordings=list(server.recordings),
                conversations=dict(server.conversations),
                webhook_events=copy.deepcopy(
                    server.webhook_backend.events if server.webhook_backend else []
                ),
            )
            for name, server in servers.items()
        },
        seconds=time.monotonic() - started,
        stderr=stderr,
    )


async def _run_driver(options: dict[str, Any]) -> tuple[dict[str, Any], str]:
    node = shutil.which("node")
    assert node is not None
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "browser_driver.mjs"),
        json.dumps(options),
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT + 15):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"error": f"no JSON from the driver (exit {process.returncode})"}
    result["exitCode"] = process.returncode
    return result, stderr.decode(errors="replace")


def run_in_thread(workdir: Path) -> BrowserRun:
    """`run_browser_sdk` on an event loop of its own (for a session-scoped, sync fixture)."""
    results: list[BrowserRun] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            results.append(asyncio.run(run_browser_sdk(workdir)))
        except BaseException as err:  # handed to the caller's thread
            errors.append(err)

    import threading

    thread = threading.Thread(target=main, name="layercode-browser-run")
    thread.start()
    thread.join(RUN_TIMEOUT + 60)
    if thread.is_alive():
        raise TimeoutError("the browser run did not finish")
    if errors:
        raise errors[0]
    return results[0]


__all__ = ["BrowserRun", "field"]
