"""The store contract: threads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ...store import NotFoundError, Store
from ...types import (
    ClosedStatus,
    LockedStatus,
    Page,
    Thread,
)
from ._data import (
    ALICE,
    SCRAMBLED,
    T0,
    ContractBase,
    _file_attachment,
    _ids,
    _image_attachment,
    _item_ids,
    _message,
    _thread,
    _thread_ids,
    _walk_threads,
)


class ThreadContract(ContractBase):
    """Threads."""

    # -- threads -------------------------------------------------------------------

    async def test_thread_round_trip(self, store: Store[Any]) -> None:
        thread = _thread(
            "thr_1",
            created_at=datetime(2024, 5, 1, 14, 0, 0, 654321, tzinfo=timezone(timedelta(hours=2))),
            title="Trip ✈ planning",
            status=LockedStatus(reason="read only"),
            allowed_image_domains=["images.example.com"],
            metadata={"previous_response_id": "resp_1", "nested": {"n": [1, 2.5, None, True]}},
        )
        await store.save_thread(thread, ALICE)
        loaded = await store.load_thread("thr_1", ALICE)
        assert loaded == thread
        assert loaded.created_at == datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=timezone.utc)

    async def test_save_thread_updates_in_place(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b"])
        updated = _thread(
            "thr_1",
            title="Renamed",
            status=ClosedStatus(reason="done"),
            allowed_image_domains=[],
            metadata={"k": "v"},
        )
        await store.save_thread(updated, ALICE)
        assert await store.load_thread("thr_1", ALICE) == updated
        assert await _thread_ids(store, ALICE) == ["thr_1"]
        # An update must not lose (or cascade-delete) the thread's items.
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b"]

    async def test_save_thread_with_items_keeps_only_metadata(self, store: Store[Any]) -> None:
        metadata = _thread("thr_1", title="T", metadata={"k": 1})
        full = Thread(
            **metadata.model_dump(), items=Page(data=[_message("a", "thr_1")], has_more=True)
        )
        await store.save_thread(full, ALICE)
        loaded = await store.load_thread("thr_1", ALICE)
        assert loaded.model_dump() == metadata.model_dump()
        assert await _item_ids(store, "thr_1", ALICE) == []

    async def test_load_missing_thread(self, store: Store[Any]) -> None:
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_missing", ALICE)

    async def test_threads_ordered_by_created_at(self, store: Store[Any]) -> None:
        for thread_id, offset in [("thr_b", 2), ("thr_a", 0), ("thr_c", 1)]:
            await store.save_thread(_thread(thread_id, T0 + timedelta(seconds=offset)), ALICE)
        assert await _thread_ids(store, ALICE, "asc") == ["thr_a", "thr_c", "thr_b"]
        assert await _thread_ids(store, ALICE, "desc") == ["thr_b", "thr_c", "thr_a"]

    async def test_threads_with_equal_created_at_keep_insertion_order(
        self, store: Store[Any]
    ) -> None:
        for thread_id in SCRAMBLED:
            await store.save_thread(_thread(thread_id), ALICE)
        assert await _thread_ids(store, ALICE, "asc") == SCRAMBLED
        assert await _thread_ids(store, ALICE, "desc") == SCRAMBLED[::-1]

    async def test_threads_listing_returns_the_saved_metadata(self, store: Store[Any]) -> None:
        saved = [
            _thread("thr_1", title="One", metadata={"i": 1}),
            _thread("thr_2", T0 + timedelta(seconds=1), status=LockedStatus()),
        ]
        for thread in saved:
            await store.save_thread(thread, ALICE)
        page = await store.load_threads(10, None, "asc", ALICE)
        assert page.data == saved
        assert not page.has_more

    async def test_updating_a_thread_keeps_its_list_position(self, store: Store[Any]) -> None:
        for thread_id in ["thr_1", "thr_2", "thr_3"]:
            await store.save_thread(_thread(thread_id), ALICE)
        await store.save_thread(_thread("thr_1", title="renamed"), ALICE)
        assert await _thread_ids(store, ALICE) == ["thr_1", "thr_2", "thr_3"]
        # Changing created_at moves it, since that is the primary order.
        await store.save_thread(_thread("thr_1", T0 + timedelta(hours=1)), ALICE)
        assert await _thread_ids(store, ALICE) == ["thr_2", "thr_3", "thr_1"]

    async def test_thread_pagination(self, store: Store[Any]) -> None:
        ids = [f"thr_{n}" for n in range(7)]
        for n, thread_id in enumerate(ids):
            # Pairs of equal timestamps: the cursor must handle ties.
            await store.save_thread(_thread(thread_id, T0 + timedelta(seconds=n // 2)), ALICE)

        first = await store.load_threads(3, None, "asc", ALICE)
        assert (_ids(first), first.has_more, first.after) == (ids[0:3], True, "thr_2")
        second = await store.load_threads(3, first.after, "asc", ALICE)
        assert (_ids(second), second.has_more, second.after) == (ids[3:6], True, "thr_5")
        third = await store.load_threads(3, second.after, "asc", ALICE)
        assert (_ids(third), third.has_more, third.after) == (ids[6:], False, "thr_6")
        end = await store.load_threads(3, "thr_6", "asc", ALICE)
        assert (end.data, end.has_more, end.after) == ([], False, None)

        first = await store.load_threads(3, None, "desc", ALICE)
        assert (_ids(first), first.has_more, first.after) == (ids[6:3:-1], True, "thr_4")
        second = await store.load_threads(3, first.after, "desc", ALICE)
        assert (_ids(second), second.has_more, second.after) == (ids[3:0:-1], True, "thr_1")
        third = await store.load_threads(3, second.after, "desc", ALICE)
        assert (_ids(third), third.has_more, third.after) == (["thr_0"], False, "thr_0")

        middle = await store.load_threads(2, "thr_3", "desc", ALICE)
        assert (_ids(middle), middle.has_more) == (["thr_2", "thr_1"], True)
        middle = await store.load_threads(10, "thr_3", "asc", ALICE)
        assert (_ids(middle), middle.has_more) == (ids[4:], False)

    async def test_thread_pagination_with_every_limit(self, store: Store[Any]) -> None:
        ids = [f"thr_{name}" for name in SCRAMBLED[:6]]
        for n, thread_id in enumerate(ids):
            await store.save_thread(_thread(thread_id, T0 + timedelta(seconds=n % 3)), ALICE)
        expected = sorted(
            ids, key=lambda thread_id: (ids.index(thread_id) % 3, ids.index(thread_id))
        )
        for limit in range(1, 8):
            assert await _walk_threads(store, limit, "asc", ALICE) == expected
            assert await _walk_threads(store, limit, "desc", ALICE) == expected[::-1]

    async def test_threads_unknown_after(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_1"), ALICE)
        with pytest.raises(NotFoundError):
            await store.load_threads(10, "thr_missing", "asc", ALICE)
        with pytest.raises(NotFoundError):
            await store.load_threads(10, "thr_missing", "desc", ALICE)

    async def test_threads_limit_zero_or_negative(self, store: Store[Any]) -> None:
        empty = await store.load_threads(0, None, "asc", ALICE)
        assert (empty.data, empty.has_more, empty.after) == ([], False, None)
        await store.save_thread(_thread("thr_1"), ALICE)
        await store.save_thread(_thread("thr_2"), ALICE)
        for limit in (0, -5):
            page = await store.load_threads(limit, None, "desc", ALICE)
            assert (page.data, page.has_more, page.after) == ([], True, None)
        page = await store.load_threads(0, "thr_1", "asc", ALICE)
        assert (page.data, page.has_more) == ([], True)
        page = await store.load_threads(0, "thr_2", "asc", ALICE)
        assert (page.data, page.has_more) == ([], False)

    async def test_delete_thread_removes_items_and_its_attachments(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b"])
        await self._thread_with_items(store, "thr_2", ["c"])
        await store.save_attachment(_file_attachment("atc_1", "thr_1"), ALICE)
        await store.save_attachment(_image_attachment("atc_2", "thr_1"), ALICE)
        await store.save_attachment(_file_attachment("atc_other", "thr_2"), ALICE)
        await store.save_attachment(_file_attachment("atc_unbound"), ALICE)

        await store.delete_thread("thr_1", ALICE)

        with pytest.raises(NotFoundError):
            await store.load_thread("thr_1", ALICE)
        with pytest.raises(NotFoundError):
            await store.load_thread_items("thr_1", None, 10, "asc", ALICE)
        with pytest.raises(NotFoundError):
            await store.load_item("thr_1", "a", ALICE)
        for gone in ["atc_1", "atc_2"]:
            with pytest.raises(NotFoundError):
                await store.load_attachment(gone, ALICE)
        assert await _thread_ids(store, ALICE) == ["thr_2"]
        assert await _item_ids(store, "thr_2", ALICE) == ["c"]
        assert await store.load_attachment("atc_other", ALICE) == _file_attachment(
            "atc_other", "thr_2"
        )
        assert await store.load_attachment("atc_unbound", ALICE) == _file_attachment("atc_unbound")
        # A new thread under the same id starts empty: no item survived.
        await store.save_thread(_thread("thr_1"), ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == []
        await store.add_thread_item("thr_1", _message("a", "thr_1", "new"), ALICE)
        assert await store.load_item("thr_1", "a", ALICE) == _message("a", "thr_1", "new")

    async def test_delete_missing_thread(self, store: Store[Any]) -> None:
        with pytest.raises(NotFoundError):
            await store.delete_thread("thr_missing", ALICE)
        await store.save_thread(_thread("thr_1"), ALICE)
        await store.delete_thread("thr_1", ALICE)
        with pytest.raises(NotFoundError):
            await store.delete_thread("thr_1", ALICE)
