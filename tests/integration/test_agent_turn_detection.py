"""The option that leaves the end of the user's speech to the agent's own turn detection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from homeassistant.components import stt
from homeassistant.core import HomeAssistant
import numpy as np

from custom_components.layercode.const import CONF_AGENT_TURN_DETECTION
from local_agent_server import LocalAgentServer

from .conftest import make_entry, setup, unload
from .test_assist_pipeline import METADATA


async def test_agent_hears_the_end_of_speech(
    hass: HomeAssistant, agent_server: LocalAgentServer
) -> None:
    """Audio streams on after the speech; the agent's transcript ends the turn, not the stream."""
    entry = make_entry(agent_server, **{CONF_AGENT_TURN_DETECTION: True})
    runtime = await setup(hass, entry)
    entity = stt.async_get_speech_to_text_entity(hass, "stt.ag_test")
    assert entity is not None
    sent_after_speech = 0
    stream_ended = False

    async def microphone() -> AsyncGenerator[bytes]:
        nonlocal sent_after_speech, stream_ended
        t = np.arange(16000) / 16000
        speech = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()
        for i in range(0, len(speech), 320):
            yield speech[i : i + 320]
        for _ in range(1000):  # 10 s of room noise at most: the satellite never stops by itself
            await asyncio.sleep(0.005)
            sent_after_speech += 1
            yield bytes(320)
        stream_ended = True

    result = await entity.async_process_audio_stream(METADATA, microphone())
    assert result.result is stt.SpeechResultState.SUCCESS
    assert result.text is not None
    assert result.text.startswith("heard ")
    assert not stream_ended
    assert sent_after_speech > 0
    recording = agent_server.recordings[-1]
    assert not any(m["type"] == "vad_events" for m in recording.messages)
    assert len(runtime.conversations) == 1
    await unload(hass, entry)
