"""The store contract: thread items."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ...store import NotFoundError, Store
from ...types import (
    UserMessageItem,
)
from ._data import (
    ALICE,
    SCRAMBLED,
    T0,
    ContractBase,
    _ids,
    _item_ids,
    _message,
    _thread,
    _walk_items,
    every_kind_of_item,
)


class ItemContract(ContractBase):
    """Thread items."""

    # -- items ---------------------------------------------------------------------

    async def test_every_item_kind_round_trips(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_1"), ALICE)
        items = every_kind_of_item("thr_1")
        for item in items:
            await store.add_thread_item("thr_1", item, ALICE)
        page = await store.load_thread_items("thr_1", None, 100, "asc", ALICE)
        assert page.data == items
        assert [type(item) for item in page.data] == [type(item) for item in items]
        for item in items:
            assert await store.load_item("thr_1", item.id, ALICE) == item

    async def test_attachment_metadata_is_kept_in_messages(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_1"), ALICE)
        message = every_kind_of_item("thr_1")[0]
        await store.add_thread_item("thr_1", message, ALICE)
        loaded = await store.load_item("thr_1", message.id, ALICE)
        assert isinstance(loaded, UserMessageItem)
        assert [attachment.metadata for attachment in loaded.attachments] == [
            {"bucket": "uploads", "key": "u/atc_file", "size": 1234, "tags": ["a"]},
            {"width": 640, "height": 480},
        ]

    async def test_add_existing_item_updates_in_place(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b", "c"])
        changed = _message("b", "thr_1", "changed", T0 + timedelta(days=1))
        await store.add_thread_item("thr_1", changed, ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b", "c"]
        assert await store.load_item("thr_1", "b", ALICE) == changed
        page = await store.load_thread_items("thr_1", None, 10, "asc", ALICE)
        assert page.data[1] == changed

    async def test_save_item_updates_in_place_or_appends(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b", "c"])
        changed = _message("a", "thr_1", "changed")
        await store.save_item("thr_1", changed, ALICE)
        await store.save_item("thr_1", _message("d", "thr_1"), ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b", "c", "d"]
        assert await store.load_item("thr_1", "a", ALICE) == changed

    async def test_items_with_equal_created_at_keep_insertion_order(
        self, store: Store[Any]
    ) -> None:
        await self._thread_with_items(store, "thr_1", SCRAMBLED)
        assert await _item_ids(store, "thr_1", ALICE, "asc") == SCRAMBLED
        assert await _item_ids(store, "thr_1", ALICE, "desc") == SCRAMBLED[::-1]

    async def test_items_ordered_by_insertion_not_created_at(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_1"), ALICE)
        for n, item_id in enumerate(["first", "second", "third"]):
            later_is_older = T0 - timedelta(minutes=n)
            await store.add_thread_item(
                "thr_1", _message(item_id, created_at=later_is_older), ALICE
            )
        assert await _item_ids(store, "thr_1", ALICE) == ["first", "second", "third"]

    async def test_item_pagination(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", SCRAMBLED)
        s = SCRAMBLED

        first = await store.load_thread_items("thr_1", None, 4, "asc", ALICE)
        assert (_ids(first), first.has_more, first.after) == (s[0:4], True, s[3])
        second = await store.load_thread_items("thr_1", first.after, 4, "asc", ALICE)
        assert (_ids(second), second.has_more, second.after) == (s[4:8], True, s[7])
        third = await store.load_thread_items("thr_1", second.after, 4, "asc", ALICE)
        assert (_ids(third), third.has_more, third.after) == (s[8:], False, s[9])
        end = await store.load_thread_items("thr_1", s[9], 4, "asc", ALICE)
        assert (end.data, end.has_more, end.after) == ([], False, None)

        first = await store.load_thread_items("thr_1", None, 4, "desc", ALICE)
        assert (_ids(first), first.has_more, first.after) == (s[:5:-1], True, s[6])
        second = await store.load_thread_items("thr_1", first.after, 4, "desc", ALICE)
        assert (_ids(second), second.has_more, second.after) == (s[5:1:-1], True, s[2])
        third = await store.load_thread_items("thr_1", second.after, 4, "desc", ALICE)
        assert (_ids(third), third.has_more, third.after) == (s[1::-1], False, s[0])
        end = await store.load_thread_items("thr_1", s[0], 4, "desc", ALICE)
        assert (end.data, end.has_more, end.after) == ([], False, None)

        # From the middle, both ways.
        forward = await store.load_thread_items("thr_1", s[4], 3, "asc", ALICE)
        assert (_ids(forward), forward.has_more) == (s[5:8], True)
        backward = await store.load_thread_items("thr_1", s[4], 3, "desc", ALICE)
        assert (_ids(backward), backward.has_more) == (s[3:0:-1], True)
        backward = await store.load_thread_items("thr_1", s[4], 4, "desc", ALICE)
        assert (_ids(backward), backward.has_more) == (s[3::-1], False)

    async def test_item_pagination_with_every_limit(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", SCRAMBLED)
        for limit in range(1, 12):
            assert await _walk_items(store, "thr_1", limit, "asc", ALICE) == SCRAMBLED
            assert await _walk_items(store, "thr_1", limit, "desc", ALICE) == SCRAMBLED[::-1]

    async def test_items_limit_zero_or_negative(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_1"), ALICE)
        empty = await store.load_thread_items("thr_1", None, 0, "asc", ALICE)
        assert (empty.data, empty.has_more, empty.after) == ([], False, None)
        await self._thread_with_items(store, "thr_1", ["a", "b"])
        for limit in (0, -1):
            page = await store.load_thread_items("thr_1", None, limit, "asc", ALICE)
            assert (page.data, page.has_more, page.after) == ([], True, None)
        assert (await store.load_thread_items("thr_1", "b", 0, "asc", ALICE)).has_more is False
        assert (await store.load_thread_items("thr_1", "b", 0, "desc", ALICE)).has_more is True

    async def test_items_unknown_after(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b"])
        await self._thread_with_items(store, "thr_2", ["other"])
        for after in ["missing", "other"]:
            for order in ["asc", "desc"]:
                with pytest.raises(NotFoundError):
                    await store.load_thread_items("thr_1", after, 10, order, ALICE)

    async def test_items_of_a_missing_thread(self, store: Store[Any]) -> None:
        with pytest.raises(NotFoundError):
            await store.load_thread_items("thr_missing", None, 10, "asc", ALICE)
        with pytest.raises(NotFoundError):
            await store.add_thread_item("thr_missing", _message("a", "thr_missing"), ALICE)
        with pytest.raises(NotFoundError):
            await store.save_item("thr_missing", _message("a", "thr_missing"), ALICE)
        with pytest.raises(NotFoundError):
            await store.load_item("thr_missing", "a", ALICE)
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_missing", ALICE)

    async def test_load_missing_item(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a"])
        with pytest.raises(NotFoundError):
            await store.load_item("thr_1", "missing", ALICE)

    async def test_items_belong_to_their_thread(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "shared"])
        await self._thread_with_items(store, "thr_2", ["b"])
        await store.add_thread_item("thr_2", _message("shared", "thr_2", "in two"), ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "shared"]
        assert await _item_ids(store, "thr_2", ALICE) == ["b", "shared"]
        assert await store.load_item("thr_1", "shared", ALICE) == _message("shared", "thr_1")
        assert await store.load_item("thr_2", "shared", ALICE) == _message(
            "shared", "thr_2", "in two"
        )
        with pytest.raises(NotFoundError):
            await store.load_item("thr_2", "a", ALICE)
        await store.delete_thread_item("thr_2", "shared", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "shared"]

    async def test_delete_thread_item(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b", "c"])
        await store.delete_thread_item("thr_1", "b", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "c"]
        with pytest.raises(NotFoundError):
            await store.load_item("thr_1", "b", ALICE)
        # Already gone, never existed, or in a missing thread: no error.
        await store.delete_thread_item("thr_1", "b", ALICE)
        await store.delete_thread_item("thr_1", "missing", ALICE)
        await store.delete_thread_item("thr_missing", "a", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "c"]
        # Re-adding a deleted id appends it.
        await store.add_thread_item("thr_1", _message("b", "thr_1"), ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "c", "b"]

    async def test_delete_thread_items_after(self, store: Store[Any]) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b", "c", "d", "e"])
        await self._thread_with_items(store, "thr_2", ["x", "y"])

        await store.delete_thread_items_after("thr_1", "b", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b"]
        for gone in ["c", "d", "e"]:
            with pytest.raises(NotFoundError):
                await store.load_item("thr_1", gone, ALICE)

        await store.add_thread_item("thr_1", _message("f", "thr_1"), ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b", "f"]
        await store.delete_thread_items_after("thr_1", "f", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b", "f"]

        with pytest.raises(NotFoundError):
            await store.delete_thread_items_after("thr_1", "missing", ALICE)
        with pytest.raises(NotFoundError):
            await store.delete_thread_items_after("thr_1", "x", ALICE)
        with pytest.raises(NotFoundError):
            await store.delete_thread_items_after("thr_missing", "a", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a", "b", "f"]

        await store.delete_thread_items_after("thr_1", "a", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a"]
        assert await _item_ids(store, "thr_2", ALICE) == ["x", "y"]

    async def test_delete_items_after_an_updated_item_uses_its_position(
        self, store: Store[Any]
    ) -> None:
        await self._thread_with_items(store, "thr_1", ["a", "b", "c"])
        await store.add_thread_item("thr_1", _message("a", "thr_1", "updated"), ALICE)
        await store.delete_thread_items_after("thr_1", "a", ALICE)
        assert await _item_ids(store, "thr_1", ALICE) == ["a"]
