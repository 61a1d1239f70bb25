"""The runtime directory and the `hass` process of the development instance.

Every start begins from a fresh copy of `config/`: what a newcomer sees never depends on what
an earlier run left, and the storage files are made new (storage.py) rather than committed.
`hass` runs in a process group of its own, so that a Ctrl-C reaches only `script/develop`,
which then stops it in order; should `script/develop` die without stopping it, the kernel
sends it SIGTERM (PR_SET_PDEATHSIG), so no Home Assistant is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from pathlib import Path
import shutil
import signal
import socket
import sys

from . import REPO

MARKER = ".develop-runtime"
"""A runtime directory holds this file; only such a directory is ever deleted."""
STORAGE_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
"""How long Home Assistant may take to stop before it is killed."""


class RuntimeDirError(RuntimeError):
    """The runtime directory cannot be used; the message says why."""


def fresh_runtime(runtime: Path) -> Path:
    """Empty `runtime` (only if an earlier run made it), copy `config/` into it, link the
    integration into its `custom_components/`; returns the configuration directory."""
    if runtime.exists():
        if not (runtime / MARKER).exists() and any(runtime.iterdir()):
            raise RuntimeDirError(f"{runtime} exists and was not made by script/develop")
        shutil.rmtree(runtime)
    runtime.mkdir(parents=True)
    (runtime / MARKER).write_text("Made by script/develop; deleted and made anew on each start.\n")
    config = runtime / "config"
    shutil.copytree(REPO / "config", config)
    (config / "custom_components").mkdir(exist_ok=True)
    (config / "custom_components" / "layercode").symlink_to(
        REPO / "custom_components" / "layercode", target_is_directory=True
    )
    return config


async def create_storage(config: Path, token_file: Path) -> str:
    """Run storage.py in its own process (bounded); returns the API token it made."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "develop.storage",
        str(config),
        str(token_file),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(STORAGE_TIMEOUT):
            output, _ = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode:
        raise RuntimeError(f"creating the storage failed:\n{output.decode(errors='replace')}")
    return (await asyncio.to_thread(token_file.read_text)).strip()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (as Home Assistant binds: reuse on)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def start_hass(config: Path, port: int, console_log: Path) -> asyncio.subprocess.Process:
    """Start `hass -c config` on 127.0.0.1:`port`; its console output goes to `console_log`."""
    env = {**os.environ, "LAYERCODE_DEVELOP_PORT": str(port)}
    with console_log.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "homeassistant",
            "--config",
            str(config),
            # Every requirement is in requirements/develop.txt: a missing one is a bug to
            # see in the log, not something to fetch at run time.
            "--skip-pip",
            "--log-no-color",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent,
        )


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, wait up to STOP_TIMEOUT, then kill the whole process group."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            print(f"Home Assistant did not stop within {STOP_TIMEOUT:.0f} s: killing it")
    # Whatever is left of its group (an ffmpeg it started) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log, for a failure message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} cannot be read)"
