"""Structured input through the ASGI app: questions, answers by the reference's rules, resumption.

Every test runs on `MemoryStore` and on `SQLiteStore` (see conftest).
"""

from __future__ import annotations

from typing import Any

import pytest

from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import (
    AssistantMessageItem,
    StructuredInputAnswer,
    StructuredInputItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
)

from ._support import WidgetAssistant, assert_reference_reads


async def ask(client: ChatKitTestClient) -> StructuredInputItem:
    """A thread whose assistant asked the trip questions."""
    events = await client.create_thread("ask")
    done = events[-1]
    assert isinstance(done, ThreadItemDoneEvent)
    assert isinstance(done.item, StructuredInputItem)
    assert done.item.status == "pending"
    assert_reference_reads(done)
    return done.item


async def answer(
    client: ChatKitTestClient, item: StructuredInputItem, answers: dict[str, Any], **input: Any
) -> list[Any]:
    return await client.stream(
        "threads.add_structured_input",
        thread_id=item.thread_id,
        item_id=item.id,
        input={"answers": answers, **input},
    )


def answers_of(item: Any) -> dict[str, StructuredInputAnswer | None]:
    assert isinstance(item, StructuredInputItem)
    return {question.id: question.answer for question in item.inputs}


async def test_the_question_is_stored_pending(client: ChatKitTestClient) -> None:
    item = await ask(client)
    thread = await client.get_thread(item.thread_id)
    assert thread.items.data[-1] == item
    assert [question.type for question in item.inputs] == [
        "multiple_choice",
        "multiple_choice",
        "freeform",
    ]


async def test_answers_replace_the_item_then_the_responder_resumes(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    item = await ask(client)

    events = await answer(
        client,
        item,
        {
            "kind": {"values": ["city", "beach"]},  # single choice: the first value only
            "company": {"values": ["friends", "dog"]},  # multiple choice: all of them
            "notes": {"values": ["no museums"]},
            "unknown": {"values": ["ignored"]},
        },
    )

    assert [event.type for event in events] == [
        "stream_options",
        "thread.item.replaced",
        "thread.item.done",
    ]
    replaced = events[1]
    assert isinstance(replaced, ThreadItemReplacedEvent)
    assert replaced.item.id == item.id
    assert replaced.item.status == "answered"  # type: ignore[union-attr]
    assert answers_of(replaced.item) == {
        "kind": StructuredInputAnswer(values=["city"]),
        "company": StructuredInputAnswer(values=["friends", "dog"]),
        "notes": StructuredInputAnswer(values=["no museums"]),
    }
    assert_reference_reads(replaced)

    # The responder ran with no input and found the answered item as the newest one.
    [resumed] = assistant.resumed_with
    assert resumed == replaced.item
    reply = events[2].item
    assert isinstance(reply, AssistantMessageItem)
    assert reply.content[0].text == (
        "answers: {'kind': ['city'], 'company': ['friends', 'dog'], 'notes': ['no museums']}"
    )

    thread = await client.get_thread(item.thread_id)
    assert [stored.type for stored in thread.items.data] == [
        "user_message",
        "structured_input",
        "assistant_message",
    ]
    assert thread.items.data[1] == replaced.item


async def test_missing_and_empty_answers_are_skipped(client: ChatKitTestClient) -> None:
    item = await ask(client)

    events = await answer(client, item, {"kind": {"values": []}, "notes": {"values": ["x"]}})

    replaced = events[1].item
    assert replaced.status == "answered"
    assert answers_of(replaced) == {
        "kind": StructuredInputAnswer(skipped=True),
        "company": StructuredInputAnswer(skipped=True),
        "notes": StructuredInputAnswer(values=["x"]),
    }


async def test_an_answer_marked_skipped_is_skipped_whatever_its_values(
    client: ChatKitTestClient,
) -> None:
    item = await ask(client)
    events = await answer(client, item, {"notes": {"values": ["x"], "skipped": True}})
    assert answers_of(events[1].item)["notes"] == StructuredInputAnswer(skipped=True)


async def test_skipping_the_whole_item_skips_every_question(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    item = await ask(client)

    events = await answer(client, item, {"kind": {"values": ["beach"]}}, status="skipped")

    replaced = events[1].item
    assert replaced.status == "skipped"
    assert list(answers_of(replaced).values()) == [StructuredInputAnswer(skipped=True)] * 3
    assert events[2].item.content[0].text == (
        "answers: {'kind': 'skipped', 'company': 'skipped', 'notes': 'skipped'}"
    )
    thread = await client.get_thread(item.thread_id)
    assert thread.items.data[1] == replaced


async def test_answering_twice_is_a_conflict(client: ChatKitTestClient) -> None:
    item = await ask(client)
    await answer(client, item, {"notes": {"values": ["x"]}})

    with pytest.raises(ProtocolHTTPError) as info:
        await answer(client, item, {"notes": {"values": ["y"]}})

    assert (info.value.status, info.value.code) == (409, "not_pending")
    thread = await client.get_thread(item.thread_id)
    assert answers_of(thread.items.data[1])["notes"] == StructuredInputAnswer(values=["x"])


async def test_only_structured_input_items_take_answers(client: ChatKitTestClient) -> None:
    item = await ask(client)
    thread = await client.get_thread(item.thread_id)
    message = thread.items.data[0]

    with pytest.raises(ProtocolHTTPError) as info:
        await client.stream(
            "threads.add_structured_input",
            thread_id=item.thread_id,
            item_id=message.id,
            input={"answers": {}},
        )
    assert (info.value.status, info.value.code) == (400, "invalid_item_type")
