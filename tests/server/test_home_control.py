"""The home-control backend: tool calls over the data channel, results awaited (bounded)."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

from local_agent_server import SendData, Speak
from local_agent_server.home_control import HomeControlResponder, word_intent


def test_word_intent() -> None:
    """Simple words become HassTurnOn / HassTurnOff with the name."""
    assert word_intent("turn on the kitchen light") == ("HassTurnOn", {"name": "kitchen light"})
    assert word_intent("Please turn off porch light.") == ("HassTurnOff", {"name": "porch light"})
    assert word_intent("what time is it") is None


async def _turn(responder: HomeControlResponder, text: str, result: Any = None) -> list[Any]:
    """One message turn; `result` (if any) is answered by a data webhook after the call."""
    replies: list[Any] = []
    event = {"type": "message", "text": text, "turn_id": "t1"}
    async with aclosing(responder.reply(event)) as stream:
        async for reply in stream:
            replies.append(reply)
            if isinstance(reply, SendData) and result is not None:
                answer = {"type": "ha.tool_result", "id": reply.content["id"], **result}
                asyncio.get_running_loop().call_soon(
                    asyncio.ensure_future, responder.data({"type": "data", "data": answer})
                )
    return replies


async def test_tool_call_waits_for_its_result() -> None:
    """The tools are kept; the call goes out as data, the outcome is spoken after its result."""
    responder = HomeControlResponder()
    tools = {"type": "ha.tools", "version": 1, "prompt": "P", "tools": [{"name": "HassTurnOn"}]}
    assert await responder.data({"type": "data", "data": tools}) == {"ok": True}
    assert responder.tools == [{"name": "HassTurnOn"}]
    assert responder.prompt == "P"

    call, spoken = await _turn(responder, "turn on the kitchen light", {"result": {}})
    assert call == SendData(
        {
            "type": "ha.tool_call",
            "id": "call_1",
            "name": "HassTurnOn",
            "arguments": {"name": "kitchen light"},
        }
    )
    assert spoken == Speak("Done.")

    _call, spoken = await _turn(responder, "turn off the kitchen light", {"error": "no"})
    assert spoken == Speak("That did not work: no")


async def test_missing_result_is_bounded() -> None:
    """No result within the timeout: the turn still ends, saying so."""
    responder = HomeControlResponder(result_timeout=0.05)
    _call, spoken = await _turn(responder, "turn on the kitchen light")
    assert spoken == Speak("Home Assistant did not answer.")
    # A late result for a call nobody waits for any more is ignored.
    late = {"type": "ha.tool_result", "id": "call_1", "result": {}}
    assert await responder.data({"type": "data", "data": late}) == {"ok": True}


async def test_other_messages_are_echoed() -> None:
    """Text without a command is answered as the echo backend does; session.start is silent."""
    responder = HomeControlResponder()
    assert await _turn(responder, "hello") == [Speak("You said: hello")]
    assert [r async for r in responder.reply({"type": "session.start", "turn_id": "t0"})] == []
