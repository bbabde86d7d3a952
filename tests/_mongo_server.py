"""A MongoDB-wire test server for the whole suite: the `mongo_uri` fixture.

By default the session starts SecantusDB (the `secantusdb` package, a test-time tool
only) as a subprocess on a free loopback port, in-memory, advertising a single-node
replica set so that transactions and retryable writes work as on a real deployment.
Set `CHATKIT_TEST_MONGODB_URI` to run the same tests against another server (a
real mongod replica set or Atlas) instead.

A server that cannot be started fails the tests that need it: they are never skipped.

Import the fixture into a conftest to use it::

    from tests._mongo_server import mongo_uri  # noqa: F401
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

__all__ = ["ENV_VAR", "mongo_uri", "start_local_server", "stop_local_server"]

ENV_VAR = "CHATKIT_TEST_MONGODB_URI"
"""The environment variable naming an external server to test against."""

_STARTUP_SECONDS = 60.0
_LISTENING = re.compile(r"listening on (?P<host>[\w.:\-\[\]]+):(?P<port>\d+)")


class _LocalServer:
    """One SecantusDB subprocess, shared by every conftest that imports the fixture."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._uri: str | None = None
        self._users = 0

    def acquire(self) -> str:
        if self._uri is None:
            self._uri = self._start()
        self._users += 1
        return self._uri

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._stop()

    def _start(self) -> str:
        self._workdir = tempfile.TemporaryDirectory(prefix="chatkit-mongo-")
        workdir = Path(self._workdir.name)
        # An explicit (empty) config file turns off the daemon's search for
        # ./secantusd.toml, ~/.secantus/... and /etc/secantus/... on this machine.
        config = workdir / "secantusd.toml"
        config.write_text("")
        log_path = workdir / "server.log"
        command = [
            sys.executable,
            "-m",
            "secantus",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "0",  # the server picks a free port and logs it: no race for a port
            "--storage-path",
            ":memory:",
            "--log-level",
            "INFO",
        ]
        with log_path.open("wb") as log:
            # The log goes to a file, never a pipe: a pipe nobody drains would block it.
            self._process = subprocess.Popen(
                command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            uri = self._wait_until_serving(log_path)
        except BaseException:
            self._stop()
            raise
        return uri

    def _wait_until_serving(self, log_path: Path) -> str:
        assert self._process is not None
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"the SecantusDB test server exited with code {self._process.returncode}:\n"
                    + _tail(log_path)
                )
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            if match is not None:
                uri = f"mongodb://{match['host']}:{match['port']}"
                if _answers_ping(uri):
                    return uri
            time.sleep(0.1)
        raise RuntimeError(
            f"the SecantusDB test server did not accept connections within "
            f"{_STARTUP_SECONDS:.0f}s:\n" + _tail(log_path)
        )

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: the daemon stops and removes its temp storage
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        self._uri = None
        self._users = 0


def _answers_ping(uri: str, timeout_ms: int = 1000) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    except PyMongoError:
        return False
    finally:
        client.close()
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


_SERVER = _LocalServer()


def start_local_server() -> str:
    """Start the shared local test server (once) and return its URI.

    Pair every call with `stop_local_server`; the server stops after the last one.
    """
    return _SERVER.acquire()


def stop_local_server() -> None:
    """Give back one `start_local_server`; the last one stops the server."""
    _SERVER.release()


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """The URI of a MongoDB-wire server for this test session.

    `CHATKIT_TEST_MONGODB_URI` when set, else a SecantusDB subprocess started here
    and stopped when the session ends. Tests give each database a unique name and
    drop it when done.
    """
    external = os.environ.get(ENV_VAR)
    if external:
        if not _answers_ping(external, timeout_ms=20_000):
            raise RuntimeError(f"{ENV_VAR}={external!r} does not answer a ping")
        yield external
        return
    uri = start_local_server()
    try:
        yield uri
    finally:
        stop_local_server()
