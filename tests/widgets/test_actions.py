"""Widget actions through the ASGI app: custom actions, sync actions, widgets replaced in place.

Every test runs on `MemoryStore` and on `SQLiteStore` (see conftest) and checks
what a reload (`threads.get_by_id`) shows afterwards.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import (
    AssistantMessageItem,
    ErrorEvent,
    StreamOptionsEvent,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    UserMessageItem,
    WidgetItem,
    WidgetStreamingTextValueDelta,
)
from chatkit_asgi.widgets import Card, Markdown

from ._support import WidgetAssistant, assert_reference_reads, vote_card, wire


async def start_with_card(client: ChatKitTestClient) -> tuple[str, WidgetItem]:
    """A thread whose assistant answered with the vote card."""
    events = await client.create_thread("card")
    done = events[-1]
    assert isinstance(done, ThreadItemDoneEvent)
    assert isinstance(done.item, WidgetItem)
    return done.item.thread_id, done.item


def text_of(item: Any) -> str:
    assert isinstance(item, AssistantMessageItem)
    return item.content[0].text


async def test_a_widget_is_stored_like_any_item(client: ChatKitTestClient) -> None:
    thread_id, widget = await start_with_card(client)

    assert widget.widget == vote_card(0)
    assert widget.copy_text == "0 votes"
    thread = await client.get_thread(thread_id)
    assert [item.type for item in thread.items.data] == ["user_message", "widget"]
    assert thread.items.data[1] == widget


async def test_a_streamed_widget_arrives_as_deltas_and_is_stored_finished(
    client: ChatKitTestClient,
) -> None:
    events = await client.create_thread("streamed card")

    kinds = [type(event) for event in events]
    assert kinds[kinds.index(ThreadItemAddedEvent) :] == [
        ThreadItemAddedEvent,
        ThreadItemUpdatedEvent,
        ThreadItemUpdatedEvent,
        ThreadItemUpdatedEvent,
        ThreadItemUpdatedEvent,
        ThreadItemDoneEvent,
    ]
    updates = [event.update for event in events if isinstance(event, ThreadItemUpdatedEvent)]
    assert updates[:3] == [
        WidgetStreamingTextValueDelta(component_id="md", delta=delta, done=False)
        for delta in ("Hello", ", wor", "ld")
    ]
    # The end of the stream (`streaming` turned off) sends the tree, as the reference does.
    assert updates[3].type == "widget.root.updated"
    for event in events:
        assert_reference_reads(event)

    done = events[-1]
    assert isinstance(done, ThreadItemDoneEvent)
    thread = await client.get_thread(done.item.thread_id)
    assert thread.items.data[-1] == done.item
    assert thread.items.data[-1].widget == Card(  # type: ignore[union-attr]
        children=[Markdown(id="md", value="Hello, world", streaming=False)]
    )


async def test_a_custom_action_reaches_the_responder_with_its_sender(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    thread_id, widget = await start_with_card(client)

    events = await client.stream(
        "threads.custom_action",
        thread_id=thread_id,
        item_id=widget.id,
        action={"type": "vote", "payload": {"votes": 0}},
    )

    [(action, sender)] = assistant.actions
    assert (action.type, action.payload) == ("vote", {"votes": 0})
    assert sender == widget
    assert isinstance(events[0], StreamOptionsEvent)
    replaced, done = events[1:]
    assert isinstance(replaced, ThreadItemReplacedEvent)
    assert isinstance(done, ThreadItemDoneEvent)
    assert text_of(done.item) == f"action vote from {widget.id}"
    assert_reference_reads(replaced)


async def test_a_widget_replaced_by_an_action_stays_in_place(client: ChatKitTestClient) -> None:
    thread_id, widget = await start_with_card(client)

    events = await client.stream(
        "threads.custom_action",
        thread_id=thread_id,
        item_id=widget.id,
        action={"type": "vote", "payload": {"votes": 0}},
    )

    replaced = events[1]
    assert isinstance(replaced, ThreadItemReplacedEvent)
    assert isinstance(replaced.item, WidgetItem)
    assert replaced.item.id == widget.id
    assert replaced.item.created_at == widget.created_at
    assert replaced.item.widget == vote_card(1)
    assert replaced.item.copy_text == "1 votes"

    thread = await client.get_thread(thread_id)
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "widget",
        "assistant_message",
    ]
    stored = thread.items.data[1]
    assert wire(stored) == wire(replaced.item)
    # And again: the action of the replaced card carries the new count.
    await client.stream(
        "threads.custom_action",
        thread_id=thread_id,
        item_id=widget.id,
        action={"type": "vote", "payload": {"votes": 1}},
    )
    thread = await client.get_thread(thread_id)
    assert thread.items.data[1].widget == vote_card(2)  # type: ignore[union-attr]
    assert len(thread.items.data) == 4


async def test_a_custom_action_without_sender(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    thread_id, _ = await start_with_card(client)

    events = await client.stream(
        "threads.custom_action", thread_id=thread_id, action={"type": "refresh"}
    )

    [(action, sender)] = assistant.actions
    assert (action.type, action.payload, sender) == ("refresh", None, None)
    assert [event.type for event in events] == ["stream_options", "thread.item.done"]
    assert text_of(events[-1].item) == "action refresh from None"  # type: ignore[union-attr]
    thread = await client.get_thread(thread_id)
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "widget",
        "assistant_message",
    ]


async def test_an_action_from_an_item_that_is_no_widget_is_an_error_event(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    thread_id, _ = await start_with_card(client)
    thread = await client.get_thread(thread_id)
    message = thread.items.data[0]
    assert isinstance(message, UserMessageItem)

    events = await client.stream(
        "threads.custom_action", thread_id=thread_id, item_id=message.id, action={"type": "vote"}
    )

    assert events == [ErrorEvent(code="stream.error", allow_retry=False)]
    assert assistant.actions == []
    assert len((await client.get_thread(thread_id)).items.data) == 2


async def test_an_action_from_an_unknown_item_is_refused(client: ChatKitTestClient) -> None:
    thread_id, _ = await start_with_card(client)
    with pytest.raises(ProtocolHTTPError) as info:
        await client.stream(
            "threads.custom_action", thread_id=thread_id, item_id="msg_nope", action={"type": "x"}
        )
    assert (info.value.status, info.value.code) == (404, "item_not_found")


async def test_a_sync_action_answers_with_the_updated_widget_and_saves_it(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    thread_id, widget = await start_with_card(client)

    answer = await client.call(
        "threads.sync_custom_action",
        thread_id=thread_id,
        item_id=widget.id,
        action={"type": "count", "payload": {"votes": 0}},
    )

    [(action, sender)] = assistant.actions
    assert (action.type, sender) == ("count", widget)
    expected = widget.model_copy(update={"widget": vote_card(1)})
    assert answer == {"updated_item": wire(expected)}
    thread = await client.get_thread(thread_id)
    assert [item.type for item in thread.items.data] == ["user_message", "widget"]
    assert wire(thread.items.data[1]) == wire(expected)


async def test_a_sync_action_with_nothing_to_update_answers_an_empty_object(
    client: ChatKitTestClient,
) -> None:
    thread_id, widget = await start_with_card(client)

    answer = await client.call(
        "threads.sync_custom_action", thread_id=thread_id, action={"type": "ping"}
    )

    assert answer == {}
    thread = await client.get_thread(thread_id)
    assert thread.items.data[1] == widget


async def test_the_sync_answer_is_what_the_reference_sends(client: ChatKitTestClient) -> None:
    import chatkit.types as ref_types

    thread_id, widget = await start_with_card(client)
    answer = await client.call(
        "threads.sync_custom_action",
        thread_id=thread_id,
        item_id=widget.id,
        action={"type": "count", "payload": {"votes": 4}},
    )
    parsed = ref_types.SyncCustomActionResponse.model_validate(answer)
    assert parsed.model_dump(mode="json", exclude_none=True) == answer
