"""SSE parsing of backend replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging

import pytest

from local_agent_server.sse import SseParser, iter_sse_json

STREAM = (
    b": a comment\r\n"
    b'data: {"type":"response.tts","content":"H\xc3\xa9llo"}\r\n'
    b"\r\n"
    b"event: ignored\n"
    b"id: 7\n"
    b'data: {"type":"response.data",\n'
    b'data: "content":{"a":1}}\n'
    b"\n"
    b"data: not json\n\n"
    b"data: [1, 2]\n\n"
    b'data:{"type":"response.tts","content":"no space"}\r\r'
    b'data: {"type":"response.end"}'
)
EXPECTED = [
    {"type": "response.tts", "content": "Héllo"},
    {"type": "response.data", "content": {"a": 1}},
    {"type": "response.tts", "content": "no space"},
    {"type": "response.end"},
]


def _parse(chunks: list[bytes]) -> list[dict[str, object]]:
    parser = SseParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_any_chunking(size: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert _parse(chunks) == EXPECTED
    assert "not JSON" in caplog.text
    assert "not a JSON object" in caplog.text


def test_crlf_split_across_chunks() -> None:
    assert _parse([b'data: {"a":1}\r', b"\n\r", b'\ndata: {"b":2}\r\n\r\n']) == [
        {"a": 1},
        {"b": 2},
    ]


def test_empty_stream() -> None:
    assert _parse([]) == []
    assert _parse([b": only a comment\n\n"]) == []


async def test_iter_sse_json() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(STREAM), 5):
            yield STREAM[i : i + 5]

    assert [event async for event in iter_sse_json(chunks())] == EXPECTED
