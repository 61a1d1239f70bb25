"""A small client of Home Assistant's REST and WebSocket APIs, as the frontend uses them.

The development instance is configured through these APIs (the integration's own config flow,
the Assist pipeline commands) rather than by writing storage files, so that what it tests is
what a user's clicks do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import itertools
import json
import time
from typing import Any

import aiohttp

REQUEST_TIMEOUT = 30.0
"""Bound on one REST request or WebSocket command."""


class ApiError(RuntimeError):
    """Home Assistant refused a request; the message says what it answered."""


class HomeAssistantApi:
    """REST calls and one authenticated WebSocket connection with a long-lived token."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._http = http
        self.base_url = base_url
        self._token = token
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._queues: dict[int, asyncio.Queue[dict[str, Any] | None]] = {}

    # -- REST --------------------------------------------------------------------------

    async def rest(self, method: str, path: str, payload: Any = None) -> Any:
        """One REST call; the decoded JSON answer, or ApiError with the status and body."""
        async with self._http.request(
            method,
            self.base_url + path,
            json=payload,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            body = await response.text()
            if response.status >= 400:
                raise ApiError(f"{method} {path}: HTTP {response.status}: {body[:500]}")
            return json.loads(body) if body else None

    async def download(self, path: str) -> tuple[bytes, str]:
        """The body and content type of a GET (a TTS URL needs no token; it is sent anyway)."""
        async with self._http.get(
            self.base_url + path,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            if response.status >= 400:
                raise ApiError(f"GET {path}: HTTP {response.status}")
            return await response.read(), response.content_type

    async def wait_until_running(self, timeout: float, alive: asyncio.Future[Any]) -> str:
        """Poll until Home Assistant answers and has started; returns its version.

        `alive` is the process's wait(): when it finishes first, Home Assistant has exited.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if alive.done():
                raise ApiError("Home Assistant exited while starting")
            with contextlib.suppress(aiohttp.ClientError, ApiError, TimeoutError):
                config = await self.rest("GET", "/api/config")
                if config.get("state") == "RUNNING":
                    return str(config.get("version", "?"))
            await asyncio.sleep(0.5)
        raise ApiError(f"Home Assistant did not start within {timeout:.0f} s")

    # -- WebSocket ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the WebSocket API and authenticate."""
        ws = await self._http.ws_connect(
            self.base_url + "/api/websocket", timeout=aiohttp.ClientWSTimeout(ws_close=5.0)
        )
        async with asyncio.timeout(REQUEST_TIMEOUT):
            hello = await ws.receive_json()
            if hello.get("type") != "auth_required":
                raise ApiError(f"unexpected greeting {hello}")
            await ws.send_json({"type": "auth", "access_token": self._token})
            answer = await ws.receive_json()
        if answer.get("type") != "auth_ok":
            await ws.close()
            raise ApiError(f"WebSocket authentication failed: {answer}")
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))

    async def close(self) -> None:
        """Close the WebSocket connection, if open."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._ws = None
        self._reader = None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Route every message to the queue of its command id; None to all at the end."""
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                decoded = json.loads(message.data)
                for item in decoded if isinstance(decoded, list) else [decoded]:
                    if (queue := self._queues.get(item.get("id"))) is not None:
                        queue.put_nowait(item)
        finally:
            for queue in self._queues.values():
                queue.put_nowait(None)

    async def _send(self, message: dict[str, Any]) -> asyncio.Queue[dict[str, Any] | None]:
        if self._ws is None:
            raise ApiError("not connected")
        message_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._queues[message_id] = queue
        await self._ws.send_json({"id": message_id, **message})
        return queue

    @staticmethod
    async def _next(queue: asyncio.Queue[dict[str, Any] | None], timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            message = await queue.get()
        if message is None:
            raise ApiError("the WebSocket connection closed")
        return message

    async def command(self, command_type: str, **fields: Any) -> Any:
        """Send one command and return its result, or raise ApiError with HA's error."""
        queue = await self._send({"type": command_type, **fields})
        answer = await self._next(queue, REQUEST_TIMEOUT)
        if not answer.get("success"):
            raise ApiError(f"{command_type}: {answer.get('error')}")
        return answer.get("result")

    @contextlib.asynccontextmanager
    async def subscription(
        self, message: dict[str, Any], timeout: float
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Send a subscribing command; yields an iterator of its events (bounded in time)."""
        queue = await self._send(message)
        answer = await self._next(queue, REQUEST_TIMEOUT)
        if not answer.get("success"):
            raise ApiError(f"{message.get('type')}: {answer.get('error')}")
        deadline = time.monotonic() + timeout

        async def events() -> AsyncIterator[dict[str, Any]]:
            while True:
                item = await self._next(queue, max(0.0, deadline - time.monotonic()))
                if item.get("type") == "event":
                    yield item["event"]

        yield events()

    async def send_bytes(self, data: bytes) -> None:
        """One binary frame (audio for a pipeline's STT stage)."""
        if self._ws is None:
            raise ApiError("not connected")
        await self._ws.send_bytes(data)


async def add_layercode_entry(
    api: HomeAssistantApi, agent_id: str, authorize_url: str, websocket_url: str
) -> str:
    """Walk the integration's config flow as the UI does (the provider menu, then Layercode's
    form); returns the new entry's id."""
    menu = await api.rest("POST", "/api/config/config_entries/flow", {"handler": "layercode"})
    if menu.get("type") != "menu":
        raise ApiError(f"the config flow did not open with its provider menu: {menu}")
    flow = await api.rest(
        "POST", f"/api/config/config_entries/flow/{menu['flow_id']}", {"next_step_id": "layercode"}
    )
    if flow.get("type") != "form":
        raise ApiError(f"the Layercode config flow did not show its form: {flow}")
    result = await api.rest(
        "POST",
        f"/api/config/config_entries/flow/{flow['flow_id']}",
        {"agent_id": agent_id, "authorize_url": authorize_url, "websocket_url": websocket_url},
    )
    if result.get("type") != "create_entry":
        raise ApiError(f"the Layercode config flow did not create an entry: {result}")
    return str(result["result"]["entry_id"])


async def let_agent_control_home(api: HomeAssistantApi, entry_id: str) -> None:
    """Walk the entry's options flow as the UI does: "Control Home Assistant" with the Assist
    API, so that the agent's backend gets Home Assistant's tools (the demo lights)."""
    flow = await api.rest("POST", "/api/config/config_entries/options/flow", {"handler": entry_id})
    if flow.get("type") != "form":
        raise ApiError(f"the Layercode options flow did not show its form: {flow}")
    result = await api.rest(
        "POST",
        f"/api/config/config_entries/options/flow/{flow['flow_id']}",
        {"llm_hass_api": ["assist"]},
    )
    if result.get("type") != "create_entry":
        raise ApiError(f"the Layercode options flow did not save: {result}")


async def create_agent_pipeline(api: HomeAssistantApi, entry_id: str, name: str) -> str:
    """An Assist pipeline of the entry's STT, conversation and TTS entities, made preferred.

    "Prefer handling commands locally" is off, so every request reaches the agent.
    """
    entities: list[dict[str, Any]] = await api.command("config/entity_registry/list")
    engines = {
        e["entity_id"].split(".")[0]: e["entity_id"]
        for e in entities
        if e.get("config_entry_id") == entry_id
        and e["entity_id"].split(".")[0] in ("stt", "conversation", "tts")
    }
    if len(engines) != 3:
        raise ApiError(f"the entry has no stt, conversation and tts entities: {engines}")
    pipeline = await api.command(
        "assist_pipeline/pipeline/create",
        name=name,
        language="en",
        conversation_engine=engines["conversation"],
        conversation_language="en",
        prefer_local_intents=False,
        stt_engine=engines["stt"],
        stt_language="en",
        tts_engine=engines["tts"],
        tts_language="en",
        tts_voice=None,
        wake_word_entity=None,
        wake_word_id=None,
    )
    await api.command("assist_pipeline/pipeline/set_preferred", pipeline_id=pipeline["id"])
    return str(pipeline["id"])
