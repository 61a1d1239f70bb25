"""The server's side of the third hop: signed webhook POSTs to the agent backend."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
import json
import time
from typing import Any

import aiohttp

from .signing import SIGNATURE_HEADER, encode_body, sign
from .sse import iter_sse_json


class WebhookError(Exception):
    """The backend answered with an error status or something that is not its protocol."""


WEBHOOK_ERRORS = (WebhookError, aiohttp.ClientError, TimeoutError)
"""Everything a webhook call can fail with: status, network, bounded waits."""


class WebhookClient:
    """Posts events to one backend URL, signed with its secret."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        secret: str,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        """`read_timeout` bounds each wait for reply bytes, so a long stream may go on."""
        self._http = http
        self._url = url
        self._secret = secret
        self._stream_timeout = aiohttp.ClientTimeout(
            sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._call_timeout = aiohttp.ClientTimeout(
            total=connect_timeout + read_timeout, sock_connect=connect_timeout
        )

    @asynccontextmanager
    async def stream(
        self, event: Mapping[str, Any], headers: Mapping[str, str]
    ) -> AsyncIterator[AsyncGenerator[dict[str, Any]]]:
        """POST `event` and iterate the SSE reply; leaving early aborts the request."""
        async with self._http.post(
            self._url, **self._request(event, headers), timeout=self._stream_timeout
        ) as response:
            if response.status >= 300:
                raise WebhookError(f"HTTP {response.status}")
            try:
                async with aclosing(iter_sse_json(response.content.iter_any())) as events:
                    yield events
            finally:
                response.close()

    async def call(self, event: Mapping[str, Any], headers: Mapping[str, str]) -> Any:
        """POST `event` and return its JSON reply (None for an empty body)."""
        async with self._http.post(
            self._url, **self._request(event, headers), timeout=self._call_timeout
        ) as response:
            body = await response.read()
        if response.status >= 300:
            raise WebhookError(f"HTTP {response.status}")
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as err:
            raise WebhookError(f"reply is not JSON: {body[:200]!r}") from err

    def _request(self, event: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        body = encode_body(event)
        signature = sign(self._secret, body, int(time.time()))
        return {
            "data": body,
            "headers": {
                **headers,
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature,
            },
        }
