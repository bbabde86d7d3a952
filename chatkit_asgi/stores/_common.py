"""What the bundled stores share: owner keys, the JSON codec and cursor pages.

Both stores keep every model as its JSON text, so a `MemoryStore` accepts and
returns exactly what a persistent store would (a value that cannot be saved to
SQLite fails in tests against the memory store too), and every load hands out a
fresh copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from pydantic import TypeAdapter
from typing_extensions import TypeVar as DefaultTypeVar

from ..types import Attachment, Page, ThreadItem, ThreadMetadata

__all__ = [
    "SHARED_OWNER",
    "TContext",
    "Tenant",
    "decode_attachment",
    "decode_item",
    "decode_thread",
    "encode_attachment",
    "encode_item",
    "encode_thread",
    "is_descending",
    "make_page",
    "owner_key",
    "timestamp_key",
    "window_size",
]

TContext = DefaultTypeVar("TContext", default=Any)
T = TypeVar("T")
R = TypeVar("R")

Tenant = Callable[[Any], "str | None"]
"""Maps a request context to the key of the tenant that owns what it touches."""

SHARED_OWNER = ""
"""The owner key of the single shared space (no `tenant`, or `tenant` returned None)."""

_ITEMS: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)
_ATTACHMENTS: TypeAdapter[Attachment] = TypeAdapter(Attachment)
# `save_thread` is often handed a `Thread` (metadata plus a page of items); only the
# metadata belongs in the thread record, the items are stored one by one.
_THREAD_FIELDS = frozenset(ThreadMetadata.model_fields)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def owner_key(tenant: Callable[[Any], str | None] | None, context: Any) -> str:
    """The owner key for `context`: `tenant(context)`, or the shared space."""
    if tenant is None:
        return SHARED_OWNER
    owner = tenant(context)
    if owner is None:
        return SHARED_OWNER
    if not isinstance(owner, str):
        # A non-string key (an int user id, say) would silently compare unequal to
        # the same id read back from a database as text.
        raise TypeError(f"tenant() must return str or None, not {type(owner).__name__}")
    return owner


def is_descending(order: str) -> bool:
    """Whether a listing `order` is "desc"; anything but "asc"/"desc" is a caller bug."""
    if order == "desc":
        return True
    if order == "asc":
        return False
    raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")


def window_size(limit: int) -> int:
    """How many entries to fetch for a page of `limit`: one extra tells `has_more`."""
    return max(limit, 0) + 1


def make_page(rows: Sequence[tuple[str, R]], limit: int, decode: Callable[[R], T]) -> Page[T]:
    """A page from up to `window_size(limit)` `(id, payload)` rows following the cursor.

    Only the rows that make it into the page are decoded.
    """
    kept = rows[: max(limit, 0)]
    return Page(
        data=[decode(payload) for _, payload in kept],
        has_more=len(rows) > len(kept),
        after=kept[-1][0] if kept else None,
    )


def timestamp_key(value: datetime) -> int:
    """Microseconds since the epoch: a sort key that never mixes naive and aware times."""
    if value.tzinfo is None:
        # Naive means local time, as `UtcDatetime` reads it.
        value = value.astimezone()
    return (value - _EPOCH) // _MICROSECOND


def encode_thread(thread: ThreadMetadata) -> str:
    """The thread's metadata as JSON (items of a `Thread` are left out)."""
    return thread.model_dump_json(include=set(_THREAD_FIELDS))


def decode_thread(data: str | bytes) -> ThreadMetadata:
    """A thread's metadata from `encode_thread` output."""
    return ThreadMetadata.model_validate_json(data)


def encode_item(item: ThreadItem) -> str:
    """An item as JSON, attachment metadata included (no wire context)."""
    return item.model_dump_json()


def decode_item(data: str | bytes) -> ThreadItem:
    """An item from `encode_item` output."""
    return _ITEMS.validate_json(data)


def encode_attachment(attachment: Attachment) -> str:
    """Attachment metadata as JSON, its `metadata` field included."""
    return attachment.model_dump_json()


def decode_attachment(data: str | bytes) -> Attachment:
    """An attachment from `encode_attachment` output."""
    return _ATTACHMENTS.validate_json(data)
