"""The behaviour every `Store` must have, as a pytest suite to subclass.

Subclass `StoreContract` in a test module and override the `store` fixture so it
returns a fresh, empty store whose tenant key is `ctx["user"]`::

    from chatkit_asgi.testing.store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            async with MyStore(tmp_path / "db", tenant=lambda ctx: ctx["user"]) as store:
                yield store

The suite calls the store with contexts like `{"user": "alice"}` and
`{"user": "bob"}` and checks that the two never see each other's threads, items
or attachments. The fixture may be a plain or a yield fixture (to close the store).
For readable assertion failures, call
`pytest.register_assert_rewrite("chatkit_asgi.testing.store_contract")` in a
`conftest.py` before the test module imports the suite.

This module imports pytest (and runs on anyio, which chatkit-asgi depends on), so
it is for test suites only: install the test tools (`pip install chatkit-asgi[dev]`
or just `pytest` and `pytest-asyncio` in auto mode).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from ..store import NotFoundError, Store
from ..types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    AttachmentUploadDescriptor,
    ClientToolCallItem,
    ClosedStatus,
    CustomSummary,
    CustomTask,
    EndOfTurnItem,
    FileAttachment,
    FileSource,
    GeneratedImage,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    InferenceOptions,
    LockedStatus,
    Page,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputAnswer,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    TaskItem,
    ThoughtTask,
    Thread,
    ThreadItem,
    ThreadMetadata,
    ToolChoice,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)

__all__ = ["ALICE", "BOB", "StoreContract", "every_kind_of_item"]

ALICE: dict[str, str] = {"user": "alice"}
"""The context of the first tenant the suite uses."""

BOB: dict[str, str] = {"user": "bob"}
"""The context of the second tenant, who must never see ALICE's data."""

T0 = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)

# Ids deliberately out of alphabetical order: a store that sorts by id fails.
SCRAMBLED = ["m", "c", "x", "a", "q", "f", "z", "b", "k", "e"]


def _thread(thread_id: str, created_at: datetime = T0, **fields: Any) -> ThreadMetadata:
    return ThreadMetadata(id=thread_id, created_at=created_at, **fields)


def _message(
    item_id: str, thread_id: str = "thr_1", text: str = "hello", created_at: datetime = T0
) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=thread_id,
        created_at=created_at,
        content=[AssistantMessageContent(text=text)],
    )


def _file_attachment(attachment_id: str, thread_id: str | None = None) -> FileAttachment:
    return FileAttachment(
        id=attachment_id,
        name="report.pdf",
        mime_type="application/pdf",
        thread_id=thread_id,
        upload_descriptor=AttachmentUploadDescriptor(
            url="https://upload.example.com/atc", method="PUT", headers={"x-amz-acl": "private"}
        ),
        metadata={"bucket": "uploads", "key": f"u/{attachment_id}", "size": 1234, "tags": ["a"]},
    )


def _image_attachment(attachment_id: str, thread_id: str | None = None) -> ImageAttachment:
    return ImageAttachment(
        id=attachment_id,
        name="cat.png",
        mime_type="image/png",
        thread_id=thread_id,
        preview_url="https://cdn.example.com/cat.png",
        metadata={"width": 640, "height": 480},
    )


def every_kind_of_item(thread_id: str) -> list[ThreadItem]:
    """One item of every kind, all fields exercised, in the order they are added."""
    at = [T0 + timedelta(seconds=i) for i in range(12)]
    return [
        UserMessageItem(
            id="msg_user",
            thread_id=thread_id,
            created_at=at[0],
            content=[
                UserMessageTextContent(text="What is in these files? ✓ ünïcode"),
                UserMessageTagContent(
                    id="tag_1", text="@ticket", data={"ticket": 42}, group="tickets"
                ),
            ],
            attachments=[
                _file_attachment("atc_file", thread_id),
                _image_attachment("atc_image", thread_id),
            ],
            quoted_text="quoted",
            inference_options=InferenceOptions(tool_choice=ToolChoice(id="search"), model="m"),
        ),
        AssistantMessageItem(
            id="msg_assistant",
            thread_id=thread_id,
            created_at=at[1],
            content=[
                AssistantMessageContent(
                    text="See the report [1] and the page [2].",
                    annotations=[
                        Annotation(
                            source=FileSource(title="Report", filename="report.pdf"), index=3
                        ),
                        Annotation(
                            source=URLSource(
                                title="Page", url="https://example.com", attribution="Ex"
                            ),
                            index=7,
                        ),
                    ],
                )
            ],
        ),
        ClientToolCallItem(
            id="tc_1",
            thread_id=thread_id,
            created_at=at[2],
            status="completed",
            call_id="call_1",
            name="get_location",
            arguments={"precise": True, "nested": {"list": [1, 2.5, None]}},
            output={"lat": 1.5, "lng": -2.25},
        ),
        WidgetItem.model_validate(
            {
                "id": "widget_1",
                "thread_id": thread_id,
                "created_at": at[3],
                "widget": {
                    "type": "Card",
                    "children": [{"type": "Text", "value": "hi", "id": "t1"}],
                },
                "copy_text": "hi",
            }
        ),
        WorkflowItem(
            id="wf_1",
            thread_id=thread_id,
            created_at=at[4],
            workflow=Workflow(
                type="custom",
                tasks=[
                    CustomTask(title="Step", content="doing", status_indicator="loading"),
                    SearchTask(
                        title="Searching",
                        queries=["cats"],
                        sources=[URLSource(title="Cats", url="https://cats.example")],
                    ),
                ],
                summary=CustomSummary(title="Done", icon="check"),
                expanded=True,
            ),
        ),
        TaskItem(
            id="tsk_1",
            thread_id=thread_id,
            created_at=at[5],
            task=ThoughtTask(content="thinking", status_indicator="complete"),
        ),
        HiddenContextItem(
            id="hidden_1",
            thread_id=thread_id,
            created_at=at[6],
            content={"note": "for the model", "n": [1, 2]},
        ),
        SDKHiddenContextItem(
            id="shcx_1", thread_id=thread_id, created_at=at[7], content="user cancelled"
        ),
        EndOfTurnItem(id="eot_1", thread_id=thread_id, created_at=at[8]),
        StructuredInputItem(
            id="si_1",
            thread_id=thread_id,
            created_at=at[9],
            status="answered",
            inputs=[
                StructuredInputMultipleChoice(
                    id="q1",
                    question="Pick",
                    options=[
                        StructuredInputMultipleChoiceOption(value="a"),
                        StructuredInputMultipleChoiceOption(value="b"),
                    ],
                    multiple=True,
                    answer=StructuredInputAnswer(values=["a", "b"]),
                ),
                StructuredInputFreeform(
                    id="q2",
                    question="Why?",
                    description="free text",
                    answer=StructuredInputAnswer(skipped=True),
                ),
            ],
        ),
        GeneratedImageItem(
            id="img_1",
            thread_id=thread_id,
            created_at=at[10],
            image=GeneratedImage(id="gen_1", url="https://images.example/gen_1.png"),
        ),
        GeneratedImageItem(id="img_pending", thread_id=thread_id, created_at=at[11]),
    ]


def _ids(page: Page[Any]) -> list[str]:
    return [entry.id for entry in page.data]


async def _item_ids(
    store: Store[Any], thread_id: str, context: Any, order: str = "asc"
) -> list[str]:
    return _ids(await store.load_thread_items(thread_id, None, 10_000, order, context))


async def _thread_ids(store: Store[Any], context: Any, order: str = "asc") -> list[str]:
    return _ids(await store.load_threads(10_000, None, order, context))


async def _walk_items(
    store: Store[Any], thread_id: str, limit: int, order: str, context: Any
) -> list[str]:
    """Every item id, one page of `limit` at a time, checking each page's cursor."""
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await store.load_thread_items(thread_id, after, limit, order, context)
        assert len(page.data) <= limit
        assert page.after == (page.data[-1].id if page.data else None)
        seen += _ids(page)
        if not page.has_more:
            return seen
        assert page.data, "a page with has_more must not be empty when limit > 0"
        after = page.after


async def _walk_threads(store: Store[Any], limit: int, order: str, context: Any) -> list[str]:
    """Every thread id, one page of `limit` at a time, checking each page's cursor."""
    seen: list[str] = []
    after: str | None = None
    while True:
        page = await store.load_threads(limit, after, order, context)
        assert len(page.data) <= limit
        assert page.after == (page.data[-1].id if page.data else None)
        seen += _ids(page)
        if not page.has_more:
            return seen
        assert page.data, "a page with has_more must not be empty when limit > 0"
        after = page.after


class StoreContract:
    """Tests every `Store` must pass; subclass it and override the `store` fixture.

    The fixture must return a new, empty store that isolates tenants by
    `context["user"]` (e.g. `tenant=lambda ctx: ctx["user"]`).
    """

    @pytest.fixture
    async def store(self) -> Store[Any]:
        """A fresh, empty store scoped by `ctx["user"]`: override in the subclass."""
        raise NotImplementedError("subclasses of StoreContract must override the store fixture")

    async def _thread_with_items(
        self, store: Store[Any], thread_id: str, item_ids: list[str], context: Any = ALICE
    ) -> None:
        await store.save_thread(_thread(thread_id), context)
        for item_id in item_ids:
            await store.add_thread_item(thread_id, _message(item_id, thread_id), context)

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
