"""The scripted conversation that script/develop runs."""

from __future__ import annotations

import pytest

from custom_components.layercode.client import TurnTrigger
from local_agent_server.demo import run


@pytest.mark.parametrize("trigger", list(TurnTrigger))
async def test_demo_conversation(trigger: TurnTrigger, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo greets, hears two spoken turns and one typed turn, and prints each answer."""
    await run(trigger)
    out = capsys.readouterr().out
    assert "Agent greets: 'Hello! Talk to me.'" in out
    assert "agent said:   'You said: heard 1500 ms of audio'" in out
    assert 'agent said:   "You said: What\'s the weather like?"' in out
    assert "agent said:   'You said: heard 800 ms of audio'" in out
    assert out.count("timings:") == 3
