"""A PostgreSQL server for the whole suite: the `postgres_url` fixture.

By default the session starts a throwaway cluster: `initdb` and `pg_ctl` from the
machine's PostgreSQL (Debian's `/usr/lib/postgresql/<version>/bin`, or `PATH`, or
`CHATKIT_TEST_POSTGRES_BIN`) in a temporary directory, on a free loopback port,
with its unix socket in that directory and durability off (fsync). PostgreSQL
refuses to run as root, so under root the cluster runs as the unprivileged user
`nobody` (through `runuser` or `setpriv`). The cluster is stopped and deleted when
the session ends.

Set `CHATKIT_TEST_POSTGRES_URL` (an SQLAlchemy URL, e.g.
`postgresql+asyncpg://user:pw@host/db`) to run the same tests against an existing
server instead. Missing binaries fail the tests that need a server: they are never
skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ENV_VAR",
    "postgres_url",
    "schema_store",
    "start_local_server",
    "stop_local_server",
]

ENV_VAR = "CHATKIT_TEST_POSTGRES_URL"
"""The environment variable naming an external server to test against."""

BIN_VAR = "CHATKIT_TEST_POSTGRES_BIN"
"""The environment variable naming the directory of `initdb` and `pg_ctl`."""

_STARTUP_SECONDS = 60.0
_SUPERUSER = "chatkit"
_UNPRIVILEGED = "nobody"


def _bin_dir() -> Path:
    candidates: list[str] = []
    if os.environ.get(BIN_VAR):
        candidates.append(os.environ[BIN_VAR])
    # Newest Debian version first.
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(path.split("/")[-2]) if path.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL's initdb and pg_ctl were not found (looked in $CHATKIT_TEST_POSTGRES_BIN, "
        "/usr/lib/postgresql/*/bin and PATH). Install the server (Debian: "
        "`apt-get install postgresql`) or set CHATKIT_TEST_POSTGRES_URL to an existing server."
    )


def _as_postgres_user(command: list[str]) -> list[str]:
    """`command`, run as an unprivileged user when this process is root."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", _UNPRIVILEGED, "--", *command]
    if shutil.which("setpriv"):
        entry = pwd.getpwnam(_UNPRIVILEGED)
        return [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            *command,
        ]
    raise RuntimeError("running as root, and neither runuser nor setpriv is available")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=_STARTUP_SECONDS)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(
            f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}"
        )


class _LocalServer:
    """One throwaway cluster, shared by every conftest that imports the fixture."""

    def __init__(self, *, durable: bool = False) -> None:
        # Durable: a commit survives the server process being killed (not the OS).
        self.durable = durable
        self._workdir: Path | None = None
        self._bin: Path | None = None
        self._url: str | None = None
        self._port = 0
        self._users = 0

    @property
    def url(self) -> str:
        """The cluster's SQLAlchemy URL (once started)."""
        assert self._url is not None
        return self._url

    def acquire(self) -> str:
        if self._url is None:
            self._url = self._start()
        self._users += 1
        return self._url

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._stop()

    def _start(self) -> str:
        self._bin = _bin_dir()
        self._workdir = Path(tempfile.mkdtemp(prefix="chatkit-postgres-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_UNPRIVILEGED)
            os.chown(self._workdir, entry.pw_uid, entry.pw_gid)
        os.chmod(self._workdir, 0o755)
        data = self._workdir / "data"
        try:
            _run(
                _as_postgres_user(
                    [
                        str(self._bin / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        _SUPERUSER,
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                    ]
                ),
                "initdb",
            )
            for _attempt in range(3):  # the free port may be taken before the server binds
                self._port = _free_port()
                try:
                    self.resume()
                except RuntimeError:
                    if _attempt == 2:
                        raise
                    continue
                return f"postgresql+asyncpg://{_SUPERUSER}@127.0.0.1:{self._port}/postgres"
        except BaseException:
            self._stop()
            raise
        raise AssertionError("unreachable")

    def resume(self) -> None:
        """Start the server on its port and data directory (again, after `pause`)."""
        assert self._workdir is not None and self._bin is not None
        log = self._workdir / "server.log"
        options = (
            f"-p {self._port} -k {self._workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        if not self.durable:
            # Commits may be lost if the server process dies: fine for a test session.
            options += " -c synchronous_commit=off"
        command = [str(self._bin / "pg_ctl"), "-D", str(self._workdir / "data"), "-l", str(log)]
        command += ["-o", options, "-w", "-t", str(int(_STARTUP_SECONDS)), "start"]
        _run(_as_postgres_user(command), "pg_ctl start", log)

    def pause(self) -> None:
        """Stop the server at once (as a crash would), keeping its data and port."""
        assert self._workdir is not None and self._bin is not None
        data = str(self._workdir / "data")
        command = [str(self._bin / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]
        _run(_as_postgres_user(command), "pg_ctl stop")

    def _stop(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None and self._bin is not None and (workdir / "data").exists():
            data = str(workdir / "data")
            subprocess.run(
                _as_postgres_user(
                    [str(self._bin / "pg_ctl"), "-D", data, "-m", "immediate", "stop"]
                ),
                capture_output=True,
                timeout=_STARTUP_SECONDS,
            )
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        self._url = None
        self._users = 0


_SERVER = _LocalServer()


@contextmanager
def private_server() -> Iterator[_LocalServer]:
    """A cluster of the caller's own, to `pause` (crash) and `resume`; `.url` is its URL.

    Commits are on disk before they are acknowledged, so they survive `pause`.
    """
    server = _LocalServer(durable=True)
    server.acquire()
    try:
        yield server
    finally:
        server.release()


def start_local_server() -> str:
    """Start the shared throwaway cluster (once) and return its SQLAlchemy URL.

    Pair every call with `stop_local_server`; the cluster stops after the last one.
    """
    return _SERVER.acquire()


def stop_local_server() -> None:
    """Give back one `start_local_server`; the last one stops the cluster."""
    _SERVER.release()


def _answers(url: str, timeout: float) -> bool:
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def ping() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(ping())
            return True
        except Exception:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a PostgreSQL server for this test session.

    `CHATKIT_TEST_POSTGRES_URL` when set, else a throwaway cluster started here and
    stopped when the session ends. Tests keep their tables in a schema of their own
    (see tests/postgres/conftest.py) and drop it when done.
    """
    external = os.environ.get(ENV_VAR)
    if external:
        if not _answers(external, timeout=20.0):
            raise RuntimeError(f"{ENV_VAR}={external!r} does not answer")
        yield external
        return
    url = start_local_server()
    try:
        yield url
    finally:
        stop_local_server()


def schema_options(schema: str) -> dict[str, Any]:
    """Engine options whose connections put `schema` first on the search path."""
    return {"connect_args": {"server_settings": {"search_path": schema}}}


@asynccontextmanager
async def new_schema(url: str) -> AsyncIterator[str]:
    """A schema no other test uses, on `url`, dropped with everything in it on exit."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    schema = f"chatkit_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield schema
        finally:
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def schema_store(url: str, **options: Any) -> AsyncIterator[Any]:
    """A `SQLAlchemyStore` on `url` whose tables live in a new schema, dropped on exit.

    For suites parametrized over stores: `async with schema_store(postgres_url,
    tenant=...) as store:`.
    """
    from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore

    async with new_schema(url) as schema:
        store: SQLAlchemyStore[Any] = SQLAlchemyStore(
            url, engine_options=schema_options(schema), **options
        )
        try:
            yield store
        finally:
            await store.aclose()
