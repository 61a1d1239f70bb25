"""The static check against Home Assistant 2025.4.4, 2026.2.3 and 2026.11.0 (script/check-ha-types).

Home Assistant 2026.3+ needs Python 3.14, so 2026.11 is only checked with pyright against its
sources. These tests prove that the check catches a break that only 2026.11 has, and that the
version flags it hands to pyright are the ones mypy is configured with.
"""

from __future__ import annotations

from pathlib import Path
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "script" / "check-ha-types"
HELPER = REPO / "script" / "ha-types" / "pyright_helper.py"
COMPAT = REPO / "custom_components" / "layercode" / "compat.py"
FIXTURE = "tests/fixtures/ha_types"
CANNOT_RUN = 3  # exit status of script/check-ha-types when Node.js/npm/pyright is missing


def test_check_catches_a_break_only_on_2026_11() -> None:
    """The fixture is valid on 2025.4.4 and 2026.2.3, wrong on 2026.11.0: only that line fails."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"pyright check not run: {' and '.join(missing)} not installed (Node.js)")
    result = subprocess.run(
        [str(CHECK), FIXTURE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode == CANNOT_RUN:
        pytest.skip(output.strip().splitlines()[-1])

    summaries = dict(re.findall(r"^pyright Home Assistant (\S+): (.+)$", output, re.MULTILINE))
    assert list(summaries) == ["2025.4.4", "2026.2.3", "2026.11.0"], output
    assert summaries["2025.4.4"] == "0 errors", output
    assert summaries["2026.2.3"] == "0 errors", output
    errors = re.match(r"(\d+) errors?\b", summaries["2026.11.0"])
    assert errors is not None, output
    assert int(errors[1]) > 0, output
    assert result.returncode == 1, output
    # Both planted breaks, reported above the summary lines.
    assert re.search(r"breaks_on_2026_11\.py:\d+:\d+ - error: .*_attr_device_info", output), output
    assert re.search(r"breaks_on_2026_11\.py:\d+:\d+ - error: .*tool_result", output), output
    assert output.rstrip().splitlines()[-1].startswith("pyright Home Assistant 2026.11.0:")


def test_mypy_knows_every_version_flag() -> None:
    """mypy checks against 2025.4.4, so every flag of compat.py must be in always_false."""
    flags = subprocess.run(
        [sys.executable, str(HELPER), "flags", str(COMPAT)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[::2]
    assert "HA_2026_11" in flags  # the helper reads them all
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(mypy["always_false"]) == sorted(flags)
