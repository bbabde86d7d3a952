"""`S3AttachmentStore`: attachment bytes in S3 or any S3-compatible service (aioboto3).

Install with `pip install chatkit-asgi[s3]`. Works with AWS S3, MinIO, Cloudflare
R2, LocalStack and the like: endpoint, region, credentials and addressing style
come from the standard AWS configuration (environment, `~/.aws/config`,
instance roles) or from arguments.

- Objects live at `<prefix><tenant>/<attachment id>`; names never reach a key.
- Two-phase uploads get a presigned URL whose signature pins the declared
  media type and size, so the storage itself refuses anything else.
- Direct uploads stream to S3 as they arrive (a multipart upload once they pass
  one part), never held whole in memory.
- Image previews and downloads are short-lived presigned GET URLs, renewed when
  a thread is loaded again.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast
from urllib.parse import parse_qs, urlsplit

# aioboto3 and botocore ship no type information: the store talks to S3 through
# `_S3Client`, a Protocol naming exactly the calls it makes, and the untyped
# objects are cast to it in one place (`_client`).
import aioboto3  # type: ignore[import-untyped]
import anyio
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from pydantic import AnyUrl

from .._attachments import (
    DEFAULT_ALLOWED_TYPES,
    DEFAULT_MAX_SIZE,
    PREVIEW_TYPES,
    AttachmentRules,
    clean_name,
    content_disposition,
    make_attachment,
    media_type,
    owner_segment,
    storage_segment,
    without_upload_descriptor,
)
from ..store import AttachmentStore, NotFoundError, StoreUnavailableError
from ..types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    ImageAttachment,
)
from ._common import TContext

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["S3AttachmentStore"]

_MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part (but the last)
_READ_CHUNK = 256 * 1024
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class _StreamingBody(Protocol):
    async def __aenter__(self) -> _StreamingBody: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes]: ...


class _S3Client(Protocol):
    """The slice of aiobotocore's S3 client this store uses (keyword arguments only)."""

    async def generate_presigned_url(
        self, ClientMethod: str, Params: dict[str, Any], ExpiresIn: int
    ) -> str: ...

    async def generate_presigned_post(
        self,
        Bucket: str,
        Key: str,
        Fields: dict[str, Any],
        Conditions: list[Any],
        ExpiresIn: int,
    ) -> dict[str, Any]: ...

    async def put_object(self, **kwargs: Any) -> dict[str, Any]: ...

    async def get_object(self, **kwargs: Any) -> dict[str, Any]: ...

    async def delete_object(self, **kwargs: Any) -> dict[str, Any]: ...

    async def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...

    async def upload_part(self, **kwargs: Any) -> dict[str, Any]: ...

    async def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...

    async def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]: ...

    async def head_bucket(self, **kwargs: Any) -> dict[str, Any]: ...


class S3AttachmentStore(AttachmentStore[TContext]):
    """Stores attachment bytes in an S3 bucket.

    ::

        attachments = S3AttachmentStore("my-bucket", prefix="chatkit/",
                                        tenant=lambda ctx: ctx["user_id"])
        app = ChatKitApp(respond, store=store, attachment_store=attachments)

    Args:
        bucket: the bucket (it must exist).
        prefix: prepended to every key (`chatkit/` by default).
        tenant: maps the request context to an owner, as for the stores; each
            owner's objects live under their own key prefix.
        session: an `aioboto3.Session` to take credentials and settings from;
            by default a new one reading the standard AWS configuration.
        endpoint_url, region_name, aws_access_key_id, aws_secret_access_key,
        aws_session_token: override the standard configuration.
        addressing_style: `path` for services without virtual-host buckets
            (MinIO, LocalStack, most test setups), `virtual`, or `auto`.
        client_config: a `botocore.config.Config` merged into the client's.
        upload_method: what two-phase uploads use. `PUT` (default): a presigned
            PUT whose signature covers `Content-Type` and `Content-Length`, so S3
            accepts exactly the declared type and size; the ChatKit UI sends the
            raw bytes with the descriptor's headers. `POST`: a presigned POST
            whose policy pins the key, `Content-Type` and a `content-length-range`
            up to the declared size; the descriptor's `headers` then carry the
            policy's form fields, which a client must send as form fields before
            the `file` part (for clients of your own: the ChatKit UI sends only
            the file).
        allowed_types: accepted media types (`image/*` and `*/*` patterns allowed).
        max_size: the most bytes one attachment may have.
        url_ttl: seconds a preview or download URL stays valid.
        upload_ttl: seconds a two-phase upload URL stays valid.
        part_size: bytes per part of a direct upload's multipart upload (the
            memory one upload holds); at least 5 MiB.
        connect_timeout: seconds to wait for a connection to S3 (2 by default,
            botocore's is 60), tried at most `max_attempts` times (2 by default) so
            that an unreachable endpoint fails in seconds; `client_config` may
            override both.

    S3 that cannot be reached (connection refused or timed out, a read timeout,
    a dropped connection, S3 answering 500/503) raises `StoreUnavailableError`,
    which the app answers with 503 `store_unavailable` and `Retry-After`.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "chatkit/",
        tenant: Callable[[TContext], str | None] | None = None,
        session: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        addressing_style: Literal["auto", "virtual", "path"] | None = None,
        client_config: Any = None,
        upload_method: Literal["PUT", "POST"] = "PUT",
        allowed_types: Iterable[str] = DEFAULT_ALLOWED_TYPES,
        max_size: int = DEFAULT_MAX_SIZE,
        url_ttl: int = 3600,
        upload_ttl: int = 900,
        part_size: int = 8 * 1024 * 1024,
        connect_timeout: float = 2.0,
        max_attempts: int = 2,
    ) -> None:
        if part_size < _MIN_PART_SIZE:
            raise ValueError("part_size must be at least 5 MiB (S3's minimum part size)")
        if upload_method not in ("PUT", "POST"):
            raise ValueError("upload_method must be 'PUT' or 'POST'")
        self.bucket = bucket
        self.prefix = prefix
        self.rules = AttachmentRules.of(allowed_types, max_size)
        self.upload_method: Literal["PUT", "POST"] = upload_method
        self.url_ttl = url_ttl
        self.upload_ttl = upload_ttl
        self.part_size = part_size
        self._tenant = tenant
        self._session = session if session is not None else aioboto3.Session()
        config = Config(
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        if addressing_style is not None:
            config = config.merge(Config(s3={"addressing_style": addressing_style}))
        if client_config is not None:
            config = config.merge(client_config)
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
            "config": config,
        }
        self._s3: _S3Client | None = None
        self._exit = contextlib.AsyncExitStack()
        self._opening = anyio.Lock()

    # -- client lifecycle ----------------------------------------------------------------

    async def _client(self) -> _S3Client:
        if self._s3 is None:
            async with self._opening:
                if self._s3 is None:
                    args = {k: v for k, v in self._client_args.items() if v is not None}
                    client = await self._exit.enter_async_context(
                        self._session.client("s3", **args)
                    )
                    self._s3 = cast(_S3Client, client)
        return self._s3

    async def aclose(self) -> None:
        """Close the S3 client (the app calls this on shutdown)."""
        self._s3 = None
        await self._exit.aclose()

    async def ping(self) -> None:
        """`HeadBucket` (the health check): the bucket exists and these credentials reach it."""
        client = await self._client()
        with _outages():
            await client.head_bucket(Bucket=self.bucket)

    # -- AttachmentStore ---------------------------------------------------------------

    async def create_attachment(
        self, input: AttachmentCreateParams, context: TContext
    ) -> Attachment:
        """A new attachment with a presigned upload descriptor (see `upload_method`).

        Refuses types off the allow-list (400 `attachment_type_not_allowed`) and
        sizes over the limit (413 `attachment_too_large`).
        """
        self.rules.check_type(input.mime_type)
        self.rules.check_size(input.size)
        mime = media_type(input.mime_type)
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        key = self._key(context, attachment_id)
        client = await self._client()
        if self.upload_method == "PUT":
            params = {
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": mime,
                "ContentLength": input.size,
            }
            url = await client.generate_presigned_url(
                ClientMethod="put_object", Params=params, ExpiresIn=self.upload_ttl
            )
            headers = {"Content-Type": mime}
        else:
            post = await client.generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields={"Content-Type": mime},
                Conditions=[{"Content-Type": mime}, ["content-length-range", 0, input.size]],
                ExpiresIn=self.upload_ttl,
            )
            url, headers = post["url"], {k: str(v) for k, v in post["fields"].items()}
        descriptor = AttachmentUploadDescriptor(
            url=url,
            method=self.upload_method,
            headers=headers,
        )
        name = clean_name(input.name)
        return make_attachment(
            attachment_id,
            name,
            input.mime_type,
            preview_url=await self._preview_url(key, mime, name),
            upload_descriptor=descriptor,
        )

    async def upload(
        self, name: str, mime_type: str, chunks: AsyncIterator[bytes], context: TContext
    ) -> Attachment:
        """Stream a direct upload to S3 and return its attachment.

        Up to one part is buffered: small files become one `PutObject`, larger
        ones a multipart upload that is aborted if anything fails.
        """
        with _outages():
            return await self._upload(name, mime_type, chunks, context)

    async def _upload(
        self, name: str, mime_type: str, chunks: AsyncIterator[bytes], context: TContext
    ) -> Attachment:
        self.rules.check_type(mime_type)
        mime = media_type(mime_type)
        attachment_id = self.generate_attachment_id(mime_type, context)
        key = self._key(context, attachment_id)
        client = await self._client()
        target = {"Bucket": self.bucket, "Key": key}
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        # A file object, not bytes: aiohttp sends it in slices (raw bytes would be
        # written in one go, blocking the loop), and it is the only copy we hold.
        buffer = io.BytesIO()
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.rules.max_size:
                    raise self.rules.too_large()
                buffer.write(chunk)
                if buffer.tell() >= self.part_size:
                    if upload_id is None:
                        created = await client.create_multipart_upload(**target, ContentType=mime)
                        upload_id = str(created["UploadId"])
                    parts.append(await self._upload_part(client, target, upload_id, parts, buffer))
                    buffer = io.BytesIO()
            buffer.seek(0)
            if upload_id is None:
                await client.put_object(**target, Body=buffer, ContentType=mime)
            else:
                if buffer.getbuffer().nbytes or not parts:
                    parts.append(await self._upload_part(client, target, upload_id, parts, buffer))
                await client.complete_multipart_upload(
                    **target, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id = None
        except BaseException:
            if upload_id is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await client.abort_multipart_upload(**target, UploadId=upload_id)
            raise
        name = clean_name(name)
        return make_attachment(
            attachment_id, name, mime_type, preview_url=await self._preview_url(key, mime, name)
        )

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete the object (no error when it is already gone)."""
        client = await self._client()
        with _outages():
            await client.delete_object(Bucket=self.bucket, Key=self._key(context, attachment_id))

    async def open(self, attachment_id: str, context: TContext) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; `NotFoundError` when there is no such object."""
        client = await self._client()
        try:
            with _outages():
                response = await client.get_object(
                    Bucket=self.bucket, Key=self._key(context, attachment_id)
                )
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise NotFoundError(f"attachment {attachment_id} not found") from None
            raise
        body = cast(_StreamingBody, response["Body"])
        async with body:
            with _outages():
                async for chunk in body.iter_chunks(_READ_CHUNK):
                    yield chunk

    async def refresh_urls(self, attachment: Attachment, context: TContext) -> Attachment:
        """Drop the spent upload descriptor; renew an image's presigned preview URL
        when it has expired or expires soon."""
        attachment = without_upload_descriptor(attachment)
        if not isinstance(attachment, ImageAttachment):
            return attachment
        expiry = _presigned_expiry(str(attachment.preview_url))
        if expiry is not None and expiry - time.time() > self.url_ttl / 4:
            return attachment
        key = self._key(context, attachment.id)
        preview = await self._preview_url(key, media_type(attachment.mime_type), attachment.name)
        if preview is None:  # not a type we preview (an image made elsewhere)
            return attachment
        # model_copy does not validate: the URL goes in as the model holds it.
        return attachment.model_copy(update={"preview_url": AnyUrl(preview)})

    # -- URLs for responders ---------------------------------------------------------

    async def download_url(self, attachment: Attachment, context: TContext) -> str:
        """A presigned URL (valid `url_ttl` seconds) that downloads the attachment."""
        client = await self._client()
        params = {
            "Bucket": self.bucket,
            "Key": self._key(context, attachment.id),
            "ResponseContentDisposition": content_disposition("attachment", attachment.name),
        }
        return await client.generate_presigned_url(
            ClientMethod="get_object", Params=params, ExpiresIn=self.url_ttl
        )

    # -- internals ---------------------------------------------------------------------

    def _key(self, context: TContext, attachment_id: str) -> str:
        owner = owner_segment(self._tenant, context)
        return f"{self.prefix}{owner}/{storage_segment(attachment_id)}"

    async def _preview_url(self, key: str, mime: str, name: str) -> str | None:
        if mime not in PREVIEW_TYPES:
            return None
        client = await self._client()
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition("inline", name),
        }
        return await client.generate_presigned_url(
            ClientMethod="get_object", Params=params, ExpiresIn=self.url_ttl
        )

    @staticmethod
    async def _upload_part(
        client: _S3Client,
        target: dict[str, str],
        upload_id: str,
        parts: list[dict[str, Any]],
        body: io.BytesIO,
    ) -> dict[str, Any]:
        number = len(parts) + 1
        body.seek(0)
        response = await client.upload_part(
            **target, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"ETag": response["ETag"], "PartNumber": number}


@contextlib.contextmanager
def _outages() -> Iterator[None]:
    """Report S3 that cannot be reached, or says it is unavailable, as
    `StoreUnavailableError` (the app answers 503 with `Retry-After`)."""
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as exc:
        # Refused or timed-out connections, read timeouts, dropped connections.
        raise StoreUnavailableError(f"S3 is unreachable: {exc}") from exc
    except ClientError as exc:
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (500, 502, 503, 504):
            raise StoreUnavailableError(f"S3 is unavailable: {exc}") from exc
        raise


def _error_code(exc: Any) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Code", ""))


def _presigned_expiry(url: str) -> float | None:
    """When a SigV4 presigned URL expires (epoch seconds), or None if it is not one."""
    query = parse_qs(urlsplit(url).query)
    try:
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        lifetime = int(query["X-Amz-Expires"][0])
    except (KeyError, IndexError, ValueError):
        return None
    return signed_at.replace(tzinfo=timezone.utc).timestamp() + lifetime
