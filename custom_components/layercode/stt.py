"""Speech-to-text: the satellite's audio goes to the agent, the agent's transcript comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable
import contextlib
import logging

from homeassistant.components import stt
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import LayercodeConfigEntry
from .client import AgentSession, EventWaiter, LayercodeError, SessionEvent
from .client.messages import UserTranscript
from .compat import HA_2026_5
from .entity import LayercodeEntity
from .runtime import InputSource, UserInput
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
MAX_UTTERANCE_SECONDS = 60.0
"""Bound on one utterance when the agent, not Home Assistant, hears the end of speech."""

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

    if HA_2026_5:

        @property
        def audio_processing(self) -> stt.SpeechAudioProcessing:
            """With the option on, Home Assistant leaves the end of speech to the agent."""
            return stt.SpeechAudioProcessing(
                requires_external_vad=not self.runtime.settings.agent_turn_detection,
                prefers_auto_gain_enabled=True,
                prefers_noise_reduction_enabled=True,
            )

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
        conversation_id = current_conversation_id()
        if (running := self.runtime.conversations.get(conversation_id or "")) is not None:
            # A new run on this conversation (wake word, "stop"): the agent stops talking.
            self.runtime.async_interrupt(running)
        microphone = Microphone(stream)
        try:
            return await self._transcribe(conversation_id, microphone)
        finally:
            await microphone.close()

    async def _transcribe(
        self, conversation_id: str | None, microphone: Microphone
    ) -> stt.SpeechResult:
        try:
            conversation = await self.runtime.async_get_conversation(conversation_id)
        except HomeAssistantError as err:
            _LOGGER.warning("Speech-to-text failed: %s", err)
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        bind_to_chat_session(self.hass, self.runtime, conversation)
        session = conversation.session
        user_input = self.runtime.async_begin_input(conversation, InputSource.VOICE)
        transcript = session.expect(
            lambda event: (
                isinstance(event, UserTranscript) and user_input.owns_transcript(event.turn_id)
            )
        )
        try:
            await session.begin_user_speech()
            if self.runtime.settings.agent_turn_detection:
                event = await _stream_until_transcript(session, microphone, transcript, user_input)
            else:
                async for chunk in microphone.chunks():
                    await session.send_audio(chunk)
                user_input.close(microphone.ended_at)
                await session.end_user_speech()
                event = await transcript.wait(TRANSCRIPT_TIMEOUT)
        except asyncio.CancelledError:
            # The run was aborted: close the turn so the next one starts clean, and let
            # nobody wait for (or play) its answer.
            user_input.abandoned = True
            user_input.close()
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


class Microphone:
    """Reads the satellite's audio from the start of the run, also while the session opens.

    Home Assistant detects the end of speech as the audio is read; reading at once keeps that
    on time, and a first turn after a long idle loses nothing to authorizing and connecting.
    """

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self.ended_at: float | None = None
        """Loop time at which the stream ended (Home Assistant heard the end of speech)."""
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read(stream))

    async def _read(self, stream: AsyncIterable[bytes]) -> None:
        try:
            async for chunk in stream:
                self._queue.put_nowait(chunk)
        finally:
            self.ended_at = asyncio.get_running_loop().time()
            self._queue.put_nowait(None)

    async def chunks(self) -> AsyncGenerator[bytes]:
        """The audio so far, then as it comes, until the stream ends."""
        while (chunk := await self._queue.get()) is not None:
            yield chunk
        if not self._reader.cancelled() and (error := self._reader.exception()) is not None:
            raise error

    async def close(self) -> None:
        """Stop reading."""
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _stream_until_transcript(
    session: AgentSession,
    microphone: Microphone,
    transcript: EventWaiter,
    user_input: UserInput,
) -> SessionEvent:
    """Stream until the agent's own turn detection has heard the end of the user's speech.

    The audio keeps flowing (Home Assistant's end-of-speech detection is off); the agent's
    transcript ends the turn. If the satellite stops first, the turn is closed as usual.
    """

    async def feed() -> None:
        async for chunk in microphone.chunks():
            await session.send_audio(chunk)

    feeder = asyncio.ensure_future(feed())
    heard = asyncio.ensure_future(transcript.wait(MAX_UTTERANCE_SECONDS))
    try:
        await asyncio.wait({feeder, heard}, return_when=asyncio.FIRST_COMPLETED)
        if not heard.done():
            feeder.result()  # the stream ended, or failed
            user_input.close(microphone.ended_at)
            await session.end_user_speech()
        else:
            user_input.close()
        return await heard
    finally:
        for task in (feeder, heard):
            task.cancel()
        await asyncio.gather(feeder, heard, return_exceptions=True)
