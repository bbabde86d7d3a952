"""Store contracts: where threads, items and attachments live.

The method names and signatures are openai-chatkit's, so a store written for it
ports by changing imports. Everything a store raises for a missing id is
`NotFoundError`; ids of another tenant must behave exactly like missing ones.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Generic, Literal, Protocol

from typing_extensions import TypeVar

from .types import (
    Attachment,
    AttachmentCreateParams,
    Page,
    ThreadItem,
    ThreadMetadata,
)

__all__ = [
    "ID_PREFIXES",
    "AttachmentStore",
    "NotFoundError",
    "Store",
    "StoreItemType",
    "StoreUnavailableError",
    "TurnBusyError",
    "TurnLease",
    "default_generate_id",
]

TContext = TypeVar("TContext", default=Any)

StoreItemType = Literal[
    "thread",
    "message",
    "tool_call",
    "task",
    "workflow",
    "attachment",
    "sdk_hidden_context",
]
"""The kinds of object a store hands out ids for."""

ID_PREFIXES: dict[StoreItemType, str] = {
    "thread": "thr",
    "message": "msg",
    "tool_call": "tc",
    "workflow": "wf",
    "task": "tsk",
    "attachment": "atc",
    "sdk_hidden_context": "shcx",
}
"""The id prefix of each kind, as the reference writes them."""


def default_generate_id(item_type: StoreItemType) -> str:
    """A new id: the kind's prefix and 96 random bits (the reference has 32, which collide)."""
    return f"{ID_PREFIXES[item_type]}_{secrets.token_hex(12)}"


class NotFoundError(Exception):
    """The thread, item or attachment does not exist (or belongs to someone else)."""


class StoreUnavailableError(Exception):
    """The store's backend cannot be reached right now (a retry later may succeed).

    Stores raise it for outages (connection refused, timeouts, failover); the app
    answers 503 `store_unavailable` with `Retry-After`, or a retryable `error` event
    mid-stream, and recovers by itself when the backend is back.
    """


class TurnBusyError(Exception):
    """Another reply holds the thread's turn and did not finish in time."""


class TurnLease(Protocol):
    """The exclusive right to run a reply on one thread, held until released.

    `renew_every` is how often (seconds) the holder must call `renew` to keep a
    lease that expires on its own, or None for leases that do not expire.
    """

    renew_every: float | None

    async def renew(self) -> None:
        """Extend the lease."""

    async def release(self) -> None:
        """Give the turn up (idempotent)."""


class Store(ABC, Generic[TContext]):
    """Persistence of threads, their items and attachment metadata.

    `context` is whatever the app's context factory returned for the request;
    stores that isolate tenants derive the owner from it.
    """

    def generate_thread_id(self, context: TContext) -> str:
        """A new thread id; override to change the format."""
        return default_generate_id("thread")

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: TContext
    ) -> str:
        """A new item id; override to change the format."""
        return default_generate_id(item_type)

    async def aclose(self) -> None:
        """Release connections and files; the app calls this on shutdown."""

    # -- health ---------------------------------------------------------------
    async def ping(self) -> None:
        """Raise if the backend cannot be reached; `GET {mount}/healthz` calls this.

        Keep it cheap (one round trip, no tenant data). The default does nothing:
        a store that cannot tell is taken to be up.
        """

    @abstractmethod
    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        """The thread's metadata, or `NotFoundError`."""

    @abstractmethod
    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        """Insert or update a thread's metadata."""

    @abstractmethod
    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: TContext,
    ) -> Page[ThreadItem]:
        """A page of the thread's items in insertion order (`asc`) or reverse (`desc`).

        `after` is an item id: the page starts just past it in the requested order.
        An unknown `after` id or thread raises `NotFoundError`.
        """

    @abstractmethod
    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        """Insert or update attachment metadata."""

    @abstractmethod
    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        """Attachment metadata, or `NotFoundError`."""

    @abstractmethod
    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete attachment metadata (no error if it is already gone)."""

    @abstractmethod
    async def load_threads(
        self,
        limit: int,
        after: str | None,
        order: str,
        context: TContext,
    ) -> Page[ThreadMetadata]:
        """A page of threads by creation time (`desc` is newest first)."""

    @abstractmethod
    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Append an item; an existing id is updated in place (upsert), keeping its position."""

    @abstractmethod
    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Insert or update an item by id, keeping its position when it exists."""

    @abstractmethod
    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        """One item of the thread, or `NotFoundError`."""

    @abstractmethod
    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        """Delete a thread with its items and the metadata of attachments bound to it.

        `NotFoundError` if the thread does not exist.
        """

    @abstractmethod
    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        """Delete one item (no error if it is already gone)."""

    async def acquire_turn(
        self, thread_id: str, context: TContext, wait: float
    ) -> TurnLease | None:
        """A lease on the thread's turn shared by every process using this store.

        Wait up to `wait` seconds, then raise `TurnBusyError`. The default returns
        None: the engine then serializes replies within its own process only.
        Stores shared by several app workers (MongoDB) override this.
        """
        return None

    async def delete_thread_items_after(
        self, thread_id: str, item_id: str, context: TContext
    ) -> None:
        """Delete every item added after `item_id` (what a retry does).

        The default walks the items newest first and deletes them one by one;
        stores that can do it in one atomic statement should override this.
        """
        doomed: list[str] = []
        after: str | None = None
        while True:
            page = await self.load_thread_items(thread_id, after, 100, "desc", context)
            for item in page.data:
                if item.id == item_id:
                    for doomed_id in doomed:
                        await self.delete_thread_item(thread_id, doomed_id, context)
                    return
                doomed.append(item.id)
            if not page.has_more or page.after is None:
                raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
            after = page.after


class AttachmentStore(ABC, Generic[TContext]):
    """Storage of attachment bytes (the metadata lives in the `Store`)."""

    @abstractmethod
    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete the attachment's bytes."""

    # -- health ---------------------------------------------------------------
    async def ping(self) -> None:
        """Raise if the storage cannot be reached; `GET {mount}/healthz` calls this.

        Keep it cheap. The default does nothing: a store that cannot tell is taken
        to be up.
        """

    async def create_attachment(
        self, input: AttachmentCreateParams, context: TContext
    ) -> Attachment:
        """Create an attachment for a two-phase upload, with its upload descriptor."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support two-phase uploads (create_attachment)"
        )

    def generate_attachment_id(self, mime_type: str, context: TContext) -> str:
        """A new attachment id; override to change the format."""
        return default_generate_id("attachment")

    # -- optional: direct uploads, reading bytes, expiring URLs (attachments issue) ------

    async def upload(
        self, name: str, mime_type: str, chunks: AsyncIterator[bytes], context: TContext
    ) -> Attachment:
        """Store a direct upload's bytes as they arrive and return the new attachment.

        Called by the app's upload route; the route saves the metadata. Check the
        media type before reading `chunks`, enforce the size limit while reading,
        and leave nothing behind when anything fails (the limit, the client going
        away, the storage).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support direct uploads (upload)")

    def open(self, attachment_id: str, context: TContext) -> AsyncIterator[bytes]:
        """The attachment's bytes as a stream of chunks; `NotFoundError` when absent.

        Implement as an async generator. `Turn.read_attachment` builds on this.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot read attachment bytes back (open)")

    async def refresh_urls(self, attachment: Attachment, context: TContext) -> Attachment:
        """The attachment with expired (or soon expiring) URLs renewed.

        Called when an attachment is sent in a message and whenever a thread is
        loaded again. A store may also drop URLs that are spent by then (the
        bundled ones drop the upload descriptor). The default returns the
        attachment unchanged.
        """
        return attachment
