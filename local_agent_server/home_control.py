"""A backend that controls Home Assistant through the integration's tools (data channel).

This is how an LLM-driven backend uses home control, with a word rule in place of the model:

1. The integration sends ``{"type": "ha.tools", "version": 1, "prompt", "tools": [...]}`` as a
   ``data`` webhook (the client's ``client.response.data``). The backend keeps the tools (and
   would give the prompt and the tools' JSON Schemas to its model).
2. For a user ``message`` the model decides to call a tool. The backend sends the call to the
   client as ``response.data`` ``{"type": "ha.tool_call", "id", "name", "arguments"}`` and
   keeps the turn's stream open.
3. Home Assistant runs the tool and answers with a ``data`` webhook ``{"type":
   "ha.tool_result", "id", "result"}`` or ``{..., "error"}``. The backend waits for it (bounded:
   a client that never answers must not hold the turn) and gives it back to the model.
4. The model's answer is spoken (``response.tts``) and the turn ends.

`HomeControlResponder` turns "turn on/off (the) <name>" into ``HassTurnOn`` / ``HassTurnOff``
with that name; `intent` can map other texts (for example a voice transcript) to a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
import itertools
import re
from typing import Any

from .backend import Reply, SendData, Speak

RESULT_TIMEOUT = 10.0
"""Seconds to wait for a tool's result before answering without it."""

_COMMAND = re.compile(r"\bturn (on|off) (?:the )?(.+?)[.!?]*$", re.IGNORECASE)

type ToolCall = tuple[str, dict[str, Any]]


def word_intent(text: str) -> ToolCall | None:
    """'turn on the kitchen light' -> ("HassTurnOn", {"name": "kitchen light"})."""
    if (match := _COMMAND.search(text.strip())) is None:
        return None
    tool = "HassTurnOn" if match.group(1).lower() == "on" else "HassTurnOff"
    return tool, {"name": match.group(2)}


class HomeControlResponder:
    """Answers user messages by calling Home Assistant's tools over the data channel."""

    def __init__(
        self,
        *,
        intent: Callable[[str], ToolCall | None] = word_intent,
        result_timeout: float = RESULT_TIMEOUT,
    ) -> None:
        self._intent = intent
        self._result_timeout = result_timeout
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.tools: list[dict[str, Any]] = []
        """The tools of the latest `ha.tools` message."""
        self.prompt = ""
        self.results: list[dict[str, Any]] = []
        """Every `ha.tool_result` received."""

    async def reply(self, event: Mapping[str, Any]) -> AsyncGenerator[Reply]:
        """Call the tool the message asks for, wait for its result, say the outcome."""
        if event.get("type") != "message":
            return
        text = str(event.get("text", ""))
        if (call := self._intent(text)) is None:
            yield Speak(f"You said: {text}")
            return
        name, arguments = call
        call_id = f"call_{next(self._ids)}"
        result = asyncio.get_running_loop().create_future()
        self._pending[call_id] = result
        try:
            yield SendData(
                {"type": "ha.tool_call", "id": call_id, "name": name, "arguments": arguments}
            )
            async with asyncio.timeout(self._result_timeout):
                outcome = await result
        except TimeoutError:
            yield Speak("Home Assistant did not answer.")
            return
        finally:
            self._pending.pop(call_id, None)
        if "error" in outcome:
            yield Speak(f"That did not work: {outcome['error']}")
        else:
            yield Speak("Done.")

    async def data(self, event: Mapping[str, Any]) -> Any:
        """Keep the offered tools; hand a tool's result to the turn waiting for it."""
        data = event.get("data")
        if not isinstance(data, dict):
            return {"ok": True}
        if data.get("type") == "ha.tools":
            self.tools = list(data.get("tools") or [])
            self.prompt = str(data.get("prompt") or "")
        elif data.get("type") == "ha.tool_result":
            self.results.append(data)
            waiting = self._pending.get(str(data.get("id")))
            if waiting is not None and not waiting.done():
                waiting.set_result(data)
        return {"ok": True}
