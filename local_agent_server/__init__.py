"""A local server that speaks Layercode's protocol, for tests, benchmarks and demos.

It serves the authorize endpoint and the WebSocket like api.layercode.com, drives an agent
backend through signed webhooks and SSE replies like Layercode does, and brings a built-in
backend and deterministic speech engines so that it runs with no network and no models. In
relay mode a LiveLayer agent answers instead, for clients that cannot join LiveKit rooms.
"""

from .backend import EchoResponder, Reply, Responder, SendData, Speak, WebhookBackend
from .detection import EnergySettings
from .engines import SampleCountSpeechToText, SpeechToText, TextToSpeech, ToneTextToSpeech
from .home_control import HomeControlResponder
from .layercode_client import LiveLayerOptions
from .records import (
    ClientFrame,
    ConnectionRecording,
    Conversation,
    TranscriptEntry,
    TurnRecord,
)
from .relay import LiveLayerRelay
from .server import LocalAgentServer
from .signing import SIGNATURE_HEADER, encode_body, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "ClientFrame",
    "ConnectionRecording",
    "Conversation",
    "EchoResponder",
    "EnergySettings",
    "HomeControlResponder",
    "LiveLayerOptions",
    "LiveLayerRelay",
    "LocalAgentServer",
    "Reply",
    "Responder",
    "SampleCountSpeechToText",
    "SendData",
    "Speak",
    "SpeechToText",
    "TextToSpeech",
    "ToneTextToSpeech",
    "TranscriptEntry",
    "TurnRecord",
    "WebhookBackend",
    "encode_body",
    "sign",
    "verify",
]
