"""Errors: the ones a responder raises mid-stream, and the ones a request is refused with.

Stream errors (`StreamError`, `CustomStreamError`) keep openai-chatkit's names and
meaning: raised by a responder, they become an `error` event and the stream ends
cleanly. `ChatKitError` and its subclasses refuse a request before any response
starts; the ASGI layer turns them into a 4xx JSON body::

    {"error": {"code": "thread_not_found", "message": "...", "details": [...]}}
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

__all__ = [
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


class BaseStreamError(Exception):
    """An error a responder raises to end its reply with an `error` event."""

    allow_retry: bool


class StreamError(BaseStreamError):
    """An error with a code the UI turns into a localized message."""

    def __init__(self, code: ErrorCode | str, *, allow_retry: bool | None = None) -> None:
        super().__init__(str(code.value if isinstance(code, ErrorCode) else code))
        self.code = code
        # Only the generic stream error is worth retrying by default, as in the reference.
        self.allow_retry = (code == ErrorCode.STREAM_ERROR) if allow_retry is None else allow_retry


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
        """The response body: `{"error": {"code", "message", "details"}}`."""
        body = {"error": {"code": self.code, "message": self.message, "details": self.details}}
        return json.dumps(body, separators=(",", ":"), default=str).encode()


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
