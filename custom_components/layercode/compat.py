"""Differences between the Home Assistant versions the integration supports (2025.4.4 and later).

Each flag is True when the running Home Assistant is at least that version. The flags are computed
from an int (``MAJOR * 100 + MINOR``), not by comparing tuples, so that type checkers can treat
them as constants:

* pyright (``script/check-ha-types``) sets them per Home Assistant version with ``defineConstant``
  and reads the names and thresholds from this file: keep every flag in the form
  ``HA_<year>_<month> = _HA >= <year><month:02>``.
* mypy runs against the minimum, 2025.4.4, where every flag is False (``always_false`` in
  pyproject.toml).

Either way the branch for the other versions is unreachable and not checked against the wrong API.
"""

from __future__ import annotations

from homeassistant.const import MAJOR_VERSION, MINOR_VERSION

_HA = MAJOR_VERSION * 100 + MINOR_VERSION

# ToolInput.external: ChatLog.async_add_assistant_content_without_tools takes external tool calls.
HA_2025_11 = _HA >= 202511
# stt.SpeechAudioProcessing (requires_external_vad), pipeline validation errors as events.
HA_2026_5 = _HA >= 202605
# llm.ToolResult: APIInstance.async_call_tool returns it, ToolResultContent(result=...).
HA_2026_10 = _HA >= 202610
# tts.async_create_audio_stream / PcmFormat: raw PCM hosted without a TTS engine, uncached.
HA_2026_11 = _HA >= 202611
