"""Authorize a Layercode session: the first hop, before the WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
import json
from typing import Any

import aiohttp

from .config import Authorization, SessionConfig
from .errors import (
    InvalidResponseError,
    LayercodeConnectionError,
    LayercodeTimeoutError,
    authorize_error,
)

LAYERCODE_AUTHORIZE_URL = "https://api.layercode.com/v1/agents/web/authorize_session"
SDK_VERSION = "2.7.0"
"""What the official browser SDK 2.8.10 reports; backends may check it."""
AUTHORIZE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Authorizer:
    """Everything needed to authorize a session, reusable for every (re)connect.

    `api_key` is sent as a bearer token: Layercode's own endpoint wants the account key;
    a user's own backend may want its own token or nothing.
    """

    url: str
    agent_id: str
    api_key: str | None = field(default=None, repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = AUTHORIZE_TIMEOUT

    async def __call__(
        self, http: aiohttp.ClientSession, conversation_id: str | None = None
    ) -> Authorization:
        """POST the authorize request; resume `conversation_id` when given."""
        body: dict[str, Any] = {
            "agent_id": self.agent_id,
            "metadata": dict(self.metadata),
            "sdk_version": SDK_VERSION,
        }
        if conversation_id:
            body["conversation_id"] = conversation_id
        headers = {"Content-Type": "application/json", **self.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with asyncio.timeout(self.timeout):
                async with http.post(self.url, json=body, headers=headers) as response:
                    text = await response.text()
                    status = response.status
        except TimeoutError as err:
            raise LayercodeTimeoutError(
                f"Authorize at {self.url} timed out after {self.timeout:g} s"
            ) from err
        except aiohttp.ClientError as err:
            raise LayercodeConnectionError(f"Cannot reach {self.url}: {err}") from err
        if status >= 300:
            raise authorize_error(status, _error_message(text, status))
        return parse_authorization(text)


def _error_message(text: str, status: int) -> str:
    """The server's own words: `{"error": ...}` when it sent JSON, else a short excerpt."""
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        for key in ("error", "message", "detail"):
            if isinstance(obj.get(key), str):
                return str(obj[key])
    excerpt = " ".join(text.split())[:200]
    return excerpt or f"HTTP {status}"


def parse_authorization(text: str) -> Authorization:
    """Read a success reply: snake or camel case; `conversation_id` or the older `session_id`."""
    try:
        obj = json.loads(text)
    except ValueError as err:
        raise InvalidResponseError("The authorize reply is not JSON") from err
    if not isinstance(obj, dict):
        raise InvalidResponseError("The authorize reply is not a JSON object")
    key = _first_str(obj, "client_session_key", "clientSessionKey")
    if not key:
        raise InvalidResponseError("The authorize reply has no client_session_key")
    conversation_id = _first_str(
        obj, "conversation_id", "conversationId", "session_id", "sessionId"
    )
    if not conversation_id:
        raise InvalidResponseError("The authorize reply has no conversation_id")
    return Authorization(
        client_session_key=key,
        conversation_id=conversation_id,
        config=SessionConfig.from_json(obj.get("config")),
    )


def _first_str(obj: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None
