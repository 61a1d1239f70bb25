"""The speech engines of the development agent, and the voice of the demo's request.

Offline speech (`local_agent_server/offline_speech.py`: pocketsphinx hears, espeak-ng speaks)
makes the agent hear and say real words; where it is missing (the module, the pocketsphinx
package or the espeak-ng program), the deterministic pair of the tests stands in: the agent
hears only how much audio arrived and answers with tones, and the demo's request is a
synthetic buzz instead of words.
"""

from __future__ import annotations

from dataclasses import dataclass
import importlib.util
import shutil

from local_agent_server.demo import synthetic_speech
from local_agent_server.engines import (
    SampleCountSpeechToText,
    SpeechToText,
    TextToSpeech,
    ToneTextToSpeech,
)

OFFLINE = "offline"
TONES = "tones"
AUTO = "auto"


@dataclass(frozen=True)
class Speech:
    """The server's engines, what they are called, and how the demo speaks its request."""

    stt: SpeechToText
    tts: TextToSpeech
    description: str
    offline: bool

    async def say(self, text: str) -> tuple[bytes, str]:
        """16 kHz 16-bit mono PCM for `text`, and what it is (words, or a stand-in)."""
        if self.offline:
            from local_agent_server.offline_speech import EspeakTextToSpeech  # noqa: PLC0415

            pcm = b"".join([chunk async for chunk in EspeakTextToSpeech().synthesize(text)])
            return pcm, f"espeak-ng saying {text!r}"
        return synthetic_speech(1.5), "1.5 s of synthetic speech (a buzz: no offline speech)"


def offline_missing() -> str | None:
    """Why offline speech cannot run here, or None when it can."""
    if importlib.util.find_spec("local_agent_server.offline_speech") is None:
        return "local_agent_server/offline_speech.py is not there yet"
    if importlib.util.find_spec("pocketsphinx") is None:
        return "pocketsphinx is not installed (requirements/develop.txt)"
    if shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed (apt install espeak-ng)"
    return None


def choose_speech(choice: str) -> Speech:
    """`offline`, `tones`, or `auto` (offline where it can run); raises if offline cannot."""
    missing = offline_missing() if choice != TONES else None
    if choice == OFFLINE and missing:
        raise RuntimeError(f"offline speech is not available: {missing}")
    if choice == TONES or missing:
        note = "" if choice == TONES else f" ({missing})"
        return Speech(
            SampleCountSpeechToText(),
            ToneTextToSpeech(),
            f"test engines: hears only durations, answers in tones{note}",
            offline=False,
        )
    from local_agent_server.offline_speech import (  # noqa: PLC0415  # optional engines
        EspeakTextToSpeech,
        PocketsphinxSpeechToText,
    )

    return Speech(
        PocketsphinxSpeechToText(),
        EspeakTextToSpeech(),
        "offline: pocketsphinx hears the demo's sentences, espeak-ng speaks",
        offline=True,
    )
