"""Shared data and helpers of the store contract suite."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ...store import Store
from ...types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    AttachmentUploadDescriptor,
    ClientToolCallItem,
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

__all__ = ["ALICE", "BOB", "ContractBase", "every_kind_of_item"]

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


class ContractBase:
    """The fixture and helpers every part of the suite uses."""

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
