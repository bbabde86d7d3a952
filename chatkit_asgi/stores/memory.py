"""`MemoryStore`: everything in dicts, for tests, demos and single-process prototypes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from ..store import NotFoundError, Store
from ..types import Attachment, Page, ThreadItem, ThreadMetadata
from ._common import (
    TContext,
    decode_attachment,
    decode_item,
    decode_thread,
    encode_attachment,
    encode_item,
    encode_thread,
    is_descending,
    make_page,
    owner_key,
    timestamp_key,
    window_size,
)

__all__ = ["MemoryStore"]


@dataclass
class _ThreadRecord:
    seq: int
    created: int
    data: str
    # Dicts keep insertion order and keep a key's position when it is reassigned,
    # which is exactly the upsert ordering the contract asks for.
    items: dict[str, str] = field(default_factory=dict)


@dataclass
class _AttachmentRecord:
    thread_id: str | None
    data: str


@dataclass
class _Space:
    """Everything one tenant owns."""

    threads: dict[str, _ThreadRecord] = field(default_factory=dict)
    attachments: dict[str, _AttachmentRecord] = field(default_factory=dict)


_EMPTY = _Space()


class MemoryStore(Store[TContext]):
    """A `Store` that keeps threads, items and attachment metadata in memory.

    Nothing survives the process. Models are stored as JSON and decoded on every
    load, so callers never share an object with the store, and what the memory
    store accepts is what a persistent store accepts.

    `tenant` maps the request context to an owner key (for example
    `lambda ctx: ctx["user_id"]`); each owner then sees only its own threads and
    attachments, and another owner's ids behave as if they did not exist. Without
    it (or when it returns None) everything lives in one shared space.

    Every method runs to completion without awaiting, so concurrent tasks on one
    event loop never see a half-done write; the store is not meant to be shared
    between threads.
    """

    def __init__(self, *, tenant: Callable[[TContext], str | None] | None = None) -> None:
        self._tenant = tenant
        self._spaces: dict[str, _Space] = {}
        self._seq = itertools.count()

    def _space(self, context: TContext) -> _Space:
        # Reads must not create a space per unknown owner, so they get a shared empty one.
        return self._spaces.get(owner_key(self._tenant, context), _EMPTY)

    def _writable_space(self, context: TContext) -> _Space:
        return self._spaces.setdefault(owner_key(self._tenant, context), _Space())

    def _thread(self, thread_id: str, context: TContext) -> _ThreadRecord:
        record = self._space(context).threads.get(thread_id)
        if record is None:
            raise NotFoundError(f"thread {thread_id} not found")
        return record

    async def load_thread(self, thread_id: str, context: TContext) -> ThreadMetadata:
        """The thread's metadata, or `NotFoundError`."""
        return decode_thread(self._thread(thread_id, context).data)

    async def save_thread(self, thread: ThreadMetadata, context: TContext) -> None:
        """Insert or update a thread's metadata; an update keeps the thread's items."""
        data = encode_thread(thread)
        created = timestamp_key(thread.created_at)
        threads = self._writable_space(context).threads
        record = threads.get(thread.id)
        if record is None:
            threads[thread.id] = _ThreadRecord(next(self._seq), created, data)
        else:
            record.created = created
            record.data = data

    async def load_threads(
        self,
        limit: int,
        after: str | None,
        order: str,
        context: TContext,
    ) -> Page[ThreadMetadata]:
        """A page of threads by creation time, then by insertion for equal times."""
        descending = is_descending(order)
        threads = self._space(context).threads
        ordered = sorted(
            threads.items(), key=lambda entry: (entry[1].created, entry[1].seq), reverse=descending
        )
        start = _start_after([thread_id for thread_id, _ in ordered], after, "thread")
        window = ordered[start : start + window_size(limit)]
        return make_page([(key, record.data) for key, record in window], limit, decode_thread)

    async def delete_thread(self, thread_id: str, context: TContext) -> None:
        """Delete the thread, its items and the attachment metadata that points at it."""
        space = self._space(context)
        if space.threads.pop(thread_id, None) is None:
            raise NotFoundError(f"thread {thread_id} not found")
        doomed = [key for key, att in space.attachments.items() if att.thread_id == thread_id]
        for attachment_id in doomed:
            del space.attachments[attachment_id]

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: TContext,
    ) -> Page[ThreadItem]:
        """A page of the thread's items in insertion order (`asc`) or reverse (`desc`)."""
        descending = is_descending(order)
        items = self._thread(thread_id, context).items
        # Walks to the cursor and takes one window, rather than copying every id:
        # a long thread's first pages cost what a short thread's do.
        ids = reversed(items) if descending else iter(items)
        # `in` on an iterator consumes it up to and including the cursor.
        if after is not None and after not in ids:
            raise NotFoundError(f"item {after} not found")
        window = list(itertools.islice(ids, window_size(limit)))
        return make_page([(item_id, items[item_id]) for item_id in window], limit, decode_item)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Append an item; an existing id is updated in place, keeping its position."""
        self._thread(thread_id, context).items[item.id] = encode_item(item)

    async def save_item(self, thread_id: str, item: ThreadItem, context: TContext) -> None:
        """Insert or update an item by id, keeping its position when it exists."""
        self._thread(thread_id, context).items[item.id] = encode_item(item)

    async def load_item(self, thread_id: str, item_id: str, context: TContext) -> ThreadItem:
        """One item of the thread, or `NotFoundError`."""
        data = self._thread(thread_id, context).items.get(item_id)
        if data is None:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}")
        return decode_item(data)

    async def delete_thread_item(self, thread_id: str, item_id: str, context: TContext) -> None:
        """Delete one item (no error if it or its thread is already gone)."""
        record = self._space(context).threads.get(thread_id)
        if record is not None:
            record.items.pop(item_id, None)

    async def delete_thread_items_after(
        self, thread_id: str, item_id: str, context: TContext
    ) -> None:
        """Delete every item added after `item_id`, all at once."""
        items = self._thread(thread_id, context).items
        ids = list(items)
        try:
            position = ids.index(item_id)
        except ValueError:
            raise NotFoundError(f"item {item_id} not found in thread {thread_id}") from None
        for doomed in ids[position + 1 :]:
            del items[doomed]

    async def save_attachment(self, attachment: Attachment, context: TContext) -> None:
        """Insert or update attachment metadata."""
        self._writable_space(context).attachments[attachment.id] = _AttachmentRecord(
            attachment.thread_id, encode_attachment(attachment)
        )

    async def load_attachment(self, attachment_id: str, context: TContext) -> Attachment:
        """Attachment metadata, or `NotFoundError`."""
        record = self._space(context).attachments.get(attachment_id)
        if record is None:
            raise NotFoundError(f"attachment {attachment_id} not found")
        return decode_attachment(record.data)

    async def delete_attachment(self, attachment_id: str, context: TContext) -> None:
        """Delete attachment metadata (no error if it is already gone)."""
        self._space(context).attachments.pop(attachment_id, None)


def _start_after(ids: list[str], after: str | None, kind: str) -> int:
    """The index just past the cursor `after` in `ids` (0 without a cursor)."""
    if after is None:
        return 0
    try:
        return ids.index(after) + 1
    except ValueError:
        raise NotFoundError(f"{kind} {after} not found") from None
