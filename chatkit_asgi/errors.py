"""Errors: the ones a responder raises mid-stream, and the ones a request is refused with.

Stream errors (`StreamError`, `CustomStreamError`) keep openai-chatkit's names and
meaning: raised by a responder, they become an `error` event and the stream ends
cleanly. `ChatKitError` and its subclasses refuse a request before any response
starts; the ASGI layer turns them into a JSON body, the same for every status::

    {"error": {"code": "thread_not_found", "message": "...", "details": [...]},
     "message": "..."}

The top-level `message` repeats `error.message`: it is what the ChatKit web component
shows for a failed request (without it, the UI shows the HTTP status text).
"""

from __future__ import annotations

import json
from enum import Enum
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.exceptions import HTTPException

__all__ = [
    "DEFAULT_ALLOW_RETRY",
    "DEFAULT_STATUS",
    "BaseStreamError",
    "ChatKitError",
    "ConflictError",
    "CustomStreamError",
    "ErrorCode",
    "InvalidRequestError",
    "NotSupportedError",
    "ResourceNotFoundError",
    "StreamError",
]


class ErrorCode(str, Enum):
    """Codes of `error` stream events the ChatKit UI maps to localized messages.

    Not a closed set: any string is passed through to the client.
    """

    STREAM_ERROR = "stream.error"


DEFAULT_STATUS: dict[str, int] = {ErrorCode.STREAM_ERROR: 500}
"""The HTTP status a `StreamError` reports as `status_code`, by code (500 otherwise)."""

DEFAULT_ALLOW_RETRY: dict[str, bool] = {ErrorCode.STREAM_ERROR: True}
"""Whether the UI offers a retry for a `StreamError`, by code, when it does not say."""


class BaseStreamError(Exception):
    """An error a responder raises to end its reply with an `error` event."""

    allow_retry: bool


class StreamError(BaseStreamError):
    """An error with a code the UI turns into a localized message."""

    def __init__(self, code: ErrorCode | str, *, allow_retry: bool | None = None) -> None:
        super().__init__(str(code.value if isinstance(code, ErrorCode) else code))
        self.code = code
        self.status_code = DEFAULT_STATUS.get(code, 500)
        # Only the generic stream error is worth retrying by default, as in the reference.
        if allow_retry is None:
            allow_retry = DEFAULT_ALLOW_RETRY.get(code, False)
        self.allow_retry = allow_retry


class CustomStreamError(BaseStreamError):
    """An error whose (already localized) message the UI shows as is."""

    def __init__(self, message: str, *, allow_retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.allow_retry = allow_retry


class ChatKitError(Exception):
    """A request refused before its response started: an HTTP status and a stable code."""

    status_code: int = 400
    code: str = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.details = details or []
        self.headers = headers or {}

    def to_json(self) -> bytes:
        """The response body: `{"error": {"code", "message", "details"}, "message"}`.

        Every JSON error the app sends is built here.
        """
        body = {
            "error": {"code": self.code, "message": self.message, "details": self.details},
            "message": self.message,
        }
        return json.dumps(body, separators=(",", ":"), default=str).encode()


# The codes of the statuses an app's `HTTPException` usually carries; any other is
# `http_error` (the status says the rest).
_HTTP_EXCEPTION_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}


def error_from_http_exception(exc: HTTPException) -> ChatKitError:
    """The refusal a Starlette (or FastAPI) `HTTPException` raised by app code stands for.

    Its status and headers (`WWW-Authenticate`, `Retry-After`, ...) as they are, its
    `detail` as the message, and a code derived from the status. FastAPI allows any
    JSON as `detail`: one that is not a string goes in `details`, and the message is
    the status' reason phrase.
    """
    detail = exc.detail
    details: list[Any]
    if isinstance(detail, str):
        message, details = detail, []
    else:
        try:
            message = HTTPStatus(exc.status_code).phrase
        except ValueError:
            message = f"HTTP {exc.status_code}"
        details = [] if detail is None else [detail]
    return ChatKitError(
        message,
        code=_HTTP_EXCEPTION_CODES.get(exc.status_code, "http_error"),
        status_code=exc.status_code,
        details=details,
        headers=dict(exc.headers or {}),
    )


def store_unavailable_error() -> ChatKitError:
    """What the client gets for a store outage (`StoreUnavailableError`) before any
    response byte: 503, worth retrying shortly."""
    return ChatKitError(
        "The store is unavailable; try again shortly",
        code="store_unavailable",
        status_code=503,
        headers={"Retry-After": "1"},
    )


class InvalidRequestError(ChatKitError):
    """The body is not a valid request (400)."""

    status_code = 400
    code = "invalid_request"


class ResourceNotFoundError(ChatKitError):
    """A thread, item or attachment does not exist or belongs to someone else (404)."""

    status_code = 404
    code = "not_found"


class ConflictError(ChatKitError):
    """The request does not fit the thread's current state (409)."""

    status_code = 409
    code = "invalid_state"


class NotSupportedError(ChatKitError):
    """The responder or app is not set up for this request type (400)."""

    status_code = 400
    code = "not_supported"
