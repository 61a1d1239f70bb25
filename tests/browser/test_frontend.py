"""A newcomer's first steps in the frontend, in real headless Chromium.

The development Home Assistant (`python -m develop`, as `script/develop` runs it, from a fresh
copy of `config/`) starts on a free port beside its local agent server, and
`frontend_driver.mjs` logs in as the demo user. Then either it adds the Layercode integration
through the UI's config flow with the local server's URLs and opens the new device's page (the
integration not configured beforehand), or it talks to the agent in the Assist dialog (with
the entry and pipeline that script/develop makes), typing and then speaking into a fake
microphone. `script/setup-browser` installs what they need; where Chromium, Node.js,
playwright-core or `.venv/develop` are missing, the tests skip with one line saying which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from typing import Any
import wave

import pytest

from local_agent_server.demo import synthetic_speech

HERE = Path(__file__).parent
REPO = HERE.parent.parent
DEVELOP_PYTHON = REPO / ".venv" / "develop" / "bin" / "python"
READY_TIMEOUT = 180.0
"""Bound on the start: storage, agent server, Home Assistant (about 15 s here)."""
DRIVER_TIMEOUT = 150.0
"""Bound on the browser run (about 20 s here); the driver's own watchdog ends it first."""
STOP_TIMEOUT = 45.0
"""Bound on stopping Home Assistant and the agent server (a few seconds here)."""
TYPED = "What time is it?"
SPOKEN = "turn on the kitchen light"


def missing_requirements() -> str | None:
    """What is missing to run the browser test here, as one line; None when nothing is."""
    missing = []
    if shutil.which("chromium") is None:
        missing.append("chromium")
    if shutil.which("node") is None:
        missing.append("node (Node.js)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules (npm ci)")
    if not DEVELOP_PYTHON.exists():
        missing.append(".venv/develop (Home Assistant with its frontend)")
    if not missing:
        return None
    return f"{', '.join(missing)} not installed here: run script/setup-browser"


@dataclass
class DevInstance:
    """A running development instance: what its READY line said, and its output so far."""

    ready: dict[str, Any]
    process: subprocess.Popen[bytes]
    output: bytearray
    config_dir: Path


def _read_until(process: subprocess.Popen[bytes], output: bytearray, marker: bytes) -> bytes:
    """Read the process's output until a line starts with `marker` (bounded); that line."""
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            for line in bytes(output).splitlines():
                if line.startswith(marker):
                    return line
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
    raise AssertionError(
        f"no {marker.decode()} line from python -m develop "
        f"(exit code {process.poll()}):\n{output.decode(errors='replace')[-4000:]}"
    )


def _drain(process: subprocess.Popen[bytes], output: bytearray) -> None:
    """Whatever the stopped process still had to say."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    try:
        while chunk := os.read(process.stdout.fileno(), 65536):
            output += chunk
    except BlockingIOError:
        pass


def _processes_using(path: Path) -> list[str]:
    """Command lines of running processes that name `path` (a Home Assistant left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


type StartDev = Callable[..., DevInstance]


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[StartDev]:
    """Start `python -m develop` with extra arguments; stopped (and checked) after the test."""
    if missing := missing_requirements():
        pytest.skip(missing)
    runtime = tmp_path / "runtime"
    started: list[DevInstance] = []

    def start(*args: str) -> DevInstance:
        process = subprocess.Popen(
            [
                str(DEVELOP_PYTHON),
                "-m",
                "develop",
                *("--port", "0", "--server-port", "0", "--runtime-dir", str(runtime)),
                "--ready-json",
                *args,
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        instance = DevInstance({}, process, bytearray(), runtime / "config")
        started.append(instance)
        line = _read_until(process, instance.output, b"READY ")
        instance.ready = json.loads(line.removeprefix(b"READY "))
        return instance

    yield start
    for instance in started:
        _stop(instance)
    # Everything it started has stopped with it.
    assert _processes_using(runtime) == []


def _stop(instance: DevInstance) -> None:
    """SIGTERM, as Ctrl-C would; it must stop in time, cleanly."""
    process, output = instance.process, instance.output
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"python -m develop did not stop within {STOP_TIMEOUT:.0f} s")
    _drain(process, output)
    assert process.returncode == 0, output.decode(errors="replace")[-4000:]
    assert b"Stopped." in output


def _run_driver(
    instance: DevInstance, screenshots: Path, scenario: str, **options: Any
) -> dict[str, Any]:
    """Run one scenario of frontend_driver.mjs (bounded); its JSON result, checked to be ok."""
    ready = instance.ready
    options = {
        "scenario": scenario,
        "url": ready["url"],
        "username": ready["username"],
        "password": ready["password"],
        "chromium": shutil.which("chromium"),
        "screenshots": str(screenshots),
        "timeoutMs": int(DRIVER_TIMEOUT * 1000),
        **options,
    }
    try:
        completed = subprocess.run(
            ["node", str(HERE / "frontend_driver.mjs"), json.dumps(options)],
            cwd=HERE,
            capture_output=True,
            timeout=DRIVER_TIMEOUT + 15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the driver ran over {DRIVER_TIMEOUT + 15:.0f} s")
    lines = completed.stdout.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"error": f"no JSON from the driver (exit code {completed.returncode})"}
    steps = ", ".join(f"{s['name']} {s['ms'] / 1000:.1f} s" for s in result.get("steps", []))
    print(f"frontend steps: {steps}", file=sys.stderr)
    assert result.get("ok"), (
        f"{result.get('error')} (step {result.get('failedStep')}); screenshots in {screenshots}"
        f"\ndriver stderr: {completed.stderr.decode(errors='replace')[-2000:]}"
        f"\nHome Assistant log: {instance.config_dir / 'home-assistant.log'}"
    )
    # The page reached nothing outside Home Assistant except what was refused on purpose.
    assert not [url for url in result["blocked"] if url.startswith(ready["url"])]
    return result


def _saved_entries(config_dir: Path, domain: str) -> list[dict[str, Any]]:
    """The domain's config entries once Home Assistant has saved them (it delays by 1 s)."""
    path = config_dir / ".storage" / "core.config_entries"
    deadline = time.monotonic() + 10
    while True:
        if path.exists():
            entries = json.loads(path.read_text())["data"]["entries"]
            if found := [e for e in entries if e["domain"] == domain]:
                return found
        if time.monotonic() > deadline:
            return []
        time.sleep(0.2)


def test_add_integration_in_the_frontend(start_dev: StartDev, tmp_path: Path) -> None:
    """Log in, add Layercode with the local server's URLs, and see the agent's device page."""
    instance = start_dev("--no-agent-entry", "--speech", "tones")
    ready = instance.ready
    result = _run_driver(
        instance,
        tmp_path / "screenshots",
        "add-integration",
        agentId=ready["agent_id"],
        authorizeUrl=ready["authorize_url"],
        websocketUrl=ready["websocket_url"],
    )
    seen = result["seen"]
    assert all(row["visible"] for row in seen.values()), seen
    # Nothing has talked to the agent yet: sessions open on first use.
    assert seen["Mute"]["switchOn"] is False
    assert seen["Agent speaking"]["text"].endswith("Clear"), seen
    assert seen["User speaking"]["text"].endswith("Clear"), seen
    assert seen["Connection"]["text"].endswith("Disconnected"), seen
    assert "/config/devices/device/" in result["deviceUrl"]
    # The entry was made by the UI's flow, against the local server, with nothing else.
    assert [e["data"] for e in _saved_entries(instance.config_dir, "layercode")] == [
        {
            "agent_id": ready["agent_id"],
            "authorize_url": ready["authorize_url"],
            "websocket_url": ready["websocket_url"],
        }
    ]


def _microphone_wav(path: Path, text: str) -> None:
    """What the fake microphone plays: 1 s of silence, `text` spoken, 3 s of silence.

    espeak-ng speaks where it is installed; elsewhere synthetic speech stands in (the agent's
    test engines hear only its length anyway).
    """
    espeak = shutil.which("espeak-ng")
    if espeak is not None:
        spoken = path.with_suffix(".espeak.wav")
        subprocess.run([espeak, "-v", "en-us", "-w", str(spoken), text], check=True, timeout=30)
        with wave.open(str(spoken)) as source:
            rate = source.getframerate()
            pcm = source.readframes(source.getnframes())
    else:
        rate, pcm = 16_000, synthetic_speech(1.5)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(2 * rate) + pcm + bytes(6 * rate))


def test_talk_in_the_assist_dialog(start_dev: StartDev, tmp_path: Path) -> None:
    """The preferred pipeline answers a typed and a spoken request with the agent's words;
    "turn on the kitchen light" is done through Home Assistant's tools (home control)."""
    microphone = tmp_path / "microphone.wav"
    _microphone_wav(microphone, SPOKEN)
    instance = start_dev()
    result = _run_driver(
        instance, tmp_path / "screenshots", "assist", microphone=str(microphone), typed=TYPED
    )
    said = result["bubbles"]
    # "How can I assist?", then each request and the agent's answer to it.
    assert [b["from"] for b in said] == ["hass", "user", "hass", "user", "hass"], said
    assert said[1]["text"] == TYPED
    assert said[2]["text"] == f"You said: {TYPED}"
    heard = said[3]["text"]
    if instance.ready["offline_speech"]:
        # The agent's backend switched the kitchen light through Home Assistant's own tools.
        assert heard == SPOKEN
        assert said[4]["text"] == "Done."
    else:
        assert re.fullmatch(r"heard \d+ ms of audio", heard), heard
        assert said[4]["text"] == f"You said: {heard}"
