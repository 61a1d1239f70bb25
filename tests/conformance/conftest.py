"""Fixtures of the conformance tests: the official SDKs, where this machine can run them.

Where Node.js, Chromium or the npm packages are missing, the tests that need them skip with
one line naming what is missing (`script/setup-conformance` installs all of it).
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import socket

import pytest
import pytest_socket  # type: ignore[import-untyped]

from .browser import RUN_TIMEOUT, BrowserRun, run_browser_sdk
from .client_run import run_python_client
from .harness import Run, missing_requirements, run_in_thread


@contextlib.contextmanager
def _loopback_sockets() -> Iterator[None]:
    """Sockets for a session fixture, set up before the per-test fixture that allows them.

    pytest-socket's host guard stays: everything here listens and connects on 127.0.0.1.
    """
    saved = socket.socket
    pytest_socket.enable_socket()
    try:
        yield
    finally:
        socket.socket = saved  # type: ignore[misc]


@pytest.fixture(scope="session")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> BrowserRun:
    """One run of every browser scenario, shared by the tests that check it (about 30 s)."""
    if missing := missing_requirements(browser=True):
        pytest.skip(missing)
    workdir = tmp_path_factory.mktemp("browser")

    async def browser_sdk() -> BrowserRun:
        return await run_browser_sdk(workdir)

    with _loopback_sockets():
        return run_in_thread(browser_sdk, RUN_TIMEOUT + 60)


@pytest.fixture(scope="session")
def client_run() -> Run:
    """The same scenarios played by the Python client (about 10 s), for the comparison."""
    if missing := missing_requirements(browser=True):
        pytest.skip(missing)  # nothing to compare with
    with _loopback_sockets():
        return run_in_thread(run_python_client, 60)


@pytest.fixture
def node_sdk() -> None:
    """Skip unless Node.js and the official node server SDK are installed."""
    if missing := missing_requirements(browser=False):
        pytest.skip(missing)
