"""The offline engines: espeak-ng speaks, pocketsphinx hears the same words back.

Audio goes the way it does in production: espeak-ng's 16 kHz speech is decimated to 8 kHz by
the client library (what Home Assistant's STT entity sends) and pocketsphinx hears that.
Measured here (espeak-ng 1.51, pocketsphinx 5.1.1): with the demo grammar all 8 demo sentences
come back exactly; the free language model gets 1 of 8 ("hello").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import shutil
import sys

import numpy as np
import pytest

from custom_components.layercode.client.audio import Decimator
from local_agent_server.__main__ import _engines, _parse_args
from local_agent_server.layercode_client import FRAME_BYTES, WIRE_INPUT_RATE
from local_agent_server.offline_speech import (
    DEMO_SENTENCES,
    EspeakTextToSpeech,
    PocketsphinxSpeechToText,
    Resampler,
    SpeechEngineMissing,
    jsgf_grammar,
    resample,
)

from ..conftest import StartServer
from .helpers import Connect

_needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed: apt install espeak-ng (script/setup-conformance does)",
)
try:
    import pocketsphinx  # noqa: F401
except ImportError:
    _HAS_POCKETSPHINX = False
else:
    _HAS_POCKETSPHINX = True
_needs_pocketsphinx = pytest.mark.skipif(
    not _HAS_POCKETSPHINX,
    reason="pocketsphinx is not installed: pip install -r requirements/ha-<version>.txt",
)


async def _speak(text: str) -> bytes:
    """espeak-ng's speech for `text` at 8 kHz, as a client sends it."""
    decimator = Decimator()
    chunks = [decimator.process(chunk) async for chunk in EspeakTextToSpeech().synthesize(text)]
    return b"".join(chunks) + decimator.process(bytes(200))  # push out the filter's tail


@pytest.fixture(scope="module")
def demo_stt() -> PocketsphinxSpeechToText:
    """One grammar decoder for the module: loading the model takes a moment."""
    return PocketsphinxSpeechToText()


@_needs_espeak
@_needs_pocketsphinx
@pytest.mark.parametrize("sentence", DEMO_SENTENCES)
async def test_spoken_sentence_is_heard(demo_stt: PocketsphinxSpeechToText, sentence: str) -> None:
    assert await demo_stt.transcribe(await _speak(sentence)) == sentence


@_needs_espeak
@_needs_pocketsphinx
async def test_free_language_model_without_grammar() -> None:
    stt = PocketsphinxSpeechToText(sentences=None)
    assert await stt.transcribe(await _speak("hello")) == "hello"


@_needs_pocketsphinx
async def test_grammar_word_missing_from_dictionary() -> None:
    stt = PocketsphinxSpeechToText(["open the garage", "frobnicate the zorblax"])
    with pytest.raises(ValueError, match="frobnicate, zorblax"):
        await stt.prepare()


@_needs_pocketsphinx
async def test_silence_is_no_words(demo_stt: PocketsphinxSpeechToText) -> None:
    assert await demo_stt.transcribe(bytes(WIRE_INPUT_RATE * 2)) == ""


def test_grammar_from_sentences() -> None:
    grammar = jsgf_grammar(["Turn ON the light!", "hello", "turn on the light"])
    assert grammar == (
        "#JSGF V1.0;\ngrammar demo;\npublic <sentence> =\n"
        "      ( turn on the light )\n    | ( hello ) ;\n"
    )
    with pytest.raises(ValueError, match="at least one sentence"):
        jsgf_grammar(["?!"])
    assert "turn off the living room light" in DEMO_SENTENCES


async def test_missing_pocketsphinx_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails
    with pytest.raises(SpeechEngineMissing, match="pip install pocketsphinx"):
        await PocketsphinxSpeechToText().prepare()


async def test_missing_espeak_says_how_to_install() -> None:
    tts = EspeakTextToSpeech(executable="espeak-ng-not-installed")
    with pytest.raises(SpeechEngineMissing, match=r"apt install espeak-ng"):
        async for _ in tts.synthesize("hello"):
            pass


@_needs_espeak
async def test_speech_streams_in_chunks_and_stops_early() -> None:
    tts = EspeakTextToSpeech(chunk_ms=100)
    chunks = [chunk async for chunk in tts.synthesize("turn on the kitchen light")]
    assert len(chunks) > 5
    assert {len(chunk) for chunk in chunks[:-1]} == {3200}  # 100 ms at 16 kHz
    assert 0 < len(chunks[-1]) <= 3200
    stream = tts.synthesize("a long answer " * 50)
    assert len(await anext(stream)) == 3200
    await stream.aclose()  # kills espeak-ng; nothing lingers


@_needs_espeak
async def test_espeak_failure_is_reported() -> None:
    tts = EspeakTextToSpeech(voice="xx-no-such-voice")
    with pytest.raises(RuntimeError, match="voice does not exist"):
        async for _ in tts.synthesize("hello"):
            pass


def _tone(frequency: float, rate: int, seconds: float = 0.5) -> bytes:
    n = np.arange(int(rate * seconds))
    return (10000 * np.sin(2 * np.pi * frequency * n / rate)).astype("<i2").tobytes()


def _rms(pcm: bytes, margin: int = 100) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)[margin:-margin]
    return float(np.sqrt(np.mean(samples**2)))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (22050, 16000), (16000, 8000)])
def test_resampling_keeps_speech_band_and_length(in_rate: int, out_rate: int) -> None:
    pcm = _tone(1000, in_rate)
    whole = resample(pcm, in_rate, out_rate)
    assert len(whole) == len(pcm) * out_rate // in_rate
    assert _rms(whole) == pytest.approx(10000 / np.sqrt(2), rel=0.01)
    expected = np.frombuffer(_tone(1000, out_rate), dtype="<i2").astype(np.float64)
    error = np.frombuffer(whole, dtype="<i2") - expected
    assert np.abs(error[50:-50]).max() < 20  # no delay, no distortion
    resampler = Resampler(in_rate, out_rate)
    pieces = [resampler.process(pcm[i : i + 333]) for i in range(0, len(pcm), 333)]
    assert b"".join(pieces) + resampler.flush() == whole


def test_resampling_down_removes_what_the_new_rate_cannot_carry() -> None:
    assert _rms(resample(_tone(5000, 16000), 16000, 8000)) < 10
    # Up: no image of a 3 kHz tone at 5 kHz.
    up = np.frombuffer(resample(_tone(3000, 8000), 8000, 16000), dtype="<i2")
    spectrum = np.abs(np.fft.rfft(up * np.hanning(len(up))))
    frequencies = np.fft.rfftfreq(len(up), 1 / 16000)
    assert spectrum[np.abs(frequencies - 5000) < 50].max() < spectrum.max() / 10_000


@pytest.fixture
async def offline_engines() -> AsyncIterator[tuple[PocketsphinxSpeechToText, EspeakTextToSpeech]]:
    stt = PocketsphinxSpeechToText()
    await stt.prepare()
    yield stt, EspeakTextToSpeech()


@_needs_espeak
@_needs_pocketsphinx
async def test_server_hears_and_speaks(
    start_server: StartServer,
    connect: Connect,
    offline_engines: tuple[PocketsphinxSpeechToText, EspeakTextToSpeech],
) -> None:
    stt, tts = offline_engines
    server = await start_server(stt=stt, tts=tts)
    client = await connect(server)
    speech = await _speak("turn on the kitchen light")
    speech += bytes(-len(speech) % FRAME_BYTES)
    await client.send({"type": "vad_events", "event": "vad_start"})
    await client.send_audio(
        [speech[i : i + FRAME_BYTES] for i in range(0, len(speech), FRAME_BYTES)]
    )
    await client.send({"type": "vad_events", "event": "vad_end"})

    transcript = await client.until("user.transcript", timeout=10)
    assert transcript["content"] == "turn on the kitchen light"
    assert client.of_type("user.transcript.interim_delta")  # guesses while the audio came in
    turn = await client.agent_turn()
    assert turn["texts"] == ["You said: turn on the kitchen light"]

    # The agent's audio is espeak-ng's voice saying that: hear it back, as a client would.
    decimator = Decimator()
    agent_speech = decimator.process(turn["audio"]) + decimator.process(bytes(200))
    reply_stt = PocketsphinxSpeechToText(["you said turn on the kitchen light", *DEMO_SENTENCES])
    assert await reply_stt.transcribe(agent_speech) == "you said turn on the kitchen light"


@_needs_espeak
@_needs_pocketsphinx
async def test_cli_picks_the_engines() -> None:
    assert _parse_args([]).speech == "tones"
    assert await _engines("tones") == (None, None)  # the server's deterministic pair
    for speech in ("offline", "auto"):
        stt, tts = await _engines(_parse_args(["--speech", speech]).speech)
        assert isinstance(stt, PocketsphinxSpeechToText)
        assert isinstance(tts, EspeakTextToSpeech)


async def test_cli_auto_falls_back_to_tones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    monkeypatch.setenv("PATH", "")  # no espeak-ng either
    assert await _engines("auto") == (None, None)
    with pytest.raises(SpeechEngineMissing, match="apt install espeak-ng"):
        await _engines("offline")
