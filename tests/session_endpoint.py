"""LiveLayer's session endpoint as a real HTTP server on 127.0.0.1, told how to answer.

It mints room-1, room-2, ... (one per request), or answers a documented error, or garbage;
every request is recorded for the tests to check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from .conftest import StartApp

AGENT_NAME = "Kitchen agent"
DEFAULT_PATH = "/api/widget/session"


class SessionRequest(NamedTuple):
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class SessionEndpoint:
    """Answers a room (`status` 200), `{"error", "errorCode"}` with `status`, or `raw`."""

    url: str = ""
    status: int = 200
    error_code: str | None = None
    raw: bytes | None = None
    """Sent as it is (an HTML error page, broken JSON), with `status`."""
    name: str | None = AGENT_NAME
    """The agent's name in `agentConfig`; None leaves `agentConfig` out."""
    requests: list[SessionRequest] = field(default_factory=list)

    @property
    def bodies(self) -> list[Any]:
        return [request.body for request in self.requests]

    def succeed(self) -> None:
        """Mint rooms again."""
        self.status, self.error_code, self.raw = 200, None, None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            SessionRequest(request.path, dict(request.headers), await request.json())
        )
        if self.raw is not None:
            return web.Response(status=self.status, body=self.raw, content_type="text/html")
        if self.status != 200:
            return web.json_response(
                {"error": f"scripted {self.error_code}", "errorCode": self.error_code},
                status=self.status,
            )
        n = len(self.requests)
        answer: dict[str, Any] = {
            "token": f"token-{n}",
            "url": f"wss://rooms.test/{n}",
            "roomName": f"room-{n}",
        }
        if self.name is not None:
            answer["agentConfig"] = {"name": self.name, "avatarImageUrl": None}
        return web.json_response(answer)


async def serve_session_endpoint(start_app: StartApp, *extra_paths: str) -> SessionEndpoint:
    """A SessionEndpoint answering at the default path, and at each of `extra_paths`."""
    endpoint = SessionEndpoint()
    app = web.Application()
    for path in (DEFAULT_PATH, *extra_paths):
        app.router.add_post(path, endpoint.handle)
    endpoint.url = await start_app(app)
    return endpoint
