"""Plumbing shared by the attachment stores and the upload routes (private).

- `AttachmentRules`: the MIME allow-list and size limit, checked at
  `attachments.create`, on direct uploads and while bytes stream in.
- `storage_segment` / `owner_segment`: turn tenants and ids into path or key
  segments that can never climb out of their directory (`..`, `/`, NUL).
- `Signer`: HMAC tokens with an expiry, for URLs the app serves itself.
- `base_url_scope` / `current_base_url`: the absolute URL of the ChatKit mount
  for the request being handled, so stores can hand out absolute URLs without
  knowing about HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import AnyUrl

from .errors import ChatKitError, InvalidRequestError
from .types import (
    Attachment,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)

__all__ = [
    "DEFAULT_ALLOWED_TYPES",
    "DEFAULT_MAX_SIZE",
    "PREVIEW_TYPES",
    "AttachmentRules",
    "ExpiredToken",
    "InvalidToken",
    "Signer",
    "attachment_too_large",
    "base_url_scope",
    "clean_name",
    "content_disposition",
    "current_base_url",
    "make_attachment",
    "media_type",
    "owner_segment",
    "storage_segment",
    "without_upload_descriptor",
]

DEFAULT_ALLOWED_TYPES: tuple[str, ...] = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
)
"""What the bundled attachment stores accept unless told otherwise.

Pass `allowed_types=("*/*",)` to accept anything."""

DEFAULT_MAX_SIZE = 20 * 1024 * 1024
"""The default size limit of one attachment (20 MiB)."""

PREVIEW_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Image types that become `ImageAttachment`s with a `preview_url`.

SVG is left out on purpose: it can carry scripts, so it is stored as a file."""

_SHARED_SEGMENT = "~shared"
_SAFE_SEGMENT = re.compile(r"[a-z0-9][a-z0-9_.@+=-]{0,127}")
_MAX_NAME = 255


def media_type(value: str | None) -> str:
    """The bare media type, lower case: `Image/PNG; x=1` -> `image/png`."""
    if not value:
        return ""
    return value.split(";", 1)[0].strip().lower()


def clean_name(name: str) -> str:
    """A display name safe to store and show: the last path component, no control characters.

    Browsers send bare file names, but some clients send `C:\\fakepath\\x.pdf` or
    `../../x`; the name is never used in a path, this only keeps it tidy.
    """
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if base in ("", ".", ".."):
        base = "file"
    return base[:_MAX_NAME]


def content_disposition(disposition: str, name: str) -> str:
    """A `Content-Disposition` value with an ASCII fallback and the RFC 5987 UTF-8 name."""
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def storage_segment(value: str) -> str:
    """`value` as one path/key segment: kept when plainly safe, else a hash of it.

    Hashed segments start with `~`, which no kept segment does, so the two never
    collide.
    """
    if _SAFE_SEGMENT.fullmatch(value) and ".." not in value:
        return value
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def owner_segment(tenant: Callable[[Any], str | None] | None, context: Any) -> str:
    """The storage segment of the tenant that owns what `context` touches."""
    if tenant is None:
        return _SHARED_SEGMENT
    owner = tenant(context)
    if owner is None:
        return _SHARED_SEGMENT
    if not isinstance(owner, str):
        raise TypeError(f"tenant() must return str or None, not {type(owner).__name__}")
    return storage_segment(owner)


# -- rules ---------------------------------------------------------------------------


def attachment_too_large(max_size: int) -> ChatKitError:
    """The 413 error of an attachment over the size limit."""
    return ChatKitError(
        f"The attachment exceeds the size limit of {max_size} bytes",
        code="attachment_too_large",
        status_code=413,
        details=[{"max_size": max_size}],
    )


@dataclass(frozen=True)
class AttachmentRules:
    """Which media types are accepted and how large an attachment may be.

    `allowed_types` holds exact types (`application/pdf`), families (`image/*`)
    or `*/*` for anything.
    """

    allowed_types: tuple[str, ...] = DEFAULT_ALLOWED_TYPES
    max_size: int = DEFAULT_MAX_SIZE

    @classmethod
    def of(cls, allowed_types: Iterable[str], max_size: int) -> AttachmentRules:
        """Rules from constructor arguments, normalized and checked."""
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        return cls(tuple(media_type(t) for t in allowed_types), max_size)

    def allows(self, mime_type: str) -> bool:
        """Whether the media type is on the allow-list."""
        media = media_type(mime_type)
        if "/" not in media:
            return False
        family = media.split("/", 1)[0] + "/*"
        return any(pattern in (media, family, "*/*") for pattern in self.allowed_types)

    def check_type(self, mime_type: str) -> None:
        """Refuse a media type that is not on the allow-list (400)."""
        if not self.allows(mime_type):
            raise InvalidRequestError(
                f"Attachments of type {mime_type!r} are not accepted",
                code="attachment_type_not_allowed",
                details=[{"mime_type": mime_type, "allowed_types": list(self.allowed_types)}],
            )

    def check_size(self, size: int) -> None:
        """Refuse a size over the limit (413)."""
        if size > self.max_size:
            raise attachment_too_large(self.max_size)

    def too_large(self) -> ChatKitError:
        """The error to raise when streamed bytes pass the limit."""
        return attachment_too_large(self.max_size)


def make_attachment(
    attachment_id: str,
    name: str,
    mime_type: str,
    *,
    preview_url: str | None = None,
    upload_descriptor: AttachmentUploadDescriptor | None = None,
) -> Attachment:
    """An `ImageAttachment` when a preview URL is given, a `FileAttachment` otherwise."""
    if preview_url is not None:
        return ImageAttachment(
            id=attachment_id,
            name=name,
            mime_type=mime_type,
            preview_url=AnyUrl(preview_url),
            upload_descriptor=upload_descriptor,
        )
    return FileAttachment(
        id=attachment_id, name=name, mime_type=mime_type, upload_descriptor=upload_descriptor
    )


def without_upload_descriptor(attachment: Attachment) -> Attachment:
    """The attachment without its upload descriptor (spent once the file is sent)."""
    if attachment.upload_descriptor is None:
        return attachment
    return attachment.model_copy(update={"upload_descriptor": None})


# -- signed tokens ---------------------------------------------------------------------


class InvalidToken(Exception):
    """The token is malformed, tampered with, or signed with another key."""


class ExpiredToken(InvalidToken):
    """The token is genuine but past its expiry."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None


class Signer:
    """HMAC-SHA256 tokens carrying a small JSON claim set and an expiry.

    A token is `<base64url claims>.<base64url mac>`; the MAC covers a fixed
    domain string and the encoded claims, and is compared in constant time.
    Claims name their `purpose` so a download token cannot be used to upload.
    Standard library only: the whole format is these few lines.
    """

    _DOMAIN = b"chatkit-asgi/attachments/v1."

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the signing key must have at least 16 bytes")
        self._key = key

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, self._DOMAIN + payload.encode("ascii"), hashlib.sha256)
        return _b64encode(digest.digest())

    def sign(self, purpose: str, claims: dict[str, Any], expires_at: float) -> str:
        """A token for `purpose` holding `claims`, valid until `expires_at` (epoch seconds)."""
        body = {**claims, "p": purpose, "e": math.ceil(expires_at)}
        payload = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, purpose: str, *, now: float | None = None) -> dict[str, Any]:
        """The claims of a genuine, unexpired token for `purpose`.

        Raises `InvalidToken` (or its subclass `ExpiredToken`).
        """
        payload, dot, mac = token.partition(".")
        if not dot or not payload.isascii() or not mac.isascii():
            raise InvalidToken("malformed token")
        if not hmac.compare_digest(self._mac(payload), mac):
            raise InvalidToken("bad signature")
        try:
            claims = json.loads(_b64decode(payload))
        except ValueError:
            raise InvalidToken("malformed token") from None
        if not isinstance(claims, dict) or claims.get("p") != purpose:
            raise InvalidToken("token for another purpose")
        expires = claims.get("e")
        if not isinstance(expires, int):
            raise InvalidToken("malformed token")
        if expires <= (time.time() if now is None else now):
            raise ExpiredToken("expired token")
        return claims

    def expiry(self, token: str, purpose: str) -> float | None:
        """The expiry of a genuine token for `purpose` (even if past), else None."""
        try:
            return float(self.verify(token, purpose, now=0.0)["e"])
        except InvalidToken:
            return None


# -- the base URL of the request being handled -------------------------------------------

_BASE_URL: ContextVar[str | None] = ContextVar("chatkit_asgi_base_url", default=None)


@contextmanager
def base_url_scope(url: str) -> Iterator[None]:
    """Make `url` (the ChatKit mount, absolute) the base of URLs built inside the block."""
    token = _BASE_URL.set(url.rstrip("/"))
    try:
        yield
    finally:
        _BASE_URL.reset(token)


def current_base_url() -> str | None:
    """The absolute URL of the ChatKit mount for the request being handled, if any."""
    return _BASE_URL.get()
