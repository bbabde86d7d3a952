"""Fixtures of the developer-experience tests: the CLI as a real process, and a browser.

`run_cli(*args)` runs `chatkit-asgi` to completion; `start_cli(*args)` starts a
server with it on a free loopback port and waits until it answers::

    def test_demo(start_cli, tmp_path):
        server = start_cli("demo", "--store", f"sqlite:///{tmp_path}/demo.db")
        httpx.get(server.url + "/chatkit/")

`browser` is headless Chromium (Debian's `chromium` package) driven by Playwright.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_STARTUP_TIMEOUT = 30.0


def cli_command() -> list[str]:
    """The installed `chatkit-asgi` script next to this interpreter."""
    script = Path(sys.executable).parent / "chatkit-asgi"
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    return [str(script)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class CLIServer:
    """A `chatkit-asgi` server process: its base `url` and its output so far."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """Stop the server (Ctrl+C, as a person would) and return its output."""
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: uvicorn's graceful shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.output()


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `chatkit-asgi ARGS...` in `tmp_path` and return the finished process."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli_command(), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    return run


@pytest.fixture
def start_cli(tmp_path: Path) -> Iterator[Callable[..., CLIServer]]:
    """Start `chatkit-asgi ARGS... --port <free>` in `tmp_path`; stopped after the test."""
    servers: list[CLIServer] = []

    def start(*args: str, ready_path: str = "/chatkit/") -> CLIServer:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*cli_command(), *args, "--port", str(port)],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = CLIServer(process, f"http://127.0.0.1:{port}", log)
        servers.append(server)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"chatkit-asgi exited with {process.returncode}:\n{server.output()}")
            try:
                response = httpx.get(server.url + ready_path, timeout=2)
                if response.status_code < 500:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"chatkit-asgi did not start:\n{server.output()}")
            time.sleep(0.1)

    yield start
    for server in servers:
        server.stop()


async def fetch(method: str, url: str, **options: Any) -> httpx.Response:
    """One HTTP request from an async test (redirects not followed)."""
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.request(method, url, **options)


@pytest.fixture
def chromium() -> str:
    """The Chromium executable (Debian's `chromium` package)."""
    if not Path(CHROMIUM).exists():
        found = shutil.which("chromium")
        if found is None:
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)")
        return found
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """Headless Chromium under Playwright (the system's Chromium; no Playwright download)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()
