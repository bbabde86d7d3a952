"""examples/widgets: every flow of the weather assistant, end to end through the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import TypeAdapter

from chatkit_asgi import ChatKitApp
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    StructuredInputItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    WidgetItem,
)
from chatkit_asgi.widgets import WidgetRoot
from examples.widgets.app import WeatherAssistant, forecast, weather_card

from ._support import assert_reference_reads

ROOTS: TypeAdapter[Any] = TypeAdapter(WidgetRoot)


@pytest.fixture
async def client() -> AsyncIterator[ChatKitTestClient]:
    app = ChatKitApp(WeatherAssistant(pause=0), store=MemoryStore())
    async with ChatKitTestClient(app) as test_client:
        yield test_client


def last_item(events: list[Any]) -> Any:
    """The item of the last `thread.item.done` (a `thread.updated` may follow it)."""
    return [event for event in events if isinstance(event, ThreadItemDoneEvent)][-1].item


def props(widget: Any) -> Any:
    """A tree's JSON once read back as the client sends it (typed where it fits)."""
    return ROOTS.validate_python(widget.model_dump(exclude_none=True)).model_dump(exclude_none=True)


async def weather(client: ChatKitTestClient, city: str) -> WidgetItem:
    item = last_item(await client.create_thread(city))
    assert isinstance(item, WidgetItem)
    return item


async def test_the_card_streams_its_summary_as_text_deltas(client: ChatKitTestClient) -> None:
    events = await client.create_thread("Paris")

    degrees, summary = forecast("Paris")
    updates = [event.update for event in events if isinstance(event, ThreadItemUpdatedEvent)]
    deltas = [update for update in updates if update.type == "widget.streaming_text.value_delta"]
    assert "".join(delta.delta for delta in deltas) == summary  # type: ignore[union-attr]
    assert len(deltas) == len(summary.split(" "))
    assert [update.type for update in updates[len(deltas) :]] == ["widget.root.updated"]
    for event in events:
        assert_reference_reads(event)

    card = last_item(events)
    assert props(card.widget) == props(weather_card("Paris", degrees, summary=summary))
    assert card.copy_text == summary
    thread = await client.get_thread(card.thread_id)
    assert thread.title == "Paris"
    assert thread.items.data[-1] == card


async def test_refresh_updates_the_card_in_place(client: ChatKitTestClient) -> None:
    card = await weather(client, "Oslo")
    degrees, _ = forecast("Oslo")

    events = await client.stream(
        "threads.custom_action",
        thread_id=card.thread_id,
        item_id=card.id,
        action={"type": "weather.refresh", "payload": {"city": "Oslo", "degrees": degrees}},
    )

    assert [event.type for event in events] == [
        "stream_options",
        "thread.item.replaced",
        "thread.item.done",
    ]
    replaced = events[1]
    assert isinstance(replaced, ThreadItemReplacedEvent)
    assert replaced.item.id == card.id
    summary = f"Refreshed: **Oslo** is now at {degrees + 1} °C."
    assert props(replaced.item.widget) == props(  # type: ignore[union-attr]
        weather_card("Oslo", degrees + 1, summary=summary)
    )
    thread = await client.get_thread(card.thread_id)
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "widget",
        "assistant_message",
    ]
    assert thread.items.data[1] == replaced.item


async def test_like_is_answered_at_once_and_saved(client: ChatKitTestClient) -> None:
    card = await weather(client, "Rome")
    degrees, summary = forecast("Rome")

    answer = await client.call(
        "threads.sync_custom_action",
        thread_id=card.thread_id,
        item_id=card.id,
        action={
            "type": "weather.like",
            "payload": {"city": "Rome", "degrees": degrees, "likes": 0},
        },
    )

    updated = WidgetItem.model_validate(answer["updated_item"])
    assert props(updated.widget) == props(weather_card("Rome", degrees, summary=summary, likes=1))
    thread = await client.get_thread(card.thread_id)
    assert thread.items.data[-1] == updated


async def test_planning_asks_questions_then_sums_up_the_answers(
    client: ChatKitTestClient,
) -> None:
    events = await client.create_thread("plan a trip")
    question = last_item(events)
    assert isinstance(question, StructuredInputItem)

    events = await client.stream(
        "threads.add_structured_input",
        thread_id=question.thread_id,
        item_id=question.id,
        input={
            "answers": {
                "kind": {"values": ["Beach", "City"]},
                "company": {"values": ["Friends", "Family"]},
            }
        },
    )

    reply = last_item(events)
    assert isinstance(reply, AssistantMessageItem)
    assert reply.content[0].text == (
        "Noted. What kind of trip? Beach Who is coming? Friends, Family"
    )


async def test_here_asks_the_page_for_the_location_then_shows_its_weather(
    client: ChatKitTestClient,
) -> None:
    events = await client.create_thread("here")
    call = last_item(events)
    assert isinstance(call, ClientToolCallItem)
    assert (call.name, call.status) == ("get_location", "pending")

    events = await client.stream(
        "threads.add_client_tool_output", thread_id=call.thread_id, result={"city": "Lisbon"}
    )

    card = last_item(events)
    assert isinstance(card, WidgetItem)
    assert card.widget.children[0].children[0].value == "Lisbon"  # type: ignore[union-attr,index]
