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
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ._attachments import base_url_scope
from .admission import Admission
from .engine import Engine, JSONResult, StreamPlan
from .errors import ChatKitError, error_from_http_exception
from .observability import RequestObserver, RequestRecord, check_health
from .playground import PlaygroundRoutes
from .responder import ResponderLike
from .shutdown import RequestTracker
from .store import AttachmentStore, Store, StoreUnavailableError
from .streaming import JSON_ARRAY, NDJSON, SSE, ClientWatch, Framing, stream_reply
from .types import is_streaming_req
from .uploads import UploadRoutes, request_base_url

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .telemetry import Telemetry
    from .types import ChatKitReq

__all__ = ["RUN_ID_HEADER", "ChatKitApp", "ChatKitMiddleware", "ContextFactory", "DisconnectPolicy"]

logger = logging.getLogger("chatkit_asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ContextFactory = Callable[[Request], Any]
"""Builds the request context from the Starlette `Request`; may be async and may
raise `HTTPException` (e.g. 401) to refuse the request."""


@runtime_checkable
class ServerLike(Protocol):
    """A `chatkit_asgi.server.ChatKitServer`, which `ChatKitApp` serves with its stores.

    Recognised by this method rather than by class, so app.py never imports server.py:
    the compatibility layer sits on top of the engine and the framing, as the app does,
    and an import from the app down to it would be the start of an import circle (and
    would load the layer for apps that do not use it).
    """

    def _chatkit_mount(
        self, store: Store[Any] | None, attachment_store: AttachmentStore[Any] | None
    ) -> tuple[ResponderLike, Store[Any], AttachmentStore[Any] | None]: ...


DisconnectPolicy = Literal["auto", "cancel", "continue"]
"""What a client disconnect does to a running reply: `cancel` it (saving the partial
answer), let it `continue` to the end in the background (losing nothing), or `auto`:
cancel when the reply's stream options allow cancelling, continue otherwise."""


DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
RUN_ID_HEADER = "X-ChatKit-Run-Id"
"""The response header carrying a streaming reply's run id (`Turn.run_id`)."""
_RUN_ID_HEADER = RUN_ID_HEADER.lower().encode()
_JSON_TYPES = ("application/json",)


def _configure_logging() -> None:
    level = os.environ.get("LOG_LEVEL")
    if not level:
        return
    library = logging.getLogger("chatkit_asgi")
    library.setLevel(level.upper())
    if not library.handlers and not logging.getLogger().handlers:
        # Python's last-resort handler drops everything below WARNING; asking for
        # a level should make it visible.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        library.addHandler(handler)


def _route_path(scope: Scope) -> str:
    """The path below the mount point (Starlette keeps the full path in `path`)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _joined_header(scope: Scope, name: bytes) -> str | None:
    """A list-valued header sent on several lines, as one comma-separated value."""
    values = [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == name]
    return ", ".join(values) if values else None


def _is_json_media_type(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _accepted_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((fields[0].lower(), quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """RFC 9110 style: the most specific matching range decides."""
    family = media.split("/", 1)[0] + "/*"
    best = (-1, 0.0)
    for media_range, quality in ranges:
        specificity = {media: 2, family: 1, "*/*": 0}.get(media_range, -1)
        if specificity > best[0]:
            best = (specificity, quality)
    return best[1]


_STREAM_OFFERS = (  # in order of preference when the client likes several equally
    ("text/event-stream", SSE),
    ("application/x-ndjson", NDJSON),
    ("application/json", JSON_ARRAY),
)


def _negotiate_stream(accept: str | None) -> Framing | None:
    """The streaming framing the client accepts best; SSE when it does not say."""
    if accept is None or not accept.strip():
        return SSE
    ranges = _accepted_ranges(accept)
    scored = [
        (_quality(ranges, media), -rank, framing)
        for rank, (media, framing) in enumerate(_STREAM_OFFERS)
    ]
    quality, _, framing = max(scored, key=lambda entry: entry[:2])
    return framing if quality > 0 else None


def _check_store(value: object, argument: str, base: type[Any], example: str) -> None:
    """Refuse a store of the wrong kind now, rather than with a 500 at the first request."""
    if isinstance(value, base):
        return
    kind = base.__name__
    if inspect.isclass(value) and issubclass(value, base):
        hint = f"{value.__name__} is the class: call it, {argument}={value.__name__}(...)"
    elif isinstance(value, (str, os.PathLike)):
        hint = f"a path is not a store: open one, e.g. {example}"
    else:
        hint = f"pass an instance of a {kind} subclass, e.g. {example}"
    raise TypeError(f"{argument} must be a chatkit_asgi {kind}, not {value!r}: {hint}")


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
        # A class passes the ServerLike check (it has the method); BoundResponder says why not.
        if isinstance(responder, ServerLike) and not inspect.isclass(responder):
            # a ChatKitServer: its responder face, its stores
            responder, store, attachment_store = responder._chatkit_mount(store, attachment_store)
        if store is None:
            from .stores.sqlite import SQLiteStore

            store = SQLiteStore("chatkit.db")
        _check_store(store, "store", Store, 'store=SQLiteStore("chatkit.db")')
        if attachment_store is not None:
            _check_store(
                attachment_store,
                "attachment_store",
                AttachmentStore,
                'attachment_store=FileSystemAttachmentStore("uploads")',
            )
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
        self.uploads = UploadRoutes(self) if attachment_store is not None and upload_route else None
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        # Playground page: dispatched in `_handle`, implemented in playground/.
        self.playground = PlaygroundRoutes() if playground else None
        # Graceful shutdown: requests in flight, ended cleanly when cancelled.
        self.requests = RequestTracker()
        # Whether a lifespan reached this app (see `_check_lifespan`).
        self._lifespan_seen = False
        self._lifespan_warned = False
        _configure_logging()

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
            and _route_path(scope).rstrip("/") == "/healthz"
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
                await _send_error(send, exc)
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
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord | None = None
    ) -> None:
        route = _route_path(scope).rstrip("/")
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
        if not _is_json_media_type(_header(scope, b"content-type")):
            raise ChatKitError(
                "The request body must be JSON (Content-Type: application/json)",
                code="unsupported_media_type",
                status_code=415,
            )
        body = await self._read_body(scope, receive)
        request = Request(scope, receive)
        request._body = body  # lets a context factory call request.body()/json() again
        context = await self._context(request)
        parsed = self.engine.parse(body)
        if record is not None:
            record.parsed(parsed, context)
        framing: Framing | None = None
        if is_streaming_req(parsed):
            framing = _negotiate_stream(_joined_header(scope, b"accept"))
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
            await _send_json(send, 200, result.body)
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
        send: Send,
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
            raise ChatKitError(
                "The store is unavailable; try again shortly",
                code="store_unavailable",
                status_code=503,
                headers={"Retry-After": "1"},
            ) from None
        except Exception:
            logger.exception("request %s failed", parsed.type)
            raise ChatKitError(
                "The server failed to handle the request", code="internal_error", status_code=500
            ) from None

    def _cancels(self, plan: StreamPlan) -> bool:
        if self.disconnect == "auto":
            return plan.allow_cancel
        return self.disconnect == "cancel"

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        too_large = ChatKitError(
            f"The request body exceeds the limit of {self.max_body_size} bytes",
            code="body_too_large",
            status_code=413,
        )
        declared = _header(scope, b"content-length")
        if declared is not None:
            # ASCII digits only: str.isdigit() and int() also take "²" or "٣".
            if not (declared.isascii() and declared.isdigit()):
                raise ChatKitError("The Content-Length header is not a number")
            if int(declared) > self.max_body_size:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ChatKitError("The client went away", code="client_disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_size:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

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


class ChatKitMiddleware:
    """Serves the ChatKit protocol at one path of an existing ASGI app.

    ::

        app = Starlette(routes=[...], middleware=[
            Middleware(ChatKitMiddleware, path="/chatkit", responder=respond, store=store),
        ])

    Every other path passes through to the wrapped app untouched. Pass a ready
    `ChatKitApp` as `chatkit=`, or a `responder` and any `ChatKitApp` options.
    """

    def __init__(
        self,
        app: ASGIApp,
        responder: ResponderLike | ServerLike | None = None,
        *,
        path: str = "/chatkit",
        chatkit: ChatKitApp | None = None,
        **options: Any,
    ) -> None:
        if chatkit is None:
            if responder is None:
                raise TypeError("ChatKitMiddleware needs a responder or a chatkit= app")
            chatkit = ChatKitApp(responder, **options)
        self.app = app
        self.chatkit = chatkit
        self.path = "/" + path.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "http":
            path = _route_path(scope)
            if path == self.path or path.startswith(self.path + "/"):
                # Like a Mount: the ChatKit app sees its own paths below `root_path`.
                root_path = scope.get("root_path", "") + self.path
                await self.chatkit({**scope, "root_path": root_path}, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The wrapped app runs its own lifespan; the ChatKit app's runs around it:
        # it is started first (nothing to open: the stores connect on first use) and
        # shut down last, once the wrapped app's shutdown is over, so the site's own
        # cleanup may still use the ChatKit stores.
        self.chatkit._lifespan_seen = True

        async def send_after_chatkit(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.chatkit.aclose()
            await send(message)

        await self.app(scope, receive, send_after_chatkit)


async def _send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, exc: ChatKitError) -> None:
    await _send_json(send, exc.status_code, exc.to_json(), exc.headers)
