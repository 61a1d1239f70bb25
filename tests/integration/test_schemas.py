"""The integration's schemas validate the same with voluptuous and with probatio's shim.

Home Assistant 2026.9+ replaces voluptuous with probatio's shim. `script/test` runs this file,
and the config flow tests, a second time with `-p tests.probatio_shim`.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import voluptuous as vol

from custom_components.layercode import config_flow, services
from custom_components.layercode.const import (
    CONF_AGENT_ID,
    CONF_AUTHORIZE_URL,
    CONF_IDLE_TIMEOUT,
    CONF_TURN_TAKING,
)


def test_which_validator_runs() -> None:
    """Say which library is under test, so that the shim run cannot silently be a plain run."""
    shim = "probatio" in vol.__name__
    assert shim == ("tests.probatio_shim" in sys.modules)


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        (
            config_flow.STEP_USER_SCHEMA,
            {CONF_AGENT_ID: "ag_1", CONF_AUTHORIZE_URL: "https://example.org/authorize"},
            {CONF_AUTHORIZE_URL: "https://example.org/authorize"},
        ),
        (
            config_flow.STEP_REAUTH_SCHEMA,
            {"api_key": "sk_1"},
            {},
        ),
        (
            config_flow.OPTIONS_SCHEMA,
            {CONF_TURN_TAKING: "push_to_talk", CONF_IDLE_TIMEOUT: 60},
            {CONF_TURN_TAKING: "telepathy"},
        ),
        (
            services.SEND_TEXT_SCHEMA,
            {"config_entry_id": "abc", "text": "hi"},
            {"config_entry_id": "abc"},
        ),
        (
            services.SEND_DATA_SCHEMA,
            {"config_entry_id": "abc", "data": {"a": 1}},
            {"config_entry_id": "abc", "data": {"a": 1}, "unknown": 1},
        ),
    ],
)
def test_schemas(schema: vol.Schema, good: dict[str, Any], bad: dict[str, Any]) -> None:
    """Valid input passes with its defaults filled in; invalid input raises vol.Invalid."""
    validated = schema(good)
    assert {key: validated[key] for key in good} == good
    with pytest.raises(vol.Invalid):
        schema(bad)
