"""LiveLayer's session endpoint: the request that mints a LiveKit room token for an agent."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import json
from typing import Any

import aiohttp
from yarl import URL

from ..errors import LayercodeConnectionError, LayercodeError

DEFAULT_SESSION_ENDPOINT = "/api/widget/session"
SESSION_TIMEOUT = 10.0


class ErrorCode(StrEnum):
    """Why a LiveLayer session failed: the endpoint's documented codes and the session's own."""

    KEY_WRONG_ORG = "key_wrong_org"
    KEY_EXPIRED = "key_expired"
    AGENT_HAS_NO_ORG = "agent_has_no_org"
    AGENT_TIMEOUT = "AGENT_TIMEOUT"
    CONNECT_FAILED = "CONNECT_FAILED"
    ROOM_DISCONNECT = "ROOM_DISCONNECT"


AUTH_ERROR_CODES = frozenset({ErrorCode.KEY_WRONG_ORG, ErrorCode.KEY_EXPIRED})
"""Codes that only new credentials fix (Home Assistant asks for them again)."""


class LiveLayerError(LayercodeError):
    """A LiveLayer failure; `code` is an ErrorCode value or the endpoint's own code, if any."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def needs_new_credentials(self) -> bool:
        return self.code in AUTH_ERROR_CODES


class LiveLayerConnectionError(LiveLayerError, LayercodeConnectionError):
    """The session endpoint or the room could not be reached: retry later."""


@dataclass(frozen=True, slots=True)
class LiveLayerOptions:
    """What a LiveLayer session needs, as the browser SDK's `LiveKitSession` takes it."""

    agent_id: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    session_endpoint: str | None = None
    """A path under `base_url` or a full URL; default `/api/widget/session`."""
    session_body: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Extra JSON fields merged into the session request (the user's own auth context)."""
    timeout: float = SESSION_TIMEOUT

    @property
    def session_url(self) -> URL:
        """The session endpoint's absolute URL."""
        endpoint = self.session_endpoint or DEFAULT_SESSION_ENDPOINT
        if URL(endpoint).is_absolute():
            return URL(endpoint)
        return URL(self.base_url.rstrip("/") + "/" + endpoint.lstrip("/"))


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """How the agent presents itself (`agentConfig` in the session answer)."""

    name: str | None = None
    avatar_image_url: str | None = None
    idle_loop_url: str | None = None


@dataclass(frozen=True, slots=True)
class SessionGrant:
    """The session endpoint's answer: where the room is and the token to join it."""

    token: str = field(repr=False)
    url: str
    room_name: str
    agent_config: AgentConfig = AgentConfig()


async def request_session(
    http: aiohttp.ClientSession, options: LiveLayerOptions, prior_room_name: str | None = None
) -> SessionGrant:
    """POST the session request; `prior_room_name` resumes that room's conversation."""
    body: dict[str, Any] = {"agentId": options.agent_id}
    if prior_room_name:
        body["priorRoomName"] = prior_room_name
    body.update(options.session_body)
    headers = {"Content-Type": "application/json"}
    if options.api_key:
        headers["x-api-key"] = options.api_key
    try:
        async with asyncio.timeout(options.timeout):
            async with http.post(options.session_url, json=body, headers=headers) as response:
                text = await response.text()
                status = response.status
    except TimeoutError as err:
        raise LiveLayerConnectionError(
            "The session endpoint did not answer in time", ErrorCode.CONNECT_FAILED
        ) from err
    except aiohttp.ClientError as err:
        raise LiveLayerConnectionError(
            f"Cannot reach the session endpoint: {err}", ErrorCode.CONNECT_FAILED
        ) from err
    answer = _json_object(text)
    if not 200 <= status < 300:
        raise _session_error(status, answer, text)
    return _grant(answer)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _session_error(status: int, answer: dict[str, Any] | None, text: str) -> LiveLayerError:
    message = answer.get("error") if answer else None
    code = answer.get("errorCode") if answer else None
    detail = str(message) if message else (text.strip()[:200] or "no details")
    error = f"The session endpoint answered HTTP {status}: {detail}"
    code = str(code) if code else None
    if status >= 500 or status == 429:
        return LiveLayerConnectionError(error, code, status)
    return LiveLayerError(error, code, status)


def _grant(answer: dict[str, Any] | None) -> SessionGrant:
    if answer is None:
        raise LiveLayerError("The session endpoint did not answer with a JSON object")
    token, url, room = answer.get("token"), answer.get("url"), answer.get("roomName")
    missing = [
        name
        for name, value in (("token", token), ("url", url), ("roomName", room))
        if not isinstance(value, str) or not value
    ]
    if missing:
        raise LiveLayerError(f"The session answer lacks {', '.join(missing)}")
    assert isinstance(token, str) and isinstance(url, str) and isinstance(room, str)
    config = answer.get("agentConfig")
    config = config if isinstance(config, dict) else {}
    return SessionGrant(
        token=token,
        url=url,
        room_name=room,
        agent_config=AgentConfig(
            name=_optional_str(config.get("name")),
            avatar_image_url=_optional_str(config.get("avatarImageUrl")),
            idle_loop_url=_optional_str(config.get("idleLoopUrl")),
        ),
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
