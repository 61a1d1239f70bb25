"""Speech-to-text: the satellite's audio goes to the agent, the agent's transcript comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
import contextlib
import logging

from homeassistant.components import stt
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import LayercodeConfigEntry
from .client import LayercodeError
from .client.messages import UserTranscript
from .entity import LayercodeEntity
from .runtime import InputSource
from .voice import (
    SUPPORTED_LANGUAGES,
    async_check_local_intents,
    bind_to_chat_session,
    current_conversation_id,
)

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0
TRANSCRIPT_TIMEOUT = 15.0
"""Bound on waiting for the agent's transcript after the end of speech."""

STT_DESCRIPTION = EntityDescription(key="stt")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LayercodeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the speech-to-text entity."""
    async_add_entities([LayercodeSpeechToText(entry, STT_DESCRIPTION)])


class LayercodeSpeechToText(LayercodeEntity, stt.SpeechToTextEntity):
    """Streams Home Assistant's 16 kHz microphone audio to the agent; its transcript is the text."""

    _attr_name = None

    @property
    def supported_languages(self) -> list[str]:
        """Every language: the agent decides."""
        return SUPPORTED_LANGUAGES

    @property
    def supported_formats(self) -> list[stt.AudioFormats]:
        """Raw PCM in a WAV-described stream."""
        return [stt.AudioFormats.WAV]

    @property
    def supported_codecs(self) -> list[stt.AudioCodecs]:
        """PCM only."""
        return [stt.AudioCodecs.PCM]

    @property
    def supported_bit_rates(self) -> list[stt.AudioBitRates]:
        """16-bit samples."""
        return [stt.AudioBitRates.BITRATE_16]

    @property
    def supported_sample_rates(self) -> list[stt.AudioSampleRates]:
        """16 kHz, what Assist pipelines produce."""
        return [stt.AudioSampleRates.SAMPLERATE_16000]

    @property
    def supported_channels(self) -> list[stt.AudioChannels]:
        """Mono."""
        return [stt.AudioChannels.CHANNEL_MONO]

    async def async_process_audio_stream(
        self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> stt.SpeechResult:
        """Send the user's speech as one user turn and return the agent's transcript."""
        async_check_local_intents(self.hass, self.runtime.agent_entity_id)
        try:
            conversation = await self.runtime.async_get_conversation(current_conversation_id())
        except HomeAssistantError as err:
            _LOGGER.warning("Speech-to-text failed: %s", err)
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        bind_to_chat_session(self.hass, self.runtime, conversation)
        session = conversation.session
        user_input = self.runtime.async_begin_input(conversation, InputSource.VOICE)
        transcript = session.expect(lambda event: isinstance(event, UserTranscript))
        try:
            await session.begin_user_speech()
            async for chunk in stream:
                await session.send_audio(chunk)
            user_input.closed = True
            await session.end_user_speech()
            event = await transcript.wait(TRANSCRIPT_TIMEOUT)
        except asyncio.CancelledError:
            # The run was aborted: close the turn so the next one starts clean, and let
            # nobody wait for (or play) its answer.
            user_input.abandoned = user_input.closed = True
            with contextlib.suppress(LayercodeError):
                await session.end_user_speech()
            raise
        except LayercodeError as err:
            _LOGGER.warning("Speech-to-text failed: %s", err)
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        finally:
            transcript.cancel()
        assert isinstance(event, UserTranscript)
        text = event.content.strip()
        if not text:
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        user_input.text = text
        return stt.SpeechResult(text, stt.SpeechResultState.SUCCESS)
