"""One run of the official browser SDK (`@layercode/js-sdk`) against the local agent server.

`browser_driver.mjs` opens the harness page (harness.js) in headless Chromium, whose fake
microphone plays a WAV made here, and prints what the page recorded: every callback of the
SDK, tagged with the scenario it happened in. The servers record what the SDK sent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import json
from pathlib import Path
import shutil
import time
from typing import Any

import aiohttp

from .harness import HERE, MIC_SECONDS, MIC_SPEECH, Run, local_stack
from .speech import write_microphone_wav

RUN_TIMEOUT = 90.0
"""Bound on the browser run, launch to exit; it takes about 30 s on 2 cores."""


@dataclass
class BrowserRun(Run):
    """A `Run` plus what the page recorded."""

    page: dict[str, Any] = field(default_factory=dict)
    """The driver's output: `log`, `amplitudes`, `failures`, `consoleErrors`, `requests`,
    `launchMs`, `totalMs`, or `error` when the run broke."""
    seconds: float = 0.0
    driver_stderr: str = ""

    @property
    def log(self) -> list[dict[str, Any]]:
        """Every callback the SDK made, in order, tagged with its scenario."""
        entries: list[dict[str, Any]] = self.page.get("log", [])
        return entries

    def events(self, scenario: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The page's log entries of one scenario, optionally of one kind."""
        return [e for e in self.log if e["scenario"] == scenario and kind in (None, e["kind"])]

    def sdk_messages(self, scenario: str, kind: str | None = None) -> list[dict[str, Any]]:
        """What the SDK passed to `onMessage` (server messages, and its own vad/replay events)."""
        return [
            e["message"]
            for e in self.events(scenario, "message")
            if kind in (None, e["message"]["type"])
        ]

    def problems(self) -> str:
        """Why the run is not usable, or "" when it is: for assertion messages."""
        lines = []
        if "error" in self.page:
            lines.append(f"driver: {self.page['error']}")
        lines += [f"{f['scenario']}: {f['error']}" for f in self.page.get("failures", [])]
        if lines and self.driver_stderr:
            lines.append(f"driver stderr: {self.driver_stderr[-2000:]}")
        return "\n".join(lines)


async def run_browser_sdk(workdir: Path) -> BrowserRun:
    """Run every scenario of PLAN in one headless Chromium, bounded by RUN_TIMEOUT."""
    started = time.monotonic()
    wav = workdir / "microphone.wav"
    write_microphone_wav(wav, list(MIC_SPEECH), total=MIC_SECONDS)
    async with aiohttp.ClientSession() as http, local_stack(http) as stack:
        page, stderr = await _run_driver(
            {
                "pageUrl": stack.base_url + "/",
                "wav": str(wav),
                "chromium": shutil.which("chromium"),
                "timeoutMs": int(RUN_TIMEOUT * 1000),
            }
        )
    run = stack.run()
    return BrowserRun(
        run.marks,
        run.authorize_calls,
        run.servers,
        page=page,
        seconds=time.monotonic() - started,
        driver_stderr=stderr,
    )


async def _run_driver(options: dict[str, Any]) -> tuple[dict[str, Any], str]:
    node = shutil.which("node")
    if node is None:
        return {"error": "node not found"}, ""
    process = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "browser_driver.mjs"),
        json.dumps(options),
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT + 15):  # the driver's own watchdog comes first
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"error": f"no JSON from the driver (exit code {process.returncode})"}
    if process.returncode and "error" not in result:
        result["error"] = f"exit code {process.returncode}"
    return result, stderr.decode(errors="replace")
