"""`FileSystemAttachmentStore`: attachment bytes in a local directory, served by the app.

The embedded default for demos and single-machine deployments. Files live at
`<directory>/files/<tenant>/<attachment id>`; user-supplied names never reach a
path. Nothing under the directory is reachable by a guessable URL: `ChatKitApp`
serves files at `{mount}/files/<token>` and accepts two-phase uploads at
`{mount}/upload/<token>`, where each token is an HMAC-signed, expiring grant for
one attachment of one tenant.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from pydantic import AnyUrl

from .._attachments import (
    DEFAULT_ALLOWED_TYPES,
    DEFAULT_MAX_SIZE,
    PREVIEW_TYPES,
    AttachmentRules,
    InvalidToken,
    Signer,
    attachment_too_large,
    clean_name,
    current_base_url,
    make_attachment,
    media_type,
    owner_segment,
    storage_segment,
    without_upload_descriptor,
)
from ..store import AttachmentStore, NotFoundError
from ..types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    ImageAttachment,
)
from ._common import TContext

__all__ = ["FileGrant", "FileSystemAttachmentStore"]

_READ_CHUNK = 256 * 1024
_WRITE_BUFFER = 1024 * 1024
_KEY_FILE = ".signing-key"
_DOWNLOAD = "download"
_UPLOAD = "upload"


@dataclass(frozen=True)
class FileGrant:
    """What a verified token allows: one attachment of one tenant, until `expires_at`."""

    owner: str
    attachment_id: str
    mime_type: str
    name: str
    expires_at: float
    max_size: int = 0
    """For upload grants: the most bytes the upload may have."""


class FileSystemAttachmentStore(AttachmentStore[TContext]):
    """Stores attachment bytes under `directory`; `ChatKitApp` serves them back.

    ::

        attachments = FileSystemAttachmentStore("data/attachments")
        app = ChatKitApp(respond, store=SQLiteStore("chatkit.db"), attachment_store=attachments)

    Direct uploads (`POST {mount}/upload`) and two-phase uploads (the descriptor
    points at `{mount}/upload/<token>`) both land here. Image previews and
    downloads are `{mount}/files/<token>` URLs, valid for `url_ttl` seconds and
    renewed when a thread is loaded again.

    Args:
        directory: where files live (created if missing).
        tenant: maps the request context to an owner, as for the stores; each
            owner's files live apart and another owner's ids are not found.
        secret: the HMAC key of the URLs. By default a random key is created in
            `<directory>/.signing-key` (mode 0600) and shared by every process
            using the directory, so URLs survive restarts and work across workers.
        base_url: the public URL of the ChatKit mount (e.g.
            `https://example.com/chatkit`); by default the URL of the request
            being handled (or the app's `public_base_url`).
        allowed_types: accepted media types (`image/*` and `*/*` patterns allowed).
        max_size: the most bytes one attachment may have.
        url_ttl: seconds a preview or download URL stays valid.
        upload_ttl: seconds a two-phase upload URL stays valid.
        upload_method: the method the two-phase descriptor asks for: `POST`
            (multipart form with a `file` field, what the ChatKit UI sends) or
            `PUT` (the raw bytes). The route accepts both either way.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        tenant: Callable[[TContext], str | None] | None = None,
        secret: str | bytes | None = None,
        base_url: str | None = None,
        allowed_types: Iterable[str] = DEFAULT_ALLOWED_TYPES,
        max_size: int = DEFAULT_MAX_SIZE,
        url_ttl: float = 3600.0,
        upload_ttl: float = 900.0,
        upload_method: Literal["POST", "PUT"] = "POST",
    ) -> None:
        self.directory = Path(directory)
        self.rules = AttachmentRules.of(allowed_types, max_size)
        self.url_ttl = url_ttl
        self.upload_ttl = upload_ttl
        self.upload_method: Literal["POST", "PUT"] = upload_method
        self._tenant = tenant
        self._base_url = base_url.rstrip("/") if base_url else None
        self._files = self.directory / "files"
        self._tmp = self.directory / "tmp"
        self._files.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        if secret is None:
            key = self._load_or_create_key()
        else:
            key = secret.encode() if isinstance(secret, str) else secret
        self._signer = Signer(key)

    # -- AttachmentStore ---------------------------------------------------------------

    async def create_attachment(
        self, input: AttachmentCreateParams, context: TContext
    ) -> Attachment:
        """A new attachment whose upload descriptor points at the app's upload route.

        Refuses types off the allow-list (400 `attachment_type_not_allowed`) and
        sizes over the limit (413 `attachment_too_large`).
        """
        self.rules.check_type(input.mime_type)
        self.rules.check_size(input.size)
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        grant = FileGrant(
            owner=owner_segment(self._tenant, context),
            attachment_id=attachment_id,
            mime_type=media_type(input.mime_type),
            name=clean_name(input.name),
            expires_at=time.time() + self.upload_ttl,
            max_size=input.size,
        )
        url = f"{self._base()}/upload/{self._sign(_UPLOAD, grant)}"
        headers = {"Content-Type": grant.mime_type} if self.upload_method == "PUT" else {}
        descriptor = AttachmentUploadDescriptor(
            url=url,
            method=self.upload_method,
            headers=headers,
        )
        return make_attachment(
            attachment_id,
            grant.name,
            input.mime_type,
            preview_url=self._preview_url(grant.owner, attachment_id, grant.mime_type, grant.name),
            upload_descriptor=descriptor,
        )

    async def upload(
        self, name: str, mime_type: str, chunks: AsyncIterator[bytes], context: TContext
    ) -> Attachment:
        """Write a direct upload to disk as it arrives and return its attachment."""
        self.rules.check_type(mime_type)
        owner = owner_segment(self._tenant, context)
        attachment_id = self.generate_attachment_id(mime_type, context)
        await self._write(owner, attachment_id, chunks, self.rules.max_size)
        name = clean_name(name)
        return make_attachment(
            attachment_id,
            name,
            mime_type,
            preview_url=self._preview_url(owner, attachment_id, media_type(mime_type), name),
        )

    async def ping(self) -> None:
        """Create and delete a small file (the health check): the disk takes writes."""
        await anyio.to_thread.run_sync(_probe_writable, self._tmp)

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete the attachment's file (no error when it is already gone)."""
        path = self._path(owner_segment(self._tenant, context), attachment_id)
        await anyio.to_thread.run_sync(_unlink_quietly, path)

    async def open(self, attachment_id: str, context: TContext) -> AsyncIterator[bytes]:
        """The attachment's bytes in chunks; `NotFoundError` when there is no such file."""
        path = self._path(owner_segment(self._tenant, context), attachment_id)
        async for chunk in _read_file(path, attachment_id):
            yield chunk

    async def refresh_urls(self, attachment: Attachment, context: TContext) -> Attachment:
        """Drop the spent upload descriptor; renew an image's preview URL when it
        has expired or expires soon.

        URLs signed with another key (a rotated `secret`) are renewed too.
        """
        attachment = without_upload_descriptor(attachment)
        if not isinstance(attachment, ImageAttachment):
            return attachment
        expiry = self._url_expiry(str(attachment.preview_url))
        if expiry is not None and expiry - time.time() > self.url_ttl / 4:
            return attachment
        preview = self._preview_url(
            owner_segment(self._tenant, context),
            attachment.id,
            media_type(attachment.mime_type),
            attachment.name,
        )
        if preview is None:  # not a type we preview (an image made elsewhere)
            return attachment
        # model_copy does not validate: the URL goes in as the model holds it.
        return attachment.model_copy(update={"preview_url": AnyUrl(preview)})

    # -- URLs for responders ---------------------------------------------------------

    def download_url(self, attachment: Attachment, context: TContext) -> str:
        """A signed, expiring URL that downloads the attachment (served by the app)."""
        owner = owner_segment(self._tenant, context)
        grant = self._download_grant(
            owner, attachment.id, media_type(attachment.mime_type), attachment.name
        )
        return f"{self._base()}/files/{self._sign(_DOWNLOAD, grant)}"

    # -- what the app's routes use (chatkit_asgi.uploads) ---------------------------------

    def verify(self, token: str, purpose: Literal["download", "upload"]) -> FileGrant:
        """The grant of a genuine, unexpired token (`InvalidToken`/`ExpiredToken` else)."""
        claims = self._signer.verify(token, purpose)
        try:
            return FileGrant(
                owner=str(claims["o"]),
                attachment_id=str(claims["i"]),
                mime_type=str(claims["m"]),
                name=str(claims["n"]),
                expires_at=float(claims["e"]),
                max_size=int(claims.get("s", 0)),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("malformed claims") from None

    async def accept_upload(self, grant: FileGrant, chunks: AsyncIterator[bytes]) -> None:
        """Store the bytes of a two-phase upload granted by `grant`.

        At most `grant.max_size` bytes (413 beyond); an attachment is uploaded at
        most once (`FileExistsError` for a second upload).
        """
        await self._write(grant.owner, grant.attachment_id, chunks, grant.max_size)

    async def discard_upload(self, grant: FileGrant) -> None:
        """Remove the file a two-phase upload stored for `grant`."""
        await anyio.to_thread.run_sync(
            _unlink_quietly, self._path(grant.owner, grant.attachment_id)
        )

    async def open_grant(self, grant: FileGrant) -> tuple[int, AsyncGenerator[bytes, None]]:
        """The size and the bytes of the file a download grant names; `NotFoundError`."""
        path = self._path(grant.owner, grant.attachment_id)
        try:
            size = (await anyio.to_thread.run_sync(path.stat)).st_size
        except FileNotFoundError:
            raise NotFoundError(f"attachment {grant.attachment_id} not found") from None
        return size, _read_file(path, grant.attachment_id)

    # -- internals ---------------------------------------------------------------------

    def _load_or_create_key(self) -> bytes:
        path = self.directory / _KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text().strip()
            if len(key) < 32:
                raise RuntimeError(f"{path} holds no usable signing key; delete it") from None
            return key.encode()
        key = secrets.token_hex(32)
        with os.fdopen(fd, "w") as file:
            file.write(key)
        return key.encode()

    def _base(self) -> str:
        base = self._base_url or current_base_url()
        if base is None:
            raise RuntimeError(
                "FileSystemAttachmentStore builds absolute URLs to the ChatKit app's routes: "
                "outside a request handled by ChatKitApp, pass base_url="
            )
        return base

    def _path(self, owner: str, attachment_id: str) -> Path:
        # Both segments come out of `storage_segment`: no separators, no `..`.
        return self._files / owner / storage_segment(attachment_id)

    def _download_grant(self, owner: str, attachment_id: str, mime: str, name: str) -> FileGrant:
        # Expiries snap to a grid of a quarter TTL, so loading a thread twice in a
        # row yields the same URL and the browser's cache keeps working.
        step = max(self.url_ttl / 4, 1.0)
        expires = (int((time.time() + self.url_ttl) / step) + 1) * step
        return FileGrant(owner, attachment_id, mime, name, expires)

    def _preview_url(self, owner: str, attachment_id: str, mime: str, name: str) -> str | None:
        if mime not in PREVIEW_TYPES:
            return None
        grant = self._download_grant(owner, attachment_id, mime, name)
        return f"{self._base()}/files/{self._sign(_DOWNLOAD, grant)}"

    def _url_expiry(self, url: str) -> float | None:
        token = urlsplit(url).path.rsplit("/", 1)[-1]
        return self._signer.expiry(token, _DOWNLOAD)

    def _sign(self, purpose: str, grant: FileGrant) -> str:
        claims: dict[str, Any] = {
            "o": grant.owner,
            "i": grant.attachment_id,
            "m": grant.mime_type,
            "n": grant.name,
        }
        if purpose == _UPLOAD:
            claims["s"] = grant.max_size
        return self._signer.sign(purpose, claims, grant.expires_at)

    async def _write(
        self, owner: str, attachment_id: str, chunks: AsyncIterator[bytes], max_size: int
    ) -> None:
        """Stream `chunks` to a temporary file, then move it into place; nothing on failure."""
        final = self._path(owner, attachment_id)
        tmp = self._tmp / f"{secrets.token_hex(16)}.part"
        file = await anyio.to_thread.run_sync(_open_exclusive, tmp)
        try:
            size = 0
            pending = bytearray()
            async for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise attachment_too_large(max_size)
                pending += chunk
                if len(pending) >= _WRITE_BUFFER:
                    await anyio.to_thread.run_sync(file.write, bytes(pending))
                    pending.clear()
            await anyio.to_thread.run_sync(_finish, file, bytes(pending), tmp, final)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_discard, file, tmp)
            raise


def _open_exclusive(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _finish(file: IO[bytes], rest: bytes, tmp: Path, final: Path) -> None:
    try:
        file.write(rest)
        file.flush()
        os.fsync(file.fileno())
    finally:
        file.close()
    final.parent.mkdir(parents=True, exist_ok=True)
    # A hard link fails when the target exists: an attachment is written once,
    # never replaced by a replayed upload URL.
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system: a plain rename, refusing to replace.
        if final.exists():
            raise FileExistsError(final) from None
        os.replace(tmp, final)
    finally:
        _unlink_quietly(tmp)


def _discard(file: IO[bytes], tmp: Path) -> None:
    with contextlib.suppress(OSError):
        file.close()
    _unlink_quietly(tmp)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _probe_writable(directory: Path) -> None:
    probe = directory / f".ping-{secrets.token_hex(8)}"
    probe.write_bytes(b"")
    probe.unlink()


async def _read_file(path: Path, attachment_id: str) -> AsyncGenerator[bytes, None]:
    try:
        file = await anyio.open_file(path, "rb")
    except FileNotFoundError:
        raise NotFoundError(f"attachment {attachment_id} not found") from None
    async with file:
        while chunk := await file.read(_READ_CHUNK):
            yield chunk
