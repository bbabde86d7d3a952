"""MemoryStore: the shared store contract plus what is specific to it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from chatkit_asgi.store import NotFoundError
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing.store_contract import StoreContract
from chatkit_asgi.types import ThreadMetadata

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class TestMemoryStore(StoreContract):
    """The contract, with tenants keyed by `ctx["user"]`."""

    @pytest.fixture
    async def store(self) -> MemoryStore[Any]:
        return MemoryStore(tenant=lambda ctx: ctx["user"])


async def test_without_tenant_everything_is_shared() -> None:
    store: MemoryStore[Any] = MemoryStore()
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), {"user": "alice"})
    assert (await store.load_thread("thr_1", None)).id == "thr_1"
    page = await store.load_threads(10, None, "asc", {"user": "bob"})
    assert [thread.id for thread in page.data] == ["thr_1"]


async def test_tenant_returning_none_is_the_shared_space() -> None:
    store: MemoryStore[Any] = MemoryStore(tenant=lambda ctx: ctx.get("user"))
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), {})
    assert (await store.load_thread("thr_1", {"user": None})).id == "thr_1"
    with pytest.raises(NotFoundError):
        await store.load_thread("thr_1", {"user": "alice"})


async def test_tenant_must_return_a_string() -> None:
    store: MemoryStore[Any] = MemoryStore(tenant=lambda ctx: ctx["user"])
    with pytest.raises(TypeError, match="tenant"):
        await store.load_thread("thr_1", {"user": 42})


async def test_invalid_order_is_rejected() -> None:
    store: MemoryStore[Any] = MemoryStore()
    await store.save_thread(ThreadMetadata(id="thr_1", created_at=T0), None)
    with pytest.raises(ValueError, match="order"):
        await store.load_threads(10, None, "newest", None)
    with pytest.raises(ValueError, match="order"):
        await store.load_thread_items("thr_1", None, 10, "ASC", None)


async def test_reads_of_unknown_tenants_allocate_nothing() -> None:
    store: MemoryStore[Any] = MemoryStore(tenant=lambda ctx: ctx["user"])
    for n in range(5):
        await store.load_threads(10, None, "asc", {"user": f"u{n}"})
        await store.delete_attachment("atc", {"user": f"u{n}"})
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc", {"user": f"u{n}"})
    assert store._spaces == {}
