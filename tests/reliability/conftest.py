"""What the reliability tests share: real servers, a store that fails on cue, snapshots.

- `serve_app` (from the streaming tests): an ASGI app under uvicorn in a thread.
- `uvicorn_process`: an app under uvicorn in its own process, to signal and kill.
- `mongo_uri`: the session's MongoDB-wire test server (see `tests/_mongo_server.py`).
- `restartable_mongo`: a MongoDB-wire server of the test's own, on disk, that the
  test kills and starts again.
- `FaultyStore`: wraps any store and raises `StoreUnavailableError` when told to.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from chatkit_asgi import Store, StoreUnavailableError
from chatkit_asgi.store import StoreItemType, TurnLease
from chatkit_asgi.types import Attachment, Page, ThreadItem, ThreadMetadata
from tests._mongo_server import mongo_uri  # noqa: F401 - the session's server
from tests.streaming.conftest import LiveServer, serve_app

__all__ = ["LiveServer", "serve_app"]

ROOT = Path(__file__).resolve().parents[2]
ALICE = {"user": "alice"}
BOB = {"user": "bob"}

# Bounds that only keep a broken mechanism from hanging the suite.
PATIENCE = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at startup:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{what} did not listen within {PATIENCE}s")


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, and wait for the process to be gone (nothing if it already exited)."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(PATIENCE)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; SIGKILL if it is still running after `PATIENCE` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            kill_process(process)


def unique_database() -> str:
    """A database name no other test uses."""
    return f"chatkit_reliability_{uuid.uuid4().hex[:12]}"


# -- uvicorn in a process ------------------------------------------------------------


class UvicornProcess:
    """`python -m uvicorn <app>` on a loopback port, its output in a log file."""

    def __init__(
        self,
        app: str,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        graceful_timeout: int | None = None,
        factory: bool = False,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--lifespan",
            "on",
            "--log-level",
            "info",
        ]
        if graceful_timeout is not None:
            command += ["--timeout-graceful-shutdown", str(graceful_timeout)]
        if factory:
            command.append("--factory")
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(self.port, self.process, f"uvicorn {app}", log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM: what a deploy or `docker stop` sends."""
        self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the worker dies on the spot."""
        kill_process(self.process)

    def wait(self, timeout: float = PATIENCE) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def uvicorn_process(tmp_path: Path) -> Iterator[Callable[..., UvicornProcess]]:
    """Start `UvicornProcess`es (args as its constructor, minus the log); all are
    stopped after the test."""
    started: list[UvicornProcess] = []

    def start(app: str, **options: Any) -> UvicornProcess:
        worker = UvicornProcess(app, tmp_path / f"uvicorn-{len(started)}.log", **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


# -- a MongoDB-wire server that can be killed and restarted ---------------------------


class RestartableMongo:
    """A SecantusDB server on disk (every commit synced), on a fixed port.

    `kill()` SIGKILLs it; `start()` brings it back on the same port with the same
    data, so a client that was connected before reconnects by itself.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.config = workdir / "secantusd.toml"
        self.config.write_text("")  # no search for a configuration on this machine
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.workdir / "server.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "secantus",
                    "--config",
                    str(self.config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--storage-path",
                    str(self.workdir / "data"),
                    "--sync-on-commit",
                    "--log-level",
                    "WARNING",
                ],
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SecantusDB exited:\n{log.read_text(errors='replace')}")
            client: MongoClient[dict[str, Any]] = MongoClient(
                self.uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300
            )
            try:
                client.admin.command("ping")
                return
            except PyMongoError:
                time.sleep(0.05)
            finally:
                client.close()
        raise RuntimeError("SecantusDB did not answer a ping")

    def kill(self) -> None:
        if self.process is not None:
            kill_process(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture
def restartable_mongo(tmp_path: Path) -> Iterator[RestartableMongo]:
    """A running `RestartableMongo` of this test, stopped afterwards."""
    server = RestartableMongo(tmp_path)
    server.start()
    yield server
    server.stop()


# -- a store that fails on cue --------------------------------------------------------

FailWhen = Callable[[str], bool]


class FaultyStore(Store[Any]):
    """Delegates to `inner`; while `fail_when(method_name)` holds, the call raises
    `StoreUnavailableError` instead, before reaching the inner store.

    `calls` lists every store method called, in order, failed ones included.
    """

    def __init__(self, inner: Store[Any]) -> None:
        self.inner = inner
        self.fail_when: FailWhen | None = None
        self.calls: list[str] = []
        self.failures = 0

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if self.fail_when is not None and self.fail_when(method):
            self.failures += 1
            raise StoreUnavailableError(f"injected outage in {method}")

    def generate_thread_id(self, context: Any) -> str:
        return self.inner.generate_thread_id(context)

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: Any
    ) -> str:
        return self.inner.generate_item_id(item_type, thread, context)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        self._enter("load_thread")
        return await self.inner.load_thread(thread_id, context)

    async def save_thread(self, thread: ThreadMetadata, context: Any) -> None:
        self._enter("save_thread")
        await self.inner.save_thread(thread, context)

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        self._enter("load_thread_items")
        return await self.inner.load_thread_items(thread_id, after, limit, order, context)

    async def save_attachment(self, attachment: Attachment, context: Any) -> None:
        self._enter("save_attachment")
        await self.inner.save_attachment(attachment, context)

    async def load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        self._enter("load_attachment")
        return await self.inner.load_attachment(attachment_id, context)

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        self._enter("delete_attachment")
        await self.inner.delete_attachment(attachment_id, context)

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: Any
    ) -> Page[ThreadMetadata]:
        self._enter("load_threads")
        return await self.inner.load_threads(limit, after, order, context)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self._enter("add_thread_item")
        await self.inner.add_thread_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self._enter("save_item")
        await self.inner.save_item(thread_id, item, context)

    async def load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        self._enter("load_item")
        return await self.inner.load_item(thread_id, item_id, context)

    async def delete_thread(self, thread_id: str, context: Any) -> None:
        self._enter("delete_thread")
        await self.inner.delete_thread(thread_id, context)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        self._enter("delete_thread_item")
        await self.inner.delete_thread_item(thread_id, item_id, context)

    async def delete_thread_items_after(self, thread_id: str, item_id: str, context: Any) -> None:
        self._enter("delete_thread_items_after")
        await self.inner.delete_thread_items_after(thread_id, item_id, context)

    async def acquire_turn(self, thread_id: str, context: Any, wait: float) -> TurnLease | None:
        self._enter("acquire_turn")
        return await self.inner.acquire_turn(thread_id, context, wait)


# -- looking at what a store holds -------------------------------------------------------


async def all_items(store: Store[Any], thread_id: str, context: Any) -> list[ThreadItem]:
    """Every item of a thread, hidden ones included, oldest first."""
    items: list[ThreadItem] = []
    after: str | None = None
    while True:
        page = await store.load_thread_items(thread_id, after, 100, "asc", context)
        items.extend(page.data)
        if not page.has_more or not page.data:
            return items
        after = page.data[-1].id


async def snapshot(store: Store[Any], context: Any, attachment_ids: list[str]) -> list[str]:
    """Everything a user owns, as JSON: threads, all their items, the named attachments."""
    out: list[str] = []
    threads = await store.load_threads(1000, None, "asc", context)
    assert not threads.has_more
    for thread in threads.data:
        out.append((await store.load_thread(thread.id, context)).model_dump_json())
        out.extend(item.model_dump_json() for item in await all_items(store, thread.id, context))
    for attachment_id in attachment_ids:
        out.append((await store.load_attachment(attachment_id, context)).model_dump_json())
    return out


@pytest.fixture
async def closing() -> AsyncIterator[list[Any]]:
    """Objects with `aclose` to close after the test (apps, stores)."""
    objects: list[Any] = []
    yield objects
    for obj in reversed(objects):
        await obj.aclose()
