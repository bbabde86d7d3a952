"""The store contract: attachments, copies, tenants and concurrency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from ...store import NotFoundError, Store
from ...types import (
    AssistantMessageItem,
    Attachment,
)
from ._data import (
    ALICE,
    BOB,
    T0,
    ContractBase,
    _file_attachment,
    _image_attachment,
    _item_ids,
    _message,
    _thread,
    _thread_ids,
    _walk_items,
    _walk_threads,
)


class OtherContract(ContractBase):
    """Attachments, copies, tenants and concurrency."""

    # -- attachments ---------------------------------------------------------------

    async def test_attachment_round_trip(self, store: Store[Any]) -> None:
        attachments: list[Attachment] = [
            _file_attachment("atc_file", "thr_1"),
            _image_attachment("atc_image"),
        ]
        for attachment in attachments:
            await store.save_attachment(attachment, ALICE)
        for attachment in attachments:
            loaded = await store.load_attachment(attachment.id, ALICE)
            assert loaded == attachment
            assert type(loaded) is type(attachment)
            assert loaded.metadata == attachment.metadata

    async def test_save_attachment_updates(self, store: Store[Any]) -> None:
        await store.save_attachment(_file_attachment("atc_1"), ALICE)
        bound = _file_attachment("atc_1", "thr_1").model_copy(update={"metadata": {"v": 2}})
        await store.save_attachment(bound, ALICE)
        assert await store.load_attachment("atc_1", ALICE) == bound
        # The update of thread_id counts for delete_thread.
        await store.save_thread(_thread("thr_1"), ALICE)
        await store.delete_thread("thr_1", ALICE)
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc_1", ALICE)

    async def test_delete_attachment(self, store: Store[Any]) -> None:
        await store.save_attachment(_file_attachment("atc_1"), ALICE)
        await store.save_attachment(_file_attachment("atc_2"), ALICE)
        await store.delete_attachment("atc_1", ALICE)
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc_1", ALICE)
        await store.delete_attachment("atc_1", ALICE)
        await store.delete_attachment("atc_missing", ALICE)
        assert await store.load_attachment("atc_2", ALICE) == _file_attachment("atc_2")

    async def test_load_missing_attachment(self, store: Store[Any]) -> None:
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc_missing", ALICE)

    # -- copies --------------------------------------------------------------------

    async def test_models_are_copied_in_and_out(self, store: Store[Any]) -> None:
        thread = _thread("thr_1", metadata={"k": ["v"]})
        await store.save_thread(thread, ALICE)
        thread.metadata["k"].append("mutated after save")
        thread.title = "mutated"
        loaded = await store.load_thread("thr_1", ALICE)
        loaded.metadata["k"].append("mutated after load")
        assert await store.load_thread("thr_1", ALICE) == _thread("thr_1", metadata={"k": ["v"]})

        item = _message("a", "thr_1", "original")
        await store.add_thread_item("thr_1", item, ALICE)
        item.content[0].text = "mutated after add"
        loaded_item = await store.load_item("thr_1", "a", ALICE)
        assert isinstance(loaded_item, AssistantMessageItem)
        loaded_item.content[0].text = "mutated after load"
        page = await store.load_thread_items("thr_1", None, 10, "asc", ALICE)
        page.data.clear()
        assert await store.load_item("thr_1", "a", ALICE) == _message("a", "thr_1", "original")

        attachment = _file_attachment("atc_1")
        await store.save_attachment(attachment, ALICE)
        assert attachment.metadata is not None
        attachment.metadata["key"] = "mutated"
        loaded_attachment = await store.load_attachment("atc_1", ALICE)
        assert loaded_attachment.metadata is not None
        loaded_attachment.metadata["key"] = "mutated after load"
        assert await store.load_attachment("atc_1", ALICE) == _file_attachment("atc_1")

    # -- tenants -------------------------------------------------------------------

    async def _alice_data(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_alice", title="Alice's"), ALICE)
        for item_id in ["a1", "a2", "a3"]:
            await store.add_thread_item("thr_alice", _message(item_id, "thr_alice"), ALICE)
        await store.save_attachment(_file_attachment("atc_alice", "thr_alice"), ALICE)

    async def _assert_alice_unchanged(self, store: Store[Any]) -> None:
        assert await store.load_thread("thr_alice", ALICE) == _thread("thr_alice", title="Alice's")
        assert await _thread_ids(store, ALICE) == ["thr_alice"]
        page = await store.load_thread_items("thr_alice", None, 10, "asc", ALICE)
        assert page.data == [_message(item_id, "thr_alice") for item_id in ["a1", "a2", "a3"]]
        assert await store.load_attachment("atc_alice", ALICE) == _file_attachment(
            "atc_alice", "thr_alice"
        )

    async def test_tenants_cannot_read_each_other(self, store: Store[Any]) -> None:
        await self._alice_data(store)
        with pytest.raises(NotFoundError):
            await store.load_thread("thr_alice", BOB)
        assert (await store.load_threads(10, None, "asc", BOB)).data == []
        assert (await store.load_threads(10, None, "desc", BOB)).data == []
        with pytest.raises(NotFoundError):
            await store.load_threads(10, "thr_alice", "asc", BOB)
        with pytest.raises(NotFoundError):
            await store.load_thread_items("thr_alice", None, 10, "asc", BOB)
        with pytest.raises(NotFoundError):
            await store.load_item("thr_alice", "a1", BOB)
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc_alice", BOB)
        await self._assert_alice_unchanged(store)

    async def test_tenants_cannot_write_to_each_other(self, store: Store[Any]) -> None:
        await self._alice_data(store)
        with pytest.raises(NotFoundError):
            await store.add_thread_item("thr_alice", _message("b1", "thr_alice"), BOB)
        with pytest.raises(NotFoundError):
            await store.add_thread_item("thr_alice", _message("a1", "thr_alice", "bob"), BOB)
        with pytest.raises(NotFoundError):
            await store.save_item("thr_alice", _message("a2", "thr_alice", "bob"), BOB)
        await self._assert_alice_unchanged(store)

    async def test_tenants_cannot_delete_each_other(self, store: Store[Any]) -> None:
        await self._alice_data(store)
        with pytest.raises(NotFoundError):
            await store.delete_thread("thr_alice", BOB)
        with pytest.raises(NotFoundError):
            await store.delete_thread_items_after("thr_alice", "a1", BOB)
        await store.delete_thread_item("thr_alice", "a2", BOB)
        await store.delete_attachment("atc_alice", BOB)
        await self._assert_alice_unchanged(store)

    async def test_tenants_have_separate_id_spaces(self, store: Store[Any]) -> None:
        await self._alice_data(store)
        # Alice's ids are unknown to Bob, so using them creates Bob's own records.
        await store.save_thread(_thread("thr_alice", title="Bob's"), BOB)
        await store.add_thread_item("thr_alice", _message("a1", "thr_alice", "bob's"), BOB)
        await store.save_attachment(_image_attachment("atc_alice", "thr_alice"), BOB)
        assert await store.load_thread("thr_alice", BOB) == _thread("thr_alice", title="Bob's")
        assert await _item_ids(store, "thr_alice", BOB) == ["a1"]
        assert await store.load_item("thr_alice", "a1", BOB) == _message("a1", "thr_alice", "bob's")
        assert await store.load_attachment("atc_alice", BOB) == _image_attachment(
            "atc_alice", "thr_alice"
        )
        await self._assert_alice_unchanged(store)

        await store.delete_thread("thr_alice", BOB)
        await self._assert_alice_unchanged(store)
        with pytest.raises(NotFoundError):
            await store.load_attachment("atc_alice", BOB)

        await store.save_thread(_thread("thr_alice", title="Bob's"), BOB)
        await store.save_attachment(_image_attachment("atc_bob", "thr_alice"), BOB)
        await store.delete_thread("thr_alice", ALICE)
        # Alice deleting her thread leaves Bob's same-id thread and attachment alone.
        assert await store.load_thread("thr_alice", BOB) == _thread("thr_alice", title="Bob's")
        assert await store.load_attachment("atc_bob", BOB) == _image_attachment(
            "atc_bob", "thr_alice"
        )

    async def test_thread_listing_is_per_tenant(self, store: Store[Any]) -> None:
        for n in range(3):
            await store.save_thread(_thread(f"thr_a{n}", T0 + timedelta(seconds=n)), ALICE)
            await store.save_thread(_thread(f"thr_b{n}", T0 + timedelta(seconds=n)), BOB)
        assert await _walk_threads(store, 2, "asc", ALICE) == ["thr_a0", "thr_a1", "thr_a2"]
        assert await _walk_threads(store, 2, "desc", BOB) == ["thr_b2", "thr_b1", "thr_b0"]

    # -- concurrency ---------------------------------------------------------------

    async def test_concurrent_adds_keep_every_item(self, store: Store[Any]) -> None:
        await store.save_thread(_thread("thr_1"), ALICE)
        ids = [f"item_{n:02d}" for n in range(50)]
        async with anyio.create_task_group() as tg:
            for item_id in ids:
                tg.start_soon(store.add_thread_item, "thr_1", _message(item_id), ALICE)
        ascending = await _item_ids(store, "thr_1", ALICE, "asc")
        assert sorted(ascending) == ids
        assert await _item_ids(store, "thr_1", ALICE, "desc") == ascending[::-1]
        assert await _walk_items(store, "thr_1", 7, "asc", ALICE) == ascending

    async def test_concurrent_mixed_operations(self, store: Store[Any]) -> None:
        async def tenant_work(context: dict[str, str], n: int) -> None:
            thread_id = f"thr_{n}"
            await store.save_thread(_thread(thread_id), context)
            for item_id in ["a", "b", "c"]:
                await store.add_thread_item(thread_id, _message(item_id, thread_id), context)
            await store.save_item(thread_id, _message("b", thread_id, "updated"), context)
            await store.delete_thread_items_after(thread_id, "b", context)
            await store.load_threads(5, None, "desc", context)

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(tenant_work, ALICE, n)
                tg.start_soon(tenant_work, BOB, n)
        for context in (ALICE, BOB):
            assert sorted(await _thread_ids(store, context)) == sorted(
                f"thr_{n}" for n in range(10)
            )
            for n in range(10):
                page = await store.load_thread_items(f"thr_{n}", None, 10, "asc", context)
                assert page.data == [
                    _message("a", f"thr_{n}"),
                    _message("b", f"thr_{n}", "updated"),
                ]
