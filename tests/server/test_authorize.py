"""The authorize endpoint and the WebSocket's key check."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from local_agent_server import LocalAgentServer
from local_agent_server.layercode_client import SessionConfig, TurnTrigger

from ..conftest import StartServer
from .helpers import Connect, authorize


async def _post(http: aiohttp.ClientSession, server: LocalAgentServer, **kwargs: Any) -> Any:
    async with http.post(server.authorize_url, **kwargs) as response:
        return response.status, await response.json()


async def test_success(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(trigger=TurnTrigger.PUSH_TO_TALK, can_interrupt=False)
    result = await authorize(
        http, server, metadata={"user": "tester"}, sdk_version="2.7.0", unknown_key=[1]
    )
    assert set(result) == {"client_session_key", "conversation_id", "config"}
    assert result["config"]["transcription"] == {
        "trigger": "push_to_talk",
        "can_interrupt": False,
        "automatic": True,
    }
    assert SessionConfig.from_json(result["config"]).trigger is TurnTrigger.PUSH_TO_TALK
    assert result["config"]["vad"]["buffer_frames"] == 10
    conversation = server.conversations[result["conversation_id"]]
    assert conversation.metadata == {"user": "tester"}
    second = await authorize(http, server)
    assert second["conversation_id"] != result["conversation_id"]
    assert second["client_session_key"] != result["client_session_key"]


async def test_api_key(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(api_key="sk_secret")
    body = {"agent_id": "ag_test"}
    assert await _post(http, server, json=body) == (401, {"error": "invalid API key"})
    status, _ = await _post(http, server, json=body, headers={"Authorization": "Bearer nope"})
    assert status == 401
    status, result = await _post(
        http, server, json=body, headers={"Authorization": "Bearer sk_secret"}
    )
    assert status == 200
    assert result["client_session_key"]


async def test_errors(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server()
    status, body = await _post(http, server, json={"agent_id": "ag_other"})
    assert status == 404
    assert "error" in body
    assert (await _post(http, server, data=b"{not json"))[0] == 400
    assert (await _post(http, server, json=["ag_test"]))[0] == 400
    assert (await _post(http, server, json={"metadata": {}}))[0] == 400
    status, body = await _post(
        http, server, json={"agent_id": "ag_test", "conversation_id": "conv_unknown"}
    )
    assert status == 400
    assert "conversation_id" in body["error"]
    assert server.conversations == {}


async def test_resume_keeps_conversation(start_server: StartServer, connect: Connect) -> None:
    server = await start_server()
    client = await connect(server)
    await client.send({"type": "client.response.text", "content": "first"})
    await client.agent_turn()
    await client.ws.close()
    resumed = await connect(server, conversation_id=client.conversation_id)
    assert resumed.conversation_id == client.conversation_id
    await resumed.send({"type": "client.response.text", "content": "second"})
    await resumed.agent_turn()
    await resumed.ws.close()
    conversation = server.conversations[client.conversation_id]
    assert [turn.user_text for turn in conversation.turns] == ["first", "second"]
    assert len(conversation.session_ids) == 2
    assert len(set(conversation.session_ids)) == 2


async def _handshake_status(http: aiohttp.ClientSession, server: LocalAgentServer, key: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await http.ws_connect(server.websocket_url, params={"client_session_key": key})
    return err.value.status


async def test_websocket_keys(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server()
    assert await _handshake_status(http, server, "made_up") == 403
    key = (await authorize(http, server))["client_session_key"]
    ws = await http.ws_connect(server.websocket_url, params={"client_session_key": key})
    await ws.close()
    assert await _handshake_status(http, server, key) == 403


async def test_expired_key(start_server: StartServer, http: aiohttp.ClientSession) -> None:
    server = await start_server(session_key_ttl=0.05)
    key = (await authorize(http, server))["client_session_key"]
    await asyncio.sleep(0.1)
    assert await _handshake_status(http, server, key) == 403
    assert server.recordings == []
