"""The ASGI layer: HTTP in, protocol out.

`ChatKitApp` is a plain ASGI callable: mount it (`Mount("/chatkit", app=...)`)
or wrap an existing app with `ChatKitMiddleware`. It owns what is HTTP about the
protocol (method, media types, body limit, content negotiation, the request
context) and hands the parsed request to the `Engine`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ._app_setup import ServerLike, checked_stores, configure_logging
from ._asgi import (
    Receive,
    Scope,
    Send,
    header,
    is_json_media_type,
    joined_header,
    read_body,
    route_path,
    send_error,
    send_json,
)
from ._attachments import base_url_scope
from ._reply import JSONResult, StreamPlan
from .admission import Admission
from .errors import ChatKitError, error_from_http_exception, store_unavailable_error
from .observability import RequestObserver, RequestRecord, check_health
from .playground import PlaygroundRoutes
from .protocol import Engine
from .responder import ResponderLike
from .shutdown import RequestTracker, TrackedSend
from .store import AttachmentStore, Store, StoreUnavailableError
from .streaming import ClientWatch, Framing, negotiate_framing, stream_reply
from .types import is_streaming_req
from .uploads import UploadRoutes, request_base_url

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .telemetry import Telemetry
    from .types import ChatKitReq

__all__ = ["RUN_ID_HEADER", "ChatKitApp", "ContextFactory", "DisconnectPolicy"]

logger = logging.getLogger("chatkit_asgi")


ContextFactory = Callable[[Request], Any]
"""Builds the request context from the Starlette `Request`; may be async and may
raise `HTTPException` (e.g. 401) to refuse the request."""


DisconnectPolicy = Literal["auto", "cancel", "continue"]
"""What a client disconnect does to a running reply: `cancel` it (saving the partial
answer), let it `continue` to the end in the background (losing nothing), or `auto`:
cancel when the reply's stream options allow cancelling, continue otherwise."""


DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
RUN_ID_HEADER = "X-ChatKit-Run-Id"
"""The response header carrying a streaming reply's run id (`Turn.run_id`)."""
_RUN_ID_HEADER = RUN_ID_HEADER.lower().encode()


class ChatKitApp:
    """The ChatKit protocol endpoint as an ASGI application.

    ::

        app = ChatKitApp(respond, store=SQLiteStore("chatkit.db"),
                         context=lambda request: {"user_id": request.user.identity})

    Args:
        responder: an async-generator function of a `Turn`, or an object with
            `respond` (and optionally `action`, `sync_action`, `add_feedback`,
            `transcribe`, `stream_options`); or a `chatkit_asgi.server.ChatKitServer`,
            served with its own `store` and `attachment_store` (taken now; passing
            other stores as well is refused with `TypeError`).
        store: where threads and items live; defaults to `SQLiteStore("chatkit.db")`.
        attachment_store: where attachment bytes live; needed for uploads.
        context: builds the per-request context from the Starlette `Request`.
        max_body_size: request bodies larger than this get 413, checked while reading.
        heartbeat_interval: seconds of silence before a `: ping` comment is sent
            on a stream (None disables heartbeats).
        buffer_size: frames a reply may run ahead of a slow client.
        disconnect: what a client disconnect does to a running reply.
        page_size: default page size of listings (and of `threads.get_by_id`).
        max_page_size: upper bound of any client-supplied `limit`.
        turn_wait: seconds a reply waits for another reply on the same thread
            to finish before it is refused with 409 `thread_busy`.
        checkpoint_interval: while assistant text streams, it is saved at most
            this often (seconds), so a killed worker loses at most this much of
            an answer; None turns checkpoints off.
        upload_route: serve the attachment routes below the endpoint when there
            is an attachment store: `POST {mount}/upload` (direct uploads) and,
            for stores that keep files themselves, `{mount}/upload/<token>` and
            `{mount}/files/<token>` (see `chatkit_asgi.uploads`).
        public_base_url: the public URL of this endpoint (e.g.
            `https://example.com/chatkit`) for the absolute URLs attachment stores
            hand out; by default the URL each request came to.
        playground: serve the playground page at `GET {mount}/` and its assets at
            `GET {mount}/playground/...` (see `chatkit_asgi.playground`): a
            development tool, off by default.
        admission: awaited before every turn and every non-streaming request; it
            may refuse (see `chatkit_asgi.admission`, e.g. `TokenBucketLimiter`).
        telemetry: OpenTelemetry spans and metrics (extra `otel`, see
            `chatkit_asgi.telemetry`): True for the global providers, unless
            `tracer_provider` / `meter_provider` are given (which turn it on too),
            or a `chatkit_asgi.telemetry.Telemetry` for more settings.
        tenant: the tenant key of a request context, hashed into log records
            and spans (`tenant_hash`) so one tenant's requests can be found.
        log_content: put message text in the log records (off: never logged).
        health: serve `GET {mount}/healthz`: 200 when the store and the attachment
            store answer their `ping`, else 503 (for load balancers; no context
            factory, no authentication).
        health_timeout: seconds each store has to answer the health check.
    """

    def __init__(
        self,
        responder: ResponderLike | ServerLike,
        *,
        store: Store[Any] | None = None,
        attachment_store: AttachmentStore[Any] | None = None,
        context: ContextFactory | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        heartbeat_interval: float | None = 15.0,
        buffer_size: int = 64,
        disconnect: DisconnectPolicy = "auto",
        page_size: int = 20,
        max_page_size: int = 100,
        turn_wait: float = 15.0,
        checkpoint_interval: float | None = 1.0,
        upload_route: bool = True,
        public_base_url: str | None = None,
        playground: bool = False,
        admission: Admission | None = None,
        telemetry: bool | Telemetry = False,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        tenant: Callable[[Any], str | None] | None = None,
        log_content: bool = False,
        health: bool = False,
        health_timeout: float = 3.0,
    ) -> None:
        responder, store, attachment_store = checked_stores(responder, store, attachment_store)
        self.store = store
        # -- production hooks: telemetry, request records, health
        self.telemetry: Telemetry | None = None
        engine_store = store
        if telemetry is not False and telemetry is not True:
            if tracer_provider is not None or meter_provider is not None:
                raise TypeError("give the providers to Telemetry(...), not to ChatKitApp too")
            self.telemetry = telemetry
        elif telemetry or tracer_provider is not None or meter_provider is not None:
            from .telemetry import Telemetry  # imported only when on: OpenTelemetry is optional

            self.telemetry = Telemetry(
                tracer_provider=tracer_provider, meter_provider=meter_provider
            )
        if self.telemetry is not None:
            engine_store = self.telemetry.wrap_store(store)
        self.observer = RequestObserver(
            tenant=tenant, log_content=log_content, telemetry=self.telemetry
        )
        self.health = health
        self.health_timeout = health_timeout
        self.engine = Engine(
            responder,
            engine_store,
            attachment_store,
            page_size=page_size,
            max_page_size=max_page_size,
            turn_wait=turn_wait,
            checkpoint_interval=checkpoint_interval,
            admission=admission,
        )
        self.context_factory = context
        self.max_body_size = max_body_size
        self.heartbeat_interval = heartbeat_interval
        self.buffer_size = buffer_size
        self.disconnect = disconnect
        # Attachment routes: dispatched in `_handle`, implemented in uploads.py.
        self.uploads = (
            UploadRoutes(
                store,
                attachment_store,
                context=self._context,
                admission=lambda: self.engine.admission,
            )
            if attachment_store is not None and upload_route
            else None
        )
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        # Playground page: dispatched in `_handle`, implemented in playground/.
        self.playground = PlaygroundRoutes() if playground else None
        # Graceful shutdown: requests in flight, ended cleanly when cancelled.
        self.requests = RequestTracker()
        # Whether a lifespan reached this app (see `_check_lifespan`).
        self._lifespan_seen = False
        self._lifespan_warned = False
        configure_logging()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        # -- production hooks: the health route; a record when anyone listens
        if (
            self.health
            and scope["method"] in ("GET", "HEAD")
            and route_path(scope).rstrip("/") == "/healthz"
        ):
            await self._send_health(scope, send)
            return
        if not self._lifespan_seen:
            self._check_lifespan(scope)
        record = self.observer.begin(scope)
        async with self.requests.track(send) as send:
            try:
                # Attachment stores build absolute URLs from this; without one there
                # is nothing to build, so the URL is not worked out per request.
                base_url = (
                    base_url_scope(self.public_base_url or request_base_url(scope))
                    if self.engine.attachment_store is not None
                    else contextlib.nullcontext()
                )
                with base_url:
                    await self._handle(scope, receive, send, record)
            except ChatKitError as exc:
                if record is not None:
                    record.failed(exc)
                await send_error(send, exc)
            finally:
                if record is not None:
                    record.end(sys.exc_info()[1])

    async def aclose(self) -> None:
        """Close the stores (their connections and files), once the requests still
        in flight have finished (at most `requests.drain_timeout` seconds)."""
        await self.requests.drain()
        for store in (self.store, self.engine.attachment_store):
            close = getattr(store, "aclose", None)
            if close is not None:
                await close()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """A Starlette/FastAPI lifespan that closes the stores on shutdown::

        Starlette(routes=[Mount("/chatkit", app=chatkit)], lifespan=chatkit.lifespan)

        Inside a lifespan of your own: `async with chatkit.lifespan(app): yield`.
        """
        self._lifespan_seen = True
        try:
            yield
        finally:
            await self.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Only reached when the app runs standalone: a mounted app gets no lifespan.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._lifespan_seen = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _check_lifespan(self, scope: Scope) -> None:
        # Nothing needs starting (the stores connect on first use), so a mounted app
        # without a lifespan serves requests; what it misses is the shutdown that
        # drains requests and closes the stores, and no server hook other than the
        # lifespan runs at shutdown on the server's loop. So: say so, once. Only for a
        # mounted app (a `root_path`): a bare app in tests or scripts is left quiet.
        if self._lifespan_warned or not scope.get("root_path"):
            return
        self._lifespan_warned = True
        logger.warning(
            "ChatKitApp is mounted at %s but received no lifespan, so its stores will not "
            "be closed on shutdown: pass lifespan=chatkit.lifespan to the host app "
            "(Starlette(..., lifespan=...) / FastAPI(lifespan=...)), or enter "
            "`async with chatkit.lifespan(app):` inside the host's own lifespan",
            scope["root_path"],
        )

    async def _send_health(self, scope: Scope, send: Send) -> None:
        status, body = await check_health(
            self.store, self.engine.attachment_store, self.health_timeout
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status != 200:
            headers.append((b"retry-after", b"5"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: TrackedSend,
        record: RequestRecord | None = None,
    ) -> None:
        route = route_path(scope).rstrip("/")
        # -- playground: GET {mount}/ and {mount}/playground/..., before the POST check
        if self.playground is not None and self.playground.matches(route, scope["method"]):
            await self.playground.handle(route, scope, send)
            return
        if (
            route
            and self.uploads is not None
            and await self.uploads.handle(route, scope, receive, send)
        ):
            return
        if route != "":
            raise ChatKitError("No such route", code="not_found", status_code=404)
        if scope["method"] != "POST":
            raise ChatKitError(
                f"Method {scope['method']} not allowed; the ChatKit endpoint takes POST",
                code="method_not_allowed",
                status_code=405,
                headers={"Allow": "POST"},
            )
        if not is_json_media_type(header(scope, b"content-type")):
            raise ChatKitError(
                "The request body must be JSON (Content-Type: application/json)",
                code="unsupported_media_type",
                status_code=415,
            )
        body = await read_body(scope, receive, self.max_body_size)
        request = Request(scope, receive)
        request._body = body  # lets a context factory call request.body()/json() again
        context = await self._context(request)
        parsed = self.engine.parse(body)
        if record is not None:
            record.parsed(parsed, context)
        framing: Framing | None = None
        if is_streaming_req(parsed):
            framing = negotiate_framing(joined_header(scope, b"accept"))
            if framing is None:
                raise ChatKitError(
                    "This request answers text/event-stream, application/x-ndjson or "
                    "application/json; the Accept header allows none of them",
                    code="not_acceptable",
                    status_code=406,
                )
        if framing is None:
            result = await self._prepare(parsed, context, request)
            assert isinstance(result, JSONResult)
            if record is not None:
                record.answered()
            await send_json(send, 200, result.body)
            return
        # One task watches the client for the whole reply, the wait for the thread's
        # turn included: a client that leaves meanwhile must not have its message
        # stored later with nobody to answer.
        client = ClientWatch()
        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.run, receive)
            try:
                await self._reply(parsed, context, request, framing, client, receive, send, record)
            except Exception as exc:  # re-raised below, unwrapped from the task group
                failure = exc
            tasks.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _reply(
        self,
        parsed: ChatKitReq,
        context: Any,
        request: Request,
        framing: Framing,
        client: ClientWatch,
        receive: Receive,
        send: TrackedSend,
        record: RequestRecord | None,
    ) -> None:
        """A streaming request, from the wait for the thread's turn to the last event."""
        with anyio.CancelScope() as waiting:
            client.on_gone(waiting.cancel)
            result = await self._prepare(parsed, context, request)
        client.on_gone(None)
        if waiting.cancelled_caught:
            return  # the client left before its turn came
        assert isinstance(result, StreamPlan)  # streaming requests are answered by a plan
        cancels = self._cancels(result)
        stats = record.begin_turn(result, cancels) if record is not None else None
        send.streaming(framing)  # so a shutdown can end the stream in its framing
        try:
            await stream_reply(
                result,
                receive,
                send,
                framing=framing,
                cancel_on_disconnect=cancels,
                heartbeat_interval=self.heartbeat_interval,
                buffer_size=self.buffer_size,
                extra_headers=[(_RUN_ID_HEADER, result.run_id.encode())],
                stats=stats,
                client=client,
            )
        finally:
            await result.release()  # a no-op once the reply ran; frees the turn if it never did
            if record is not None:
                record.end_turn()

    async def _prepare(
        self, parsed: ChatKitReq, context: Any, request: Request
    ) -> JSONResult | StreamPlan:
        """`engine.prepare`, with store outages and bugs as HTTP errors."""
        try:
            return await self.engine.prepare(parsed, context, request)
        except ChatKitError:
            raise
        except HTTPException as exc:
            # Raised by the responder (sync_action, add_feedback, transcribe,
            # stream_options) or the admission hook, before any response byte.
            raise error_from_http_exception(exc) from None
        except StoreUnavailableError:
            logger.warning("store unavailable during %s", parsed.type, exc_info=True)
            raise store_unavailable_error() from None
        except Exception:
            logger.exception("request %s failed", parsed.type)
            raise ChatKitError(
                "The server failed to handle the request", code="internal_error", status_code=500
            ) from None

    def _cancels(self, plan: StreamPlan) -> bool:
        if self.disconnect == "auto":
            return plan.allow_cancel
        return self.disconnect == "cancel"

    async def _context(self, request: Request) -> Any:
        if self.context_factory is None:
            return {}
        try:
            context = self.context_factory(request)
            if inspect.isawaitable(context):
                context = await context
        except HTTPException as exc:
            raise error_from_http_exception(exc) from None
        except Exception:
            logger.exception("the context factory failed")
            raise ChatKitError(
                "The server failed to handle the request", code="internal_error", status_code=500
            ) from None
        return context
