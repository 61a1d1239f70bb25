"""`python -m develop`: the development Home Assistant with a local Layercode agent.

Run by `script/develop` (see its usage). Starts, in order: a fresh runtime directory with the
storage of an onboarded instance, the local agent server (in this process), `hass` (a child
process), then the Layercode entry and its preferred Assist pipeline through Home Assistant's
APIs. Ctrl-C (SIGINT) or SIGTERM stops all of it, in reverse order, at any point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from pathlib import Path
import signal
import sys
import time

import aiohttp

from local_agent_server import HomeControlResponder, LocalAgentServer

from . import AGENT_ID, PASSWORD, REPO, USERNAME
from .hass_api import (
    ApiError,
    HomeAssistantApi,
    add_layercode_entry,
    create_agent_pipeline,
    let_agent_control_home,
)
from .runtime import (
    RuntimeDirError,
    create_storage,
    free_port,
    fresh_runtime,
    log_tail,
    port_in_use,
    start_hass,
    stop_process,
)
from .speech import AUTO, OFFLINE, TONES, Speech, choose_speech
from .voice_demo import run_voice_request

START_TIMEOUT = 180.0
"""Bound on Home Assistant's start (about 10 s here; the first start compiles more)."""
DEMO_REQUEST = "turn on the kitchen light"
PIPELINE_NAME = "Layercode agent"


class StartupError(RuntimeError):
    """Something the user can fix stopped the start; the message says what."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="script/develop", description=__doc__)
    parser.add_argument(
        "--demo",
        action="store_true",
        help=f"play one spoken request ({DEMO_REQUEST!r}) through the pipeline, then stop",
    )
    parser.add_argument("--port", type=int, default=8123, help="Home Assistant (0: any free)")
    parser.add_argument(
        "--server-port", type=int, default=8787, help="the local agent server (0: any free)"
    )
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        default=REPO / ".develop",
        help="made anew on every start (default: .develop in the repository)",
    )
    parser.add_argument(
        "--speech",
        choices=[AUTO, OFFLINE, TONES],
        default=AUTO,
        help="the agent's speech engines (auto: offline where installed, else tones)",
    )
    parser.add_argument(
        "--no-agent-entry",
        action="store_true",
        help="leave the Layercode integration unconfigured (to add it in the UI)",
    )
    parser.add_argument("--say", default=DEMO_REQUEST, help="what --demo says")
    parser.add_argument("--reply-wav", type=Path, help="where --demo saves the agent's reply")
    parser.add_argument(
        "--ready-json", action="store_true", help="print one 'READY {json}' line when ready"
    )
    parser.add_argument("--debug", action="store_true", help="log every protocol detail")
    return parser.parse_args(argv)


async def _start_server(args: argparse.Namespace, speech: Speech) -> LocalAgentServer:
    prepare = getattr(speech.stt, "prepare", None)
    if prepare is not None:
        await prepare()  # load the model now, not on the first turn
    server = LocalAgentServer(
        agent_id=AGENT_ID, stt=speech.stt, tts=speech.tts, backend=HomeControlResponder()
    )
    try:
        await server.start("127.0.0.1", args.server_port)
    except OSError as err:
        raise StartupError(
            f"the local agent server cannot listen on 127.0.0.1:{args.server_port} ({err}); "
            "pass --server-port"
        ) from err
    return server


async def _develop(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> int:
    """Start everything (registering how to stop it on `stack`), then run or wait."""
    started = time.monotonic()
    port = args.port or free_port()
    if port_in_use(port):
        raise StartupError(f"127.0.0.1:{port} is in use (another Home Assistant?): pass --port")
    runtime = args.runtime_dir.resolve()
    try:
        config = fresh_runtime(runtime)
    except RuntimeDirError as err:
        raise StartupError(str(err)) from err
    token = await create_storage(config, runtime / "token")

    speech = choose_speech(args.speech)
    server = await _start_server(args, speech)
    stack.push_async_callback(server.stop)

    console_log = runtime / "hass-console.log"
    hass = await start_hass(config, port, console_log)
    stack.push_async_callback(stop_process, hass)
    base_url = f"http://127.0.0.1:{port}"
    http = await stack.enter_async_context(aiohttp.ClientSession())
    api = HomeAssistantApi(http, base_url, token)
    exited = asyncio.ensure_future(hass.wait())
    stack.callback(exited.cancel)
    try:
        version = await api.wait_until_running(START_TIMEOUT, exited)
    except ApiError as err:
        raise StartupError(
            f"{err}. The end of {console_log}:\n{log_tail(console_log)}\n"
            f"(and {config / 'home-assistant.log'})"
        ) from err
    await api.connect()
    stack.push_async_callback(api.close)

    pipeline_id = None
    if not args.no_agent_entry:
        entry_id = await add_layercode_entry(
            api, AGENT_ID, server.authorize_url, server.websocket_url
        )
        await let_agent_control_home(api, entry_id)
        pipeline_id = await create_agent_pipeline(api, entry_id, PIPELINE_NAME)

    _print_banner(args, version, base_url, server, speech, config, time.monotonic() - started)
    if args.ready_json:
        ready = {
            "url": base_url,
            "username": USERNAME,
            "password": PASSWORD,
            "agent_id": AGENT_ID,
            "authorize_url": server.authorize_url,
            "websocket_url": server.websocket_url,
            "config_dir": str(config),
            "pipeline_id": pipeline_id,
            "offline_speech": speech.offline,
        }
        print(f"READY {json.dumps(ready)}", flush=True)

    if args.demo:
        if pipeline_id is None:
            raise StartupError("--demo needs the Layercode entry (drop --no-agent-entry)")
        pcm, what = await speech.say(args.say)
        print(f"\nSpeaking to the pipeline: {what}, {len(pcm) / 32000:.2f} s")
        print("  time since the end of speech, event, data")
        reply = (args.reply_wav or runtime / "reply.wav").resolve()
        result = await run_voice_request(api, pipeline_id, pcm, reply)
        print(f"\nHeard: {result.heard!r}\nAgent: {result.answer!r}")
        lights = [
            f"{state['attributes'].get('friendly_name', state['entity_id'])} {state['state']}"
            for state in await api.rest("GET", "/api/states")
            if state["entity_id"].startswith("light.")
        ]
        print(f"Lights: {', '.join(lights)}")
        if result.wav is not None:
            print(f"Reply audio: {result.wav} ({result.reply_seconds:.2f} s)")
        if result.error or result.wav is None:
            print(f"The run did not finish: {result.error or 'no TTS audio'}")
            return 1
        return 0

    await exited
    print(f"Home Assistant exited (code {hass.returncode}); the end of {console_log}:")
    print(log_tail(console_log))
    return 1


def _print_banner(
    args: argparse.Namespace,
    version: str,
    url: str,
    server: LocalAgentServer,
    speech: Speech,
    config: Path,
    seconds: float,
) -> None:
    lines = [
        f"Home Assistant {version} is running at {url} (started in {seconds:.0f} s)",
        f"  Log in as {USERNAME} / password {PASSWORD}",
        f"  Local agent server {server.base_url}, agent {AGENT_ID}",
        f"    authorize URL  {server.authorize_url}",
        f"    WebSocket URL  {server.websocket_url}",
        f"    speech         {speech.description}",
    ]
    if args.no_agent_entry:
        lines.append(
            "  Add the agent: Settings > Devices & services > Add integration > Layercode, "
            "with the agent and URLs above"
        )
    else:
        lines.append(
            f"  Assist pipeline '{PIPELINE_NAME}' (preferred): the Assist button at the top "
            "right of Overview; the microphone works in the browser on this URL"
        )
        if speech.offline:
            lines.append(
                "    the agent hears only: hello / what time is it / "
                "turn on|off the kitchen|living room|bedroom light"
            )
    lines.append(f"  Home Assistant's log: {config / 'home-assistant.log'}")
    if not args.demo:
        lines.append("Ctrl-C stops Home Assistant and the agent server.")
    print("\n".join(lines), flush=True)


async def _main(args: argparse.Namespace) -> int:
    """Run `_develop` until it returns or a signal arrives; always stop what it started."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    code = 0
    async with contextlib.AsyncExitStack() as stack:
        work = asyncio.create_task(_develop(args, stack))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not work.done():
            print("\nStopping Home Assistant and the agent server...", flush=True)
            work.cancel()
        try:
            code = await work
        except asyncio.CancelledError:
            code = 0
        except (StartupError, ApiError, RuntimeError) as err:
            print(f"script/develop: {err}", file=sys.stderr, flush=True)
            code = 1
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    print("Stopped.", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.demo and not args.debug:
        # The server's one line per turn: what the agent heard and said, with timings.
        logging.getLogger("local_agent_server").setLevel(logging.INFO)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
