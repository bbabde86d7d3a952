"""A real uvicorn server for streaming tests.

In-memory transports (httpx's ASGITransport, Starlette's TestClient) buffer whole
response bodies, so they cannot show incremental delivery, heartbeats on the wire,
backpressure from a slow reader or a mid-stream disconnect. `serve_app` runs an ASGI
app under uvicorn on a loopback socket instead::

    def test_something(serve_app):
        server = serve_app(app)
        async with httpx.AsyncClient(base_url=server.url) as client: ...

Each server runs `uvicorn.Server.serve()` on its own event loop in a background
thread: the client in the test's loop and the app in the server's loop never block
each other (a stalled reader stalls only the socket, as in production), and uvicorn
installs no signal handlers outside the main thread. The app is wrapped in a counter
of in-flight calls so a test can assert that no request task outlives its response.

Self-contained (stdlib, anyio, uvicorn): it can move to tests/conftest.py as is.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import anyio
import pytest
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STARTUP_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 10.0


class _Counted:
    """An ASGI wrapper that counts calls in flight and disconnects the app observed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.calls = 0
        self.disconnects = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.calls += 1
        self.in_flight += 1

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
            return message

        try:
            await self.app(scope, counted_receive, send)
        finally:
            self.in_flight -= 1


class LiveServer:
    """One running uvicorn server: its `url` and ways to look inside it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        socket_options: list[tuple[int, int, int]] | None = None,
        **config: Any,
    ) -> None:
        self._counted = _Counted(app)
        self._sockets: list[socket.socket] | None = None
        if socket_options:
            # Options of the listening socket are inherited by accepted connections
            # (e.g. a small SO_SNDBUF to make the kernel's share of a stalled stream small).
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            for option in socket_options:
                listener.setsockopt(*option)
            listener.bind(("127.0.0.1", 0))
            self._sockets = [listener]
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,  # an ephemeral port, read back once the socket is bound
            "log_level": "warning",
            "log_config": None,  # leave the process' logging configuration alone
            "lifespan": "off",
            "ws": "none",
            "timeout_graceful_shutdown": 3,
            **config,
        }
        self.server = uvicorn.Server(uvicorn.Config(self._counted, **options))
        self.loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        self._serve_task: asyncio.Task[Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="uvicorn-test", daemon=True)

    # -- lifecycle ---------------------------------------------------------------

    def _run(self) -> None:
        # asyncio.run, as `uvicorn.run` does: after `serve()` returns it cancels the tasks
        # still pending (uvicorn cancels request tasks past its graceful timeout but does
        # not wait for them) and lets them run their cleanup before closing the loop.
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # SystemExit from a failed startup included
            self._error = exc
        finally:
            for sock in self._sockets or []:
                sock.close()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._serve_task = asyncio.current_task()
        await self.server.serve(self._sockets)

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("uvicorn did not start") from self._error
            time.sleep(0.005)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(_SHUTDOWN_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("uvicorn did not shut down")
        if self._error is not None and not isinstance(self._error, KeyboardInterrupt):
            raise RuntimeError("uvicorn failed") from self._error

    # -- introspection -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """ASGI calls into the app that have not returned yet."""
        return self._counted.in_flight

    @property
    def calls(self) -> int:
        """HTTP requests the app received."""
        return self._counted.calls

    @property
    def disconnects(self) -> int:
        """`http.disconnect` messages the app received from uvicorn."""
        return self._counted.disconnects

    async def app_tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks on the server's loop other than uvicorn's own `serve()`."""

        async def collect() -> list[asyncio.Task[Any]]:
            me = asyncio.current_task()
            return [t for t in asyncio.all_tasks() if t is not me and t is not self._serve_task]

        assert self.loop is not None, "the server is not running"
        future = asyncio.run_coroutine_threadsafe(collect(), self.loop)
        return await asyncio.wrap_future(future)

    # State that lives on another thread has no event to wait on: these two poll it,
    # with a bound that is only there for liveness.

    async def wait_idle(self, within: float = 5.0) -> None:
        """Wait until no app call is in flight and no task but the server's own runs.

        Fails (TimeoutError) when something still runs after `within` seconds: a
        request task that outlived its response.
        """
        with anyio.fail_after(within):
            while self.in_flight or self.server.server_state.tasks or await self.app_tasks():  # noqa: ASYNC110
                await anyio.sleep(0.01)

    async def wait_for(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Poll `condition` until it holds."""
        with anyio.fail_after(within):
            while not condition():  # noqa: ASYNC110
                await anyio.sleep(0.005)


@pytest.fixture
def serve_app() -> Iterator[Callable[..., LiveServer]]:
    """Start ASGI apps under real uvicorn servers; they are stopped after the test.

    `serve_app(app, **uvicorn_config)` returns a started `LiveServer`; `.url` is
    `http://127.0.0.1:<ephemeral port>`. `socket_options=[(level, option, value)]`
    sets options on the listening socket, which connections inherit.
    """
    servers: list[LiveServer] = []

    def start(app: ASGIApp, **config: Any) -> LiveServer:
        server = LiveServer(app, **config)
        servers.append(server)
        return server.start()

    yield start
    errors = []
    for server in servers:
        try:
            server.stop()
        except RuntimeError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
