"""Fixtures of the conformance tests: the official SDKs, where this machine can run them.

Where Node.js, Chromium or the npm packages are missing, the tests that need them skip with
one line naming what is missing (`script/setup-conformance` installs all of it).
"""

from __future__ import annotations

import socket

import pytest
import pytest_socket

from .browser import RUN_TIMEOUT, BrowserRun, run_browser_sdk
from .harness import missing_requirements, run_in_thread


@pytest.fixture(scope="session")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> BrowserRun:
    """One run of every browser scenario, shared by the tests that check it (about 30 s)."""
    if missing := missing_requirements(browser=True):
        pytest.skip(missing)
    # Session fixtures are set up before the per-test fixture that allows loopback sockets;
    # the servers only ever listen and connect on 127.0.0.1.
    saved = socket.socket
    pytest_socket.enable_socket()
    try:
        workdir = tmp_path_factory.mktemp("browser")
        return run_in_thread(lambda: run_browser_sdk(workdir), RUN_TIMEOUT + 60)
    finally:
        socket.socket = saved  # type: ignore[misc]


@pytest.fixture
def node_sdk() -> None:
    """Skip unless Node.js and the official node server SDK are installed."""
    if missing := missing_requirements(browser=False):
        pytest.skip(missing)
