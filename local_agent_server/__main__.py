"""Run the server from a shell: `python -m local_agent_server --port 8787`, Ctrl-C to stop.

Each finished turn is logged (user text, agent text, timings). Without `--webhook-url` the
built-in echo backend answers; with one, the server drives that backend like Layercode would.
`--speech offline` hears with pocketsphinx (the demo's sentences) and speaks with espeak-ng;
the default `tones` pair needs nothing installed and hears only how long the user spoke;
`auto` is offline where both engines are installed, tones otherwise. With `--relay-livelayer`
a LiveLayer agent answers every connection instead (relay.py): Home Assistant still authorizes
with `--agent-id`, and only this machine needs LiveKit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from .backend import EchoResponder
from .engines import SpeechToText, TextToSpeech
from .layercode_client import DEFAULT_SESSION_ENDPOINT, LiveLayerOptions, TurnTrigger
from .offline_speech import EspeakTextToSpeech, PocketsphinxSpeechToText, SpeechEngineMissing
from .relay import LiveLayerRelay
from .server import LocalAgentServer

_LOGGER = logging.getLogger(__name__)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_agent_server", description="A local Layercode-compatible server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--agent-id", default="ag_local")
    parser.add_argument("--api-key", help="require this bearer token on authorize")
    parser.add_argument(
        "--trigger", choices=[t.value for t in TurnTrigger], default=TurnTrigger.AUTOMATIC.value
    )
    parser.add_argument("--no-interrupt", action="store_true", help="the user cannot barge in")
    parser.add_argument("--welcome", help="what the built-in backend says on connect")
    parser.add_argument("--webhook-url", help="an agent backend to use instead of the built-in one")
    parser.add_argument("--webhook-secret", default="whsec_local")
    parser.add_argument(
        "--speech",
        choices=["tones", "offline", "auto"],
        default="tones",
        help="tones: deterministic test engines; offline: pocketsphinx and espeak-ng; "
        "auto: offline if both are installed",
    )
    parser.add_argument("--debug", action="store_true", help="log every detail")
    relay = parser.add_argument_group(
        "relay", "answer with a LiveLayer agent instead of a webhook backend"
    )
    relay.add_argument(
        "--relay-livelayer", metavar="BASE_URL", help="LiveLayer's base URL, https://livelayer.app"
    )
    relay.add_argument("--livelayer-agent-id", metavar="ID", help="the LiveLayer agent's ID")
    relay.add_argument(
        "--livelayer-api-key", metavar="KEY", help="sent as x-api-key to the session endpoint"
    )
    relay.add_argument(
        "--livelayer-session-endpoint",
        metavar="PATH_OR_URL",
        help=f"default {DEFAULT_SESSION_ENDPOINT} under the base URL",
    )
    args = parser.parse_args(argv)
    livelayer = (args.livelayer_agent_id, args.livelayer_api_key, args.livelayer_session_endpoint)
    if args.relay_livelayer is None and any(value is not None for value in livelayer):
        parser.error("the --livelayer-* options need --relay-livelayer")
    if args.relay_livelayer is not None and not args.livelayer_agent_id:
        parser.error("--relay-livelayer needs --livelayer-agent-id")
    if args.relay_livelayer is not None and args.webhook_url is not None:
        parser.error("--relay-livelayer and --webhook-url exclude each other")
    return args


def _relay(args: argparse.Namespace) -> LiveLayerRelay | None:
    """The relay `--relay-livelayer` asks for, on the real LiveKit SDK; None without it."""
    if args.relay_livelayer is None:
        return None
    return LiveLayerRelay(
        LiveLayerOptions(
            agent_id=args.livelayer_agent_id,
            base_url=args.relay_livelayer,
            api_key=args.livelayer_api_key,
            session_endpoint=args.livelayer_session_endpoint,
        )
    )


async def _engines(speech: str) -> tuple[SpeechToText | None, TextToSpeech | None]:
    """The engines `--speech` names, loaded now so that a missing one fails at start."""
    if speech == "tones":
        return None, None  # the server's deterministic defaults
    stt = PocketsphinxSpeechToText()
    tts = EspeakTextToSpeech()
    try:
        tts.program()
        await stt.prepare()
    except SpeechEngineMissing as err:
        if speech != "auto":
            raise
        _LOGGER.warning("Speaking in tones: %s", err)
        return None, None
    return stt, tts


async def _serve(args: argparse.Namespace) -> None:
    relay = _relay(args)
    stt, tts = (None, None) if relay else await _engines(args.speech)
    server = LocalAgentServer(
        agent_id=args.agent_id,
        api_key=args.api_key,
        trigger=TurnTrigger(args.trigger),
        can_interrupt=not args.no_interrupt,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        backend=None if args.webhook_url or relay else EchoResponder(welcome=args.welcome),
        stt=stt,
        tts=tts,
        relay=relay,
    )
    await server.start(args.host, args.port)
    print(f"authorize: {server.authorize_url}\nwebsocket: {server.websocket_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args))
    except SpeechEngineMissing as err:
        raise SystemExit(f"--speech {args.speech}: {err}") from None


if __name__ == "__main__":
    main()
