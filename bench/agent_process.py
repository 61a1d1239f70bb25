"""The local agent server in a process of its own, pinned to its own core, with timestamps.

Why a process: the figures are about the client (and Home Assistant); the local server's own
work (webhooks, SSE, tone synthesis) must neither share the measured event loop nor count in
its CPU time. `time.monotonic()` is the system-wide CLOCK_MONOTONIC on Linux, so stamps taken
here compare directly with stamps taken in the measuring process.

What it stamps (all `time.monotonic()`), without touching local_agent_server's files:
- `audio_sent`: each `response.audio` frame, just before the server hands it to its socket,
  keyed by turn id and delta id.
- `last_audio_received`: per user turn (at `vad_end`), when the turn's last `client.audio`
  frame came off the socket.
- a bare WebSocket echo (`echo_url`): when each frame came in and when its echo went out, the
  baseline the latency section compares the client with. Next to it, `/sink` drops what it
  gets and `/replay` sends back what it got on `go`: the bare socket's CPU cost per direction.

Run as `python -m bench.agent_process --dump FILE`; it prints one JSON line with its URLs,
serves until its stdin closes, then writes the stamps to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict, dataclass, field
import json
import logging
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

from aiohttp import WSMsgType, web

from local_agent_server import EchoResponder, LocalAgentServer
from local_agent_server.session import Session

from .common import AGENT_CPU, pin

REPO = Path(__file__).resolve().parents[1]
_AUDIO_IDS = re.compile(r'"delta_id": (\d+), "turn_id": "([^"]+)"')
_START_TIMEOUT = 30.0


@dataclass(slots=True)
class Stamps:
    """What the server process saw, in monotonic seconds."""

    audio_sent: dict[str, float] = field(default_factory=dict)
    """`<turn_id>/<delta_id>` -> when the `response.audio` frame went to the socket."""
    last_audio_received: list[float | None] = field(default_factory=list)
    """Per user turn, in order: when its last `client.audio` frame arrived."""
    echo_received: list[float] = field(default_factory=list)
    echo_sent: list[float] = field(default_factory=list)


STAMPS = Stamps()


def _instrument() -> None:
    """Wrap two Session methods to take the stamps; the server's behaviour is unchanged."""
    send_text = Session.send_text
    on_frame = Session._on_frame
    last_audio: dict[int, float] = {}

    async def stamped_send_text(self: Session, text: str) -> None:
        sent = time.monotonic()
        await send_text(self, text)
        if text.startswith('{"type": "response.audio"'):
            match = _AUDIO_IDS.search(text, max(0, len(text) - 200))
            if match:
                STAMPS.audio_sent[f"{match[2]}/{match[1]}"] = sent

    async def stamped_on_frame(self: Session, raw: str) -> None:
        received = time.monotonic()
        if raw.startswith('{"type":"client.audio"'):
            last_audio[id(self)] = received
        elif raw.startswith('{"type":"vad_events"') and '"vad_end"' in raw:
            STAMPS.last_audio_received.append(last_audio.pop(id(self), None))
        await on_frame(self, raw)

    Session.send_text = stamped_send_text  # type: ignore[method-assign]
    Session._on_frame = stamped_on_frame  # type: ignore[method-assign]


async def _echo(request: web.Request) -> web.WebSocketResponse:
    """A bare aiohttp WebSocket that sends every text frame straight back."""
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            continue
        STAMPS.echo_received.append(time.monotonic())
        sent = time.monotonic()
        await ws.send_str(message.data)
        STAMPS.echo_sent.append(sent)
    return ws


async def _sink(request: web.Request) -> web.WebSocketResponse:
    """A bare aiohttp WebSocket that reads and drops every frame (socket cost of sending)."""
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for _message in ws:
        pass
    return ws


async def _replay(request: web.Request) -> web.WebSocketResponse:
    """Collects text frames until `go`, then sends them all back and `done` (receive cost)."""
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    frames: list[str] = []
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            continue
        if message.data != "go":
            frames.append(message.data)
            continue
        for frame in frames:
            await ws.send_str(frame)
        await ws.send_str("done")
        frames.clear()
    return ws


async def _serve(args: argparse.Namespace) -> None:
    server = LocalAgentServer(
        agent_id=args.agent_id,
        api_key=args.api_key,
        backend=EchoResponder()
        if args.answer is None
        else EchoResponder(answer=lambda _text: args.answer),
    )
    await server.start()
    echo_app = web.Application()
    echo_app.router.add_get("/echo", _echo)
    echo_app.router.add_get("/sink", _sink)
    echo_app.router.add_get("/replay", _replay)
    echo_runner = web.AppRunner(echo_app, access_log=None)
    await echo_runner.setup()
    await web.TCPSite(echo_runner, "127.0.0.1", 0).start()
    echo_port = echo_runner.addresses[0][1]
    print(
        json.dumps(
            {
                "authorize_url": server.authorize_url,
                "websocket_url": server.websocket_url,
                "echo_url": f"ws://127.0.0.1:{echo_port}/echo",
                "agent_id": args.agent_id,
                "api_key": args.api_key,
            }
        ),
        flush=True,
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    finally:
        await echo_runner.cleanup()
        await server.stop()


def _write_stamps(path: str) -> None:
    Path(path).write_text(json.dumps(asdict(STAMPS)), encoding="utf-8")


def main() -> None:
    """Serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--answer", help="what the agent always answers (default: an echo)")
    parser.add_argument("--agent-id", default="ag_bench")
    parser.add_argument("--api-key", default="sk_bench")
    parser.add_argument("--cpu", type=int, default=AGENT_CPU)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cpu >= 0:
        pin(args.cpu)
    _instrument()
    try:
        asyncio.run(_serve(args))
    finally:
        _write_stamps(args.dump)


# -- the measuring side ----------------------------------------------------------------------


@dataclass(slots=True)
class AgentProcess:
    """A running `python -m bench.agent_process`, seen from the process that measures."""

    authorize_url: str
    websocket_url: str
    echo_url: str
    agent_id: str
    api_key: str
    _process: subprocess.Popen[bytes]
    _dump: Path

    @classmethod
    def start(
        cls,
        *,
        answer: str | None = "OK, done.",
        agent_id: str = "ag_bench",
        api_key: str = "sk_bench",
        cpu: int = AGENT_CPU,
    ) -> AgentProcess:
        """Start it and wait for its URLs (blocking: it takes well under a second)."""
        dump = Path(tempfile.mkdtemp(prefix="bench-agent-")) / "stamps.json"
        process = subprocess.Popen(  # noqa: S603  # our own module, fixed arguments
            [
                sys.executable,
                "-m",
                "bench.agent_process",
                "--dump",
                str(dump),
                *(["--answer", answer] if answer is not None else []),
                "--agent-id",
                agent_id,
                "--api-key",
                api_key,
                "--cpu",
                str(cpu),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise RuntimeError("the agent process exited before it served")
        info = json.loads(line)
        return cls(
            info["authorize_url"],
            info["websocket_url"],
            info["echo_url"],
            info["agent_id"],
            info["api_key"],
            process,
            dump,
        )

    def stop(self) -> Stamps:
        """Close its stdin, wait for it to finish, and return its stamps."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        try:
            raw: dict[str, Any] = json.loads(self._dump.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Stamps()
        finally:
            self._dump.unlink(missing_ok=True)
            self._dump.parent.rmdir()
        return Stamps(**raw)

    async def async_stop(self) -> Stamps:
        """`stop` without blocking the event loop (the server closes its sockets first)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.stop)


if __name__ == "__main__":
    main()
