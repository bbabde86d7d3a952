"""HTTP routes for attachment bytes, served by `ChatKitApp` next to the protocol endpoint.

- `POST {mount}/upload`: the **direct** upload strategy. A `multipart/form-data`
  body with a `file` part; the bytes are streamed to the attachment store as
  they arrive (never held whole in memory) and the answer is the attachment
  JSON the ChatKit UI expects. Same context factory as the protocol endpoint.
- `POST|PUT {mount}/upload/<token>`: the target of a **two-phase** upload
  descriptor issued by a store that keeps files itself (the filesystem store).
  The signed token is the capability, like a presigned object-storage URL.
- `GET|HEAD {mount}/files/<token>`: previews and downloads of such a store.

Multipart bodies are parsed with python-multipart's streaming parser (the one
Starlette uses for forms); Starlette's own form API spools whole files before
handing them over, which would defeat streaming into object storage.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import URL
from starlette.requests import Request

from ._asgi import Message, Receive, Scope, Send, header
from ._attachments import (
    PREVIEW_TYPES,
    ExpiredToken,
    InvalidToken,
    content_disposition,
    media_type,
)
from .admission import UPLOAD_REQUEST_TYPE, asked_types
from .errors import (
    ChatKitError,
    ConflictError,
    InvalidRequestError,
    ResourceNotFoundError,
    store_unavailable_error,
)
from .store import AttachmentStore, NotFoundError, Store, StoreUnavailableError
from .types._base import to_wire_json

if TYPE_CHECKING:
    from .admission import Admission
    from .stores.filesystem import FileGrant

__all__ = ["FileServingStore", "UploadRoutes", "request_base_url"]

logger = logging.getLogger("chatkit_asgi")


_MAX_FORM_EXTRA = 64 * 1024
"""Bytes of form content besides the file (other fields, headers) an upload may carry."""
_MAX_HEADER = 8 * 1024


@runtime_checkable
class FileServingStore(Protocol):
    """An attachment store whose bytes the app itself receives and serves.

    `FileSystemAttachmentStore` is one; a store on object storage hands out
    presigned URLs instead and needs none of this.
    """

    def verify(self, token: str, purpose: Literal["download", "upload"]) -> FileGrant:
        """The grant of a genuine token (`InvalidToken` / `ExpiredToken` otherwise)."""
        ...

    async def accept_upload(self, grant: FileGrant, chunks: AsyncIterator[bytes]) -> None:
        """Store a two-phase upload (`FileExistsError` when it was uploaded already)."""
        ...

    async def discard_upload(self, grant: FileGrant) -> None:
        """Remove what `accept_upload` stored for `grant`."""
        ...

    async def open_grant(self, grant: FileGrant) -> tuple[int, AsyncGenerator[bytes, None]]:
        """The size and bytes of a granted file (`NotFoundError` when absent)."""
        ...


def request_base_url(scope: Scope) -> str:
    """The absolute URL of the ChatKit mount the request came to (no trailing slash).

    Scheme and host as the request gives them (the server applies proxy headers),
    then the mount's `root_path`; `Request.base_url` would give the outermost
    app's root instead.
    """
    url = URL(scope=scope)
    return f"{url.scheme}://{url.netloc}{scope.get('root_path', '')}".rstrip("/")


class UploadRoutes:
    """The attachment routes of one `ChatKitApp` (see the module docstring)."""

    def __init__(
        self,
        store: Store[Any],
        attachment_store: AttachmentStore[Any],
        *,
        context: Callable[[Request], Awaitable[Any]],
        admission: Callable[[], Admission | None],
    ) -> None:
        self.store = store
        self.attachment_store = attachment_store
        # The app's request context and admission hook, asked per upload (the hook
        # may be replaced on a running app).
        self._context = context
        self._admission = admission

    async def handle(self, route: str, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer `route` (the path below the mount) if it is an attachment route.

        A store outage (`StoreUnavailableError`) is answered 503 `store_unavailable`
        with `Retry-After`, other failures (a bug) 500, as on the protocol endpoint,
        while no response has started.
        """
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            return await self._route(route, scope, receive, tracking_send)
        except (ChatKitError, anyio.get_cancelled_exc_class()):
            raise
        except StoreUnavailableError:
            # As on the protocol endpoint: an outage, worth retrying, not a bug.
            logger.warning("store unavailable on attachment route %s", route, exc_info=True)
            if started:
                raise
            raise store_unavailable_error() from None
        except Exception:
            logger.exception("attachment route %s failed", route)
            if started:
                raise
            raise ChatKitError(
                "The server failed to handle the request", code="internal_error", status_code=500
            ) from None

    async def _route(self, route: str, scope: Scope, receive: Receive, send: Send) -> bool:
        if route == "/upload":
            await self._direct_upload(scope, receive, send)
            return True
        prefix, _, token = route.lstrip("/").partition("/")
        if prefix == "upload" and token and "/" not in token:
            await self._two_phase_upload(token, scope, receive, send)
            return True
        if prefix == "files" and token and "/" not in token:
            await self._download(token, scope, send)
            return True
        return False

    # -- direct uploads ------------------------------------------------------------------

    async def _direct_upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        _allow(scope, "POST")
        store = self.attachment_store
        if type(store).upload is AttachmentStore.upload:
            raise ChatKitError(
                f"{type(store).__name__} does not take direct uploads; use two-phase uploads",
                code="not_supported",
                status_code=404,
            )
        # Who is asking comes first. The body belongs to the upload: a context
        # factory reading it sees an empty one.
        context = await self._context(Request(scope, _empty_body))
        # Admission before a byte is stored, like every protocol request.
        hook = self._admission()
        if hook is not None and UPLOAD_REQUEST_TYPE in asked_types(hook):
            refusal = await hook(context, UPLOAD_REQUEST_TYPE, None)
            if refusal is not None:
                raise refusal.error()
        form = _MultipartReader(receive, _boundary(scope))
        part = await form.next_file()
        attachment = await store.upload(part.filename, part.content_type, form.chunks(), context)
        try:
            await form.finish()
            await self.store.save_attachment(attachment, context)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.delete_attachment(attachment.id, context)
            raise
        await _send(send, 200, to_wire_json(attachment), {"content-type": "application/json"})

    # -- two-phase uploads to a file-serving store -------------------------------------------

    async def _two_phase_upload(
        self, token: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        _allow(scope, "POST", "PUT")
        store = self._file_store()
        grant = _verified(store, token, "upload")
        form: _MultipartReader | None = None
        if scope["method"] == "PUT":
            declared = header(scope, b"content-type")
            chunks = _body_chunks(receive)
        else:
            form = _MultipartReader(receive, _boundary(scope))
            part = await form.next_file()
            declared = part.content_type
            chunks = form.chunks()
        if media_type(declared) != grant.mime_type:
            raise InvalidRequestError(
                f"The upload is {declared!r}, but the attachment was created as "
                f"{grant.mime_type!r}",
                code="attachment_type_mismatch",
            )
        try:
            await store.accept_upload(grant, chunks)
        except FileExistsError:
            raise ConflictError(
                "This attachment was uploaded already", code="already_uploaded"
            ) from None
        if form is not None:
            try:
                await form.finish()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await store.discard_upload(grant)
                raise
        await _send(send, 204, b"", {})

    # -- downloads -------------------------------------------------------------------------

    async def _download(self, token: str, scope: Scope, send: Send) -> None:
        _allow(scope, "GET", "HEAD")
        store = self._file_store()
        grant = _verified(store, token, "download")
        try:
            size, chunks = await store.open_grant(grant)
        except NotFoundError:
            raise _not_found() from None
        inline = grant.mime_type in PREVIEW_TYPES  # everything else downloads as a file
        headers = {
            "content-type": grant.mime_type,
            "content-length": str(size),
            "content-disposition": content_disposition(
                "inline" if inline else "attachment", grant.name
            ),
            # User content on our origin: never sniffed, never scripted.
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; sandbox",
            "cache-control": f"private, max-age={max(int(grant.expires_at - time.time()), 0)}",
        }
        async with contextlib.aclosing(chunks):
            await send({"type": "http.response.start", "status": 200, "headers": _raw(headers)})
            if scope["method"] == "GET":
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    def _file_store(self) -> FileServingStore:
        store = self.attachment_store
        if not isinstance(store, FileServingStore):
            raise ChatKitError("No such route", code="not_found", status_code=404)
        return store


# -- multipart ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _FilePart:
    filename: str
    content_type: str


class _MultipartReader:
    """Pulls a `multipart/form-data` body from ASGI `receive`, one event at a time.

    python-multipart's parser pushes callbacks as bytes are written to it; this
    turns them into a queue the upload consumes at its own pace, so only the
    chunk being parsed is in memory. Everything but the `file` part is limited
    to `_MAX_FORM_EXTRA` bytes in total.
    """

    def __init__(self, receive: Receive, boundary: bytes) -> None:
        self._receive = receive
        self._events: deque[tuple[str, Any]] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._extra = 0
        self._body_done = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._headers.clear,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": lambda: self._events.append(("part", list(self._headers))),
                "on_part_data": lambda data, start, end: self._events.append(
                    ("data", data[start:end])
                ),
                "on_part_end": lambda: self._events.append(("end", None)),
                "on_end": lambda: self._events.append(("done", None)),
            },
        )

    # parser callbacks

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]
        self._limit_header()

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        self._limit_header()

    def _on_header_end(self) -> None:
        self._count(len(self._field) + len(self._value))
        self._headers.append((bytes(self._field).lower(), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def _limit_header(self) -> None:
        if len(self._field) + len(self._value) > _MAX_HEADER:
            raise InvalidRequestError("A multipart header is too large", code="invalid_multipart")

    def _count(self, size: int) -> None:
        self._extra += size
        if self._extra > _MAX_FORM_EXTRA:
            raise ChatKitError(
                f"The form carries more than {_MAX_FORM_EXTRA} bytes besides the file",
                code="body_too_large",
                status_code=413,
            )

    # pulling

    async def _next(self) -> tuple[str, Any]:
        while not self._events:
            if self._body_done:
                raise InvalidRequestError(
                    "The multipart body ended before its closing boundary",
                    code="invalid_multipart",
                )
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ChatKitError("The client went away", code="client_disconnected")
            try:
                body = message.get("body", b"")
                if body:
                    self._parser.write(body)
                if not message.get("more_body", False):
                    self._body_done = True
                    self._parser.finalize()
            except MultipartParseError as exc:
                raise InvalidRequestError(
                    f"The multipart body is malformed: {exc}", code="invalid_multipart"
                ) from None
        return self._events.popleft()

    async def next_file(self) -> _FilePart:
        """Skip to the `file` part and return its name and media type."""
        while True:
            kind, value = await self._next()
            if kind == "done":
                raise InvalidRequestError("The upload has no `file` part", code="missing_file")
            if kind == "data":
                self._count(len(value))
            if kind != "part":
                continue
            headers = dict(value)
            _, options = parse_options_header(headers.get(b"content-disposition", b""))
            if options.get(b"name") == b"file":
                filename = options.get(b"filename", b"file").decode("utf-8", "replace")
                content_type = headers.get(b"content-type", b"application/octet-stream")
                return _FilePart(filename, content_type.decode("latin-1"))

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes of the current part, as they arrive."""
        while True:
            kind, value = await self._next()
            if kind == "end":
                return
            if kind == "data" and value:
                yield value

    async def finish(self) -> None:
        """Read the rest of the body (the closing boundary, small fields)."""
        while True:
            kind, value = await self._next()
            if kind == "data":
                self._count(len(value))
            elif kind == "done":
                break
        while not self._body_done:  # an epilogue after the closing boundary
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ChatKitError("The client went away", code="client_disconnected")
            self._count(len(message.get("body", b"")))
            self._body_done = not message.get("more_body", False)


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """A raw request body, chunk by chunk."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ChatKitError("The client went away", code="client_disconnected")
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


# -- helpers -------------------------------------------------------------------------------


def _boundary(scope: Scope) -> bytes:
    media, options = parse_options_header(header(scope, b"content-type"))
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise ChatKitError(
            "Uploads are multipart/form-data with a `file` part",
            code="unsupported_media_type",
            status_code=415,
        )
    return boundary


def _allow(scope: Scope, *methods: str) -> None:
    if scope["method"] not in methods:
        raise ChatKitError(
            f"Method {scope['method']} not allowed here",
            code="method_not_allowed",
            status_code=405,
            headers={"Allow": ", ".join(methods)},
        )


def _not_found() -> ResourceNotFoundError:
    return ResourceNotFoundError("No such attachment", code="attachment_not_found")


def _verified(
    store: FileServingStore, token: str, purpose: Literal["download", "upload"]
) -> FileGrant:
    try:
        return store.verify(token, purpose)
    except ExpiredToken:
        raise ChatKitError(
            "This link has expired; reload the conversation for a fresh one",
            code="url_expired",
            status_code=403,
        ) from None
    except InvalidToken:
        # Tampered, foreign or made-up tokens look exactly like missing files.
        raise _not_found() from None


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    all_headers = {**headers, "content-length": str(len(body))}
    await send({"type": "http.response.start", "status": status, "headers": _raw(all_headers)})
    await send({"type": "http.response.body", "body": body})
