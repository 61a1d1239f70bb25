"""Text-to-speech: the agent's own recorded voice for the turn, never a re-synthesis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import logging
from typing import Any

from homeassistant.components import tts
from homeassistant.components.tts.entity import TTSAudioRequest, TTSAudioResponse
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import ulid as ulid_util

from . import LayercodeConfigEntry
from .client import AgentTurn
from .client.audio import AGENT_RATE, PcmConverter, streaming_wav_header
from .entity import LayercodeEntity
from .runtime import REPLY_TIMEOUT
from .voice import SUPPORTED_LANGUAGES, current_conversation_id

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0
TURN_OPTION = "layercode_turn"
"""A fresh value per TTS stream. It is part of Home Assistant's cache key, so that the same
reply text on two turns never replays the first turn's audio from the cache."""
SILENCE_SECONDS = 0.3

TTS_DESCRIPTION = EntityDescription(key="tts", translation_key="agent_voice")
"""Home Assistant names TTS cache files after the entity, so it needs a name of its own."""


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the text-to-speech entity."""
    async_add_entities([LayercodeTextToSpeech(entry, TTS_DESCRIPTION)])


class LayercodeTextToSpeech(LayercodeEntity, tts.TextToSpeechEntity):
    """Plays the agent's audio of the running conversation's turn, as streaming WAV.

    Text the agent did not speak (announcements, local intents, error replies) goes to the
    fallback engine from the options, or becomes a short silence.
    """

    _attr_default_language = "en"
    _attr_supported_languages = SUPPORTED_LANGUAGES

    @property
    def supported_options(self) -> list[str]:
        """The output formats it produces itself, and the per-stream cache buster."""
        return [
            tts.ATTR_PREFERRED_FORMAT,
            tts.ATTR_PREFERRED_SAMPLE_RATE,
            tts.ATTR_PREFERRED_SAMPLE_CHANNELS,
            tts.ATTR_PREFERRED_SAMPLE_BYTES,
            TURN_OPTION,
        ]

    @property
    def default_options(self) -> dict[str, Any]:
        """A new cache key for every stream (see TURN_OPTION)."""
        return {TURN_OPTION: ulid_util.ulid_now()}

    async def async_stream_tts_audio(self, request: TTSAudioRequest) -> TTSAudioResponse:
        """The agent's audio for the turn being spoken, else the fallback."""
        first = await anext(aiter(request.message_gen), "")
        turn = self.runtime.async_claim_agent_audio(current_conversation_id(), first)
        if turn is not None:
            return TTSAudioResponse("wav", self._agent_wav(turn, request.options))
        message = first + "".join([chunk async for chunk in request.message_gen])
        if not message.strip() and (turn := await self._welcome()) is not None:
            return TTSAudioResponse("wav", self._agent_wav(turn, request.options))
        return await self._fallback(message, request.language)

    async def _welcome(self) -> AgentTurn | None:
        """Nothing to say: a conversation is starting, and the agent speaks first."""
        try:
            return await self.runtime.async_welcome()
        except HomeAssistantError as err:
            _LOGGER.warning("Cannot start a conversation with the agent: %s", err)
            return None

    async def async_get_tts_audio(
        self, message: str, language: str, options: dict[str, Any]
    ) -> tts.TtsAudioType:
        """The same as a stream, collected (for callers that do not stream)."""

        async def message_gen() -> AsyncGenerator[str]:
            yield message

        response = await self.async_stream_tts_audio(
            TTSAudioRequest(language, options, message_gen())
        )
        return response.extension, b"".join([chunk async for chunk in response.data_gen])

    async def _agent_wav(self, turn: AgentTurn, options: dict[str, Any]) -> AsyncGenerator[bytes]:
        """Streaming WAV in the requested rate, channels and width, as the agent speaks."""
        rate = int(options.get(tts.ATTR_PREFERRED_SAMPLE_RATE) or AGENT_RATE)
        channels = int(options.get(tts.ATTR_PREFERRED_SAMPLE_CHANNELS) or 1)
        width = int(options.get(tts.ATTR_PREFERRED_SAMPLE_BYTES) or 2)
        converter = PcmConverter(AGENT_RATE, rate, channels, width)
        yield streaming_wav_header(rate, channels, width)
        audio = turn.audio_stream()
        try:
            while True:
                try:
                    async with asyncio.timeout(REPLY_TIMEOUT):
                        chunk = await anext(audio)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    _LOGGER.warning("Agent audio stalled for %s s; ending the reply", REPLY_TIMEOUT)
                    return
                if converted := converter.process(chunk):
                    yield converted
        finally:
            await audio.aclose()

    async def _fallback(self, text: str, language: str) -> TTSAudioResponse:
        """Text without agent audio: the fallback engine, or a short silence."""
        engine = self.runtime.settings.fallback_tts
        if engine and engine != self.entity_id:
            try:
                stream = _fallback_stream(self.hass, engine, text, language)
            except HomeAssistantError as err:
                _LOGGER.warning("Fallback TTS %s failed: %s", engine, err)
            else:
                return TTSAudioResponse(stream.extension, stream.async_stream_result())
        else:
            _LOGGER.info(
                "No agent audio for %r and no fallback TTS engine set in the options: "
                "playing silence",
                text[:60],
            )
        return TTSAudioResponse("wav", _silence())


def _fallback_stream(
    hass: HomeAssistant, engine: str, text: str, language: str
) -> tts.ResultStream:
    """A stream of another engine, in the request's language when it speaks it."""
    try:
        stream = tts.async_create_stream(hass, engine, language=language)
    except HomeAssistantError:
        stream = tts.async_create_stream(hass, engine)
    stream.async_set_message(text)
    return stream


async def _silence() -> AsyncGenerator[bytes]:
    yield streaming_wav_header(AGENT_RATE)
    yield bytes(int(AGENT_RATE * SILENCE_SECONDS) * 2)
