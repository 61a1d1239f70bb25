"""Server-sent events from an agent backend, parsed into the JSON objects they carry.

Backends reply to `session.start` and `message` webhooks with `data: <json>` events. The
parser follows the SSE rules that matter for them: any line ending (`\\n`, `\\r\\n`, `\\r`, even
split across chunks), comment lines, several `data:` lines joined into one event, and a last
event that ends without a blank line (a backend that just closes the stream).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
import json
import logging
import re
from typing import Any

_LOGGER = logging.getLogger(__name__)

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SseParser:
    """Incremental parser: feed it chunks of any size, get back complete events."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """Add bytes; return the events they complete."""
        self._buffer += chunk
        events: list[dict[str, Any]] = []
        while match := _LINE_END.search(self._buffer):
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # may be the first half of a \r\n split across chunks
            line = bytes(self._buffer[: match.start()])
            del self._buffer[: match.end()]
            self._line(line.decode(errors="replace"), events)
        return events

    def close(self) -> list[dict[str, Any]]:
        """The stream ended: return whatever event it left unterminated."""
        events: list[dict[str, Any]] = []
        if self._buffer:
            self._line(bytes(self._buffer).rstrip(b"\r").decode(errors="replace"), events)
            self._buffer.clear()
        self._dispatch(events)
        return events

    def _line(self, line: str, events: list[dict[str, Any]]) -> None:
        if not line:
            self._dispatch(events)
            return
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        # Comments (empty name) and `event:` / `id:` / `retry:` carry nothing a backend uses.

    def _dispatch(self, events: list[dict[str, Any]]) -> None:
        if not self._data:
            return
        text = "\n".join(self._data)
        self._data.clear()
        try:
            event = json.loads(text)
        except ValueError:
            _LOGGER.warning("Skipping an SSE event that is not JSON: %.200r", text)
            return
        if not isinstance(event, dict):
            _LOGGER.warning("Skipping an SSE event that is not a JSON object: %.200r", text)
            return
        events.append(event)


async def iter_sse_json(chunks: AsyncIterable[bytes]) -> AsyncGenerator[dict[str, Any]]:
    """The JSON objects of an SSE stream (e.g. `response.content.iter_any()`), in order."""
    parser = SseParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    for event in parser.close():
        yield event
