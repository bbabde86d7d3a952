"""Graceful shutdown: what becomes of the requests still running when the server stops.

ASGI servers stop in steps: they stop accepting connections, let running requests
go on for a grace period (uvicorn's `--timeout-graceful-shutdown`, hypercorn's
`--graceful-timeout`), cancel the requests still running, and then run the
lifespan shutdown, without waiting for the cancelled requests to finish. Left at
that, a streaming client gets a cut body, and the app closes its stores while the
cancelled replies are still saving their partial answers. `RequestTracker` closes
both gaps:

- A request cancelled from outside (the server's deadline) ends its response
  properly: a stream gets a last, retryable `error` event and its end, in the
  stream's own framing; a request whose response has not started (e.g. one
  waiting for its thread's turn) gets a JSON 503 `shutting_down` with
  `Retry-After`. The reply itself has already been stopped like a cancelled one
  by then (its text so far and the hidden "cancelled" note are saved).
- `drain()` waits, up to `drain_timeout`, until no request is in flight;
  `ChatKitApp.aclose()` (so the lifespan shutdown) calls it before closing the
  stores, so their last writes land.

Without a grace period (uvicorn's default) the server waits for every stream to
end by itself, which an endless or very long reply never does: set one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ._asgi import Message, Send
from .errors import ChatKitError, ErrorCode
from .streaming import Framing
from .types import ErrorEvent

__all__ = ["RequestTracker", "TrackedSend"]


DRAIN_TIMEOUT = 10.0
"""Default bound of `drain()`: the reply cleanup's own bound (5 s) and some room."""
CLOSE_TIMEOUT = 1.0
"""How long ending one cancelled response may take (a stalled client cannot hold it)."""

_SHUTTING_DOWN = ChatKitError(
    "The server is shutting down; try again shortly", code="shutting_down", status_code=503
).to_json()


class RequestTracker:
    """Counts the app's requests in flight and ends cancelled ones cleanly."""

    def __init__(
        self, *, drain_timeout: float = DRAIN_TIMEOUT, close_timeout: float = CLOSE_TIMEOUT
    ) -> None:
        self.drain_timeout = drain_timeout
        self.close_timeout = close_timeout
        self.in_flight = 0

    @asynccontextmanager
    async def track(self, send: Send) -> AsyncIterator[TrackedSend]:
        """Around one HTTP request: yields the `send` the request must use."""
        response = TrackedSend(send)
        self.in_flight += 1
        try:
            yield response
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(self.close_timeout, shield=True):
                await response.end_cleanly()
            raise
        finally:
            self.in_flight -= 1

    async def drain(self) -> None:
        """Wait until no request is in flight, at most `drain_timeout` seconds."""
        # Polling: the app may serve several event loops, and this runs once per process.
        with anyio.move_on_after(self.drain_timeout):
            while self.in_flight > 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)


class TrackedSend:
    """An ASGI `send` that remembers what has been sent of one response, to end it
    properly if it is cut short. The app tells it the framing of a stream
    (`streaming`) when it starts one: the framing is the app's choice, not read
    back from the headers."""

    __slots__ = ("_send", "complete", "framing", "sent_content", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.complete = False
        self.framing: Framing | None = None
        self.sent_content = False

    def streaming(self, framing: Framing) -> None:
        """The response about to start is a stream in this framing."""
        self.framing = framing

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body":
            if not message.get("more_body", False):
                self.complete = True
            if bytes(message.get("body", b"")).strip():
                self.sent_content = True  # JSON-array heartbeats are blanks before "["
        await self._send(message)

    async def end_cleanly(self) -> None:
        if self.complete:
            return
        try:
            if not self.started:
                await self(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_SHUTTING_DOWN)).encode()),
                            (b"retry-after", b"1"),
                        ],
                    }
                )
                await self({"type": "http.response.body", "body": _SHUTTING_DOWN})
            elif self.framing is not None:
                framing = self.framing
                event = ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=True)
                lead = framing.separator if self.sent_content else framing.opening
                body = lead + framing.frame(event) + framing.closing
                await self({"type": "http.response.body", "body": body, "more_body": False})
            # Any other response (a download with a Content-Length) cannot be ended early.
        except OSError:
            pass  # the client is gone as well
