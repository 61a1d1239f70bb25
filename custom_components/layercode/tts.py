"""Text-to-speech: the agent's own recorded voice for the turn, never a re-synthesis."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import datetime
import logging
from pathlib import Path
from typing import Any

from homeassistant.components import tts
from homeassistant.components.tts.entity import TTSAudioRequest, TTSAudioResponse
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.event import async_call_later
from homeassistant.util import ulid as ulid_util

from . import LayercodeConfigEntry
from .client import AgentTurn
from .client.audio import AGENT_RATE, PcmConverter, streaming_wav_header
from .client.playout import failure_cue
from .compat import HA_2026_11
from .entity import LayercodeEntity
from .voice import SUPPORTED_LANGUAGES, current_conversation_id

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0
TURN_OPTION = "layercode_turn"
"""A fresh value per TTS stream. It is part of Home Assistant's cache key, so that the same
reply text on two turns never replays the first turn's audio from the cache."""
SILENCE_BYTES = int(AGENT_RATE * 0.3) * 2
CACHE_CLEANUP_DELAY = 30.0
"""After a reply, its copy in Home Assistant's TTS file cache is deleted: with TURN_OPTION no
later stream can reuse it, and a turn's audio belongs to that turn only."""

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
    _cleanup: CALLBACK_TYPE | None = None

    async def async_added_to_hass(self) -> None:
        """Make itself known to the runtime (announcements play through it), remove what an
        earlier run left in the file cache; cancel the cleanup on removal."""
        await super().async_added_to_hass()
        self.runtime.tts_entity_id = self.entity_id
        self._clean_file_cache(None)
        self.async_on_remove(self._cancel_cleanup)

    @callback
    def _schedule_cleanup(self) -> None:
        if self._cleanup is None:
            self._cleanup = async_call_later(self.hass, CACHE_CLEANUP_DELAY, self._clean_file_cache)

    @callback
    def _cancel_cleanup(self) -> None:
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    @callback
    def _clean_file_cache(self, _now: datetime | None) -> None:
        self._cleanup = None
        self.hass.async_add_executor_job(
            _remove_cached_replies,
            Path(self.hass.config.path(tts.DEFAULT_CACHE_DIR)),
            self.entity_id,
        )

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
        """The agent's audio for the turn being spoken, else the fallback.

        Nothing to say means a conversation is starting and the agent speaks first: the
        stream starts at once and waits for the agent's welcome inside.
        """
        conversation_id = current_conversation_id()
        first = await anext(aiter(request.message_gen), "")
        turn = self.runtime.async_claim_agent_audio(conversation_id, first)
        if turn is not None:
            return self._agent_wav(conversation_id, turn, request.options)
        message = first + "".join([chunk async for chunk in request.message_gen])
        if not message.strip():
            return self._agent_wav(conversation_id, self._welcome, request.options)
        return await self._fallback(message, request.language, request.options)

    async def _welcome(self) -> AgentTurn | None:
        """The agent's welcome on a session opened for the conversation about to start."""
        try:
            return await self.runtime.async_welcome()
        except HomeAssistantError as err:
            _LOGGER.warning("Cannot start a conversation with the agent: %s", err)
            return None

    def _agent_wav(
        self,
        conversation_id: str | None,
        turn: AgentTurn | Callable[[], Awaitable[AgentTurn | None]],
        options: dict[str, Any],
    ) -> TTSAudioResponse:
        """The agent's turn as streaming WAV in the requested format, paced for a listener."""
        audio = self.runtime.async_play(conversation_id, turn, paced=not _converted_whole(options))
        return TTSAudioResponse("wav", self._wav(audio, options))

    async def _wav(
        self, pcm: AsyncIterator[bytes], options: dict[str, Any]
    ) -> AsyncGenerator[bytes]:
        """16 kHz mono PCM as WAV in the rate, channels and width the request prefers."""
        rate = int(options.get(tts.ATTR_PREFERRED_SAMPLE_RATE) or AGENT_RATE)
        channels = int(options.get(tts.ATTR_PREFERRED_SAMPLE_CHANNELS) or 1)
        width = int(options.get(tts.ATTR_PREFERRED_SAMPLE_BYTES) or 2)
        converter = PcmConverter(AGENT_RATE, rate, channels, width)
        yield streaming_wav_header(rate, channels, width)
        self._schedule_cleanup()
        async for chunk in pcm:
            if converted := converter.process(chunk):
                yield converted

    async def _fallback(
        self, text: str, language: str, options: dict[str, Any]
    ) -> TTSAudioResponse:
        """Text without agent audio (an error reply, a local answer): the fallback engine.

        Without one, the failure cue: the user hears that something did not work rather than
        nothing. With the agent's audio switched off, silence.
        """
        engine = self.runtime.settings.fallback_tts
        if engine and engine != self.entity_id:
            try:
                stream = _fallback_stream(self.hass, engine, text, language)
            except HomeAssistantError as err:
                _LOGGER.warning("Fallback TTS %s failed: %s", engine, err)
            else:
                return TTSAudioResponse(stream.extension, stream.async_stream_result())
        if not self.runtime.audio_output:
            return TTSAudioResponse("wav", self._wav(_once(bytes(SILENCE_BYTES)), options))
        _LOGGER.info(
            "No agent audio for %r and no fallback TTS engine in the options: "
            "playing the failure cue",
            text[:60],
        )
        return TTSAudioResponse("wav", self._wav(_once(failure_cue()), options))


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


def _remove_cached_replies(cache_dir: Path, entity_id: str) -> None:
    """Delete this engine's files from the TTS file cache (named `<key>_<engine>.<ext>`)."""
    for path in cache_dir.glob(f"*_{entity_id}.*"):
        path.unlink(missing_ok=True)


def _converted_whole(options: dict[str, Any]) -> bool:
    """Whether Home Assistant puts the reply through ffmpeg, which sends nothing on until it
    has read all of it (or about 5 s): pacing it would only delay the reply, so it is not.

    Before 2026.11 it converts whenever another format or any sample option is asked for; from
    2026.11 it honours the options the entity lists, and its ffmpeg reads a streamed WAV as it
    comes.
    """
    if HA_2026_11:
        return False
    return options.get(tts.ATTR_PREFERRED_FORMAT, "mp3") != "wav" or any(
        options.get(option) is not None
        for option in (
            tts.ATTR_PREFERRED_SAMPLE_RATE,
            tts.ATTR_PREFERRED_SAMPLE_CHANNELS,
            tts.ATTR_PREFERRED_SAMPLE_BYTES,
        )
    )


async def _once(pcm: bytes) -> AsyncGenerator[bytes]:
    yield pcm
