"""Client tool calls through the ASGI app: the pending call ends the reply, its output resumes it.

Every test runs on `MemoryStore` and on `SQLiteStore` (see conftest).
"""

from __future__ import annotations

import pytest

from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    ThreadItemDoneEvent,
)

from ._support import WidgetAssistant, assert_reference_reads


async def request_location(client: ChatKitTestClient) -> ClientToolCallItem:
    events = await client.create_thread("locate")
    done = events[-1]  # the stream ends with the pending call
    assert isinstance(done, ThreadItemDoneEvent)
    assert isinstance(done.item, ClientToolCallItem)
    assert_reference_reads(done)
    return done.item


async def test_a_pending_call_ends_the_reply_and_is_stored(client: ChatKitTestClient) -> None:
    call = await request_location(client)

    assert (call.status, call.name, call.arguments, call.call_id, call.output) == (
        "pending",
        "get_location",
        {"precision": "city"},
        "call_1",
        None,
    )
    thread = await client.get_thread(call.thread_id)
    assert [item.type for item in thread.items.data] == ["user_message", "client_tool_call"]
    assert thread.items.data[-1] == call


async def test_the_output_completes_the_call_and_resumes_the_responder(
    client: ChatKitTestClient, assistant: WidgetAssistant
) -> None:
    call = await request_location(client)

    events = await client.stream(
        "threads.add_client_tool_output", thread_id=call.thread_id, result={"city": "Lyon"}
    )

    assert [event.type for event in events] == ["stream_options", "thread.item.done"]
    reply = events[-1].item  # type: ignore[union-attr]
    assert isinstance(reply, AssistantMessageItem)
    assert reply.content[0].text == "You are in Lyon."
    [resumed] = assistant.resumed_with
    assert isinstance(resumed, ClientToolCallItem)
    assert (resumed.id, resumed.status, resumed.output) == (call.id, "completed", {"city": "Lyon"})

    thread = await client.get_thread(call.thread_id)
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "client_tool_call",
        "assistant_message",
    ]
    stored = thread.items.data[1]
    assert isinstance(stored, ClientToolCallItem)
    assert (stored.status, stored.output) == ("completed", {"city": "Lyon"})
    assert stored.model_copy(update={"status": "pending", "output": None}) == call


async def test_any_json_is_a_valid_output(client: ChatKitTestClient) -> None:
    call = await request_location(client)
    await client.stream(
        "threads.add_client_tool_output", thread_id=call.thread_id, result=["a", 1, None]
    )
    stored = (await client.get_thread(call.thread_id)).items.data[1]
    assert stored.output == ["a", 1, None]  # type: ignore[union-attr]


async def test_output_without_a_pending_call_is_a_conflict(client: ChatKitTestClient) -> None:
    call = await request_location(client)
    await client.stream(
        "threads.add_client_tool_output", thread_id=call.thread_id, result={"city": "Lyon"}
    )

    with pytest.raises(ProtocolHTTPError) as info:
        await client.stream(
            "threads.add_client_tool_output", thread_id=call.thread_id, result={"city": "Nice"}
        )

    assert (info.value.status, info.value.code) == (409, "no_pending_tool_call")
    stored = (await client.get_thread(call.thread_id)).items.data[1]
    assert stored.output == {"city": "Lyon"}  # type: ignore[union-attr]


async def test_a_round_trip_can_happen_again_in_the_same_thread(client: ChatKitTestClient) -> None:
    call = await request_location(client)
    await client.stream(
        "threads.add_client_tool_output", thread_id=call.thread_id, result={"city": "A"}
    )
    events = await client.add_message(call.thread_id, "locate")
    second = events[-1].item  # type: ignore[union-attr]
    assert isinstance(second, ClientToolCallItem)
    assert second.id != call.id
    events = await client.stream(
        "threads.add_client_tool_output", thread_id=call.thread_id, result={"city": "B"}
    )
    assert events[-1].item.content[0].text == "You are in B."  # type: ignore[union-attr]
    thread = await client.get_thread(call.thread_id)
    assert [
        (item.status, item.output)
        for item in thread.items.data
        if isinstance(item, ClientToolCallItem)
    ] == [("completed", {"city": "A"}), ("completed", {"city": "B"})]
