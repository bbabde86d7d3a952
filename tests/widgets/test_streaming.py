"""`stream_widget`, `accumulate_text` and friends: the exact events a responder yields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from chatkit_asgi import Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.types import (
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    WidgetItem,
    WidgetRootUpdated,
    WidgetStreamingTextValueDelta,
)
from chatkit_asgi.widgets import (
    Card,
    DynamicWidgetRoot,
    Markdown,
    Row,
    Text,
    Title,
    WidgetTemplate,
    accumulate_text,
    replace_widget,
    stream_widget,
    text_deltas,
)

from ._support import assert_reference_reads

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def turn() -> Turn[Any]:
    return Turn(
        thread=ThreadMetadata(id="thr_1", created_at=T0),
        input=None,
        context={},
        store=MemoryStore(),
    )


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


async def states(*trees: Any) -> AsyncIterator[Any]:
    for tree in trees:
        yield tree


def card(text: str, *, streaming: bool = True) -> Card:
    return Card(children=[Title(value="Story"), Markdown(id="md", value=text, streaming=streaming)])


# ---------------------------------------------------------------------------
# stream_widget
# ---------------------------------------------------------------------------


async def test_a_finished_widget_is_one_done_event(turn: Turn[Any]) -> None:
    widget = card("The end", streaming=False)
    [event] = await collect(stream_widget(turn, widget, copy_text="The end"))

    assert isinstance(event, ThreadItemDoneEvent)
    item = event.item
    assert isinstance(item, WidgetItem)
    assert item.id.startswith("msg_")
    assert (item.thread_id, item.widget, item.copy_text) == ("thr_1", widget, "The end")
    assert item.created_at.tzinfo is not None
    assert_reference_reads(event)


async def test_states_are_added_then_updated_then_done(turn: Turn[Any]) -> None:
    events = await collect(
        stream_widget(
            turn,
            states(card(""), card("Once"), card("Once upon"), card("Once upon", streaming=False)),
        )
    )

    assert [event.type for event in events] == [
        "thread.item.added",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.done",
    ]
    added, first, second, last, done = events
    assert added.item.widget == card("")
    item_id = added.item.id
    assert [event.item_id for event in (first, second, last)] == [item_id] * 3
    assert first.update == WidgetStreamingTextValueDelta(
        component_id="md", delta="Once", done=False
    )
    assert second.update == WidgetStreamingTextValueDelta(
        component_id="md", delta=" upon", done=False
    )
    assert last.update == WidgetRootUpdated(widget=card("Once upon", streaming=False))
    assert done.item.id == item_id
    assert done.item.widget == card("Once upon", streaming=False)
    assert done.item.created_at == added.item.created_at
    for event in events:
        assert_reference_reads(event)


async def test_a_shape_change_between_states_replaces_the_root(turn: Turn[Any]) -> None:
    bigger = Card(children=[*card("a").children, Text(value="more")])
    events = await collect(stream_widget(turn, states(card("a"), bigger)))

    assert [event.type for event in events] == [
        "thread.item.added",
        "thread.item.updated",
        "thread.item.done",
    ]
    assert events[1].update == WidgetRootUpdated(widget=bigger)


async def test_unchanged_states_send_nothing_between_added_and_done(turn: Turn[Any]) -> None:
    events = await collect(stream_widget(turn, states(card("a"), card("a"), card("a"))))
    assert [event.type for event in events] == ["thread.item.added", "thread.item.done"]


async def test_the_same_object_yielded_again_is_sent_whole(turn: Turn[Any]) -> None:
    async def mutating() -> AsyncIterator[Card]:
        tree = card("a")
        yield tree
        tree.children[1].value = "ab"  # type: ignore[union-attr]  # changed in place
        yield tree

    events = await collect(stream_widget(turn, mutating()))
    assert isinstance(events[1], ThreadItemUpdatedEvent)
    assert isinstance(events[1].update, WidgetRootUpdated)
    assert events[-1].item.widget.children[1].value == "ab"


async def test_a_thread_and_an_id_generator_work_like_the_reference(turn: Turn[Any]) -> None:
    [event] = await collect(
        stream_widget(turn.thread, card("x"), generate_id=lambda kind: f"{kind}_fixed")
    )
    assert event.item.id == "message_fixed"
    [event] = await collect(stream_widget(turn.thread, card("x")))
    assert event.item.id.startswith("msg_")


async def test_an_empty_stream_is_an_error(turn: Turn[Any]) -> None:
    with pytest.raises(ValueError, match="yielded no widget"):
        await collect(stream_widget(turn, states()))


async def test_a_stopped_stream_closes_its_source(turn: Turn[Any]) -> None:
    closed = False

    async def endless() -> AsyncIterator[Card]:
        nonlocal closed
        try:
            number = 0
            while True:
                number += 1
                yield card("x" * number)
        finally:
            closed = True

    events = stream_widget(turn, endless())
    assert (await anext(events)).type == "thread.item.added"
    assert (await anext(events)).type == "thread.item.updated"
    await events.aclose()  # type: ignore[attr-defined]
    assert closed


async def test_turn_stream_widget_is_the_same_helper(turn: Turn[Any]) -> None:
    events = await collect(turn.stream_widget(states(card(""), card("hi")), copy_text="hi"))
    assert [event.type for event in events] == [
        "thread.item.added",
        "thread.item.updated",
        "thread.item.done",
    ]
    assert events[-1].item.copy_text == "hi"


# ---------------------------------------------------------------------------
# accumulate_text
# ---------------------------------------------------------------------------


async def test_accumulate_text_grows_the_node_named_by_id(turn: Turn[Any]) -> None:
    base = Card(children=[Title(value="Answer"), Row(children=[Markdown(id="md", value="")])])
    trees = await collect(accumulate_text(states("Hel", "lo", "!"), base, component_id="md"))

    values = [
        (tree.children[1].children[0].value, tree.children[1].children[0].streaming)
        for tree in trees
    ]
    assert values == [
        ("", True),
        ("Hel", True),
        ("Hello", True),
        ("Hello!", True),
        ("Hello!", False),
    ]
    # Everything but the path to the text node is shared between states.
    assert all(tree.children[0] is base.children[0] for tree in trees)
    assert base.children[1].children[0].value == ""  # type: ignore[union-attr]


async def test_accumulated_text_streams_as_deltas(turn: Turn[Any]) -> None:
    base = Card(children=[Title(value="Answer"), Markdown(id="md", value="")])
    events = await collect(
        stream_widget(turn, accumulate_text(states("Hel", "lo"), base, component_id="md"))
    )

    updates = [event.update for event in events if isinstance(event, ThreadItemUpdatedEvent)]
    assert updates == [
        WidgetStreamingTextValueDelta(component_id="md", delta="Hel", done=False),
        WidgetStreamingTextValueDelta(component_id="md", delta="lo", done=False),
        WidgetRootUpdated(
            widget=Card(
                children=[Title(value="Answer"), Markdown(id="md", value="Hello", streaming=False)]
            )
        ),
    ]
    assert events[-1].item.widget.children[1].value == "Hello"


async def test_accumulate_text_finds_the_only_text_node_with_an_id() -> None:
    base = Card(children=[Text(value="no id"), Text(id="t", value="So: ")])
    trees = await collect(accumulate_text(states("yes"), base))
    assert trees[-1].children[1].value == "So: yes"


async def test_accumulate_text_on_a_bare_text_node_like_the_reference() -> None:
    trees = await collect(accumulate_text(states("a", "b"), Markdown(value="")))
    assert [(tree.value, tree.streaming) for tree in trees] == [
        ("", True),
        ("a", True),
        ("ab", True),
        ("ab", False),
    ]


async def test_accumulate_text_on_a_template_tree(turn: Turn[Any]) -> None:
    template = WidgetTemplate(
        {
            "version": "1.0",
            "name": "Answer",
            "template": '{"type":"Card","children":[{"type":"Markdown","id":"md","value":""}]}',
        }
    )
    base = template.build()
    events = await collect(stream_widget(turn, accumulate_text(states("x", "y"), base)))
    updates = [e.update for e in events if isinstance(e, ThreadItemUpdatedEvent)]
    assert [update.type for update in updates] == [
        "widget.streaming_text.value_delta",
        "widget.streaming_text.value_delta",
        "widget.root.updated",
    ]
    assert "".join(getattr(update, "delta", "") for update in updates) == "xy"
    assert base.children[0].__pydantic_extra__ == {"value": ""}  # type: ignore[union-attr]
    assert isinstance(events[-1].item.widget, DynamicWidgetRoot)


@pytest.mark.parametrize(
    ("tree", "component_id", "message"),
    [
        (Card(children=[Text(value="a")]), None, "found 0"),
        (Card(children=[Text(id="a", value="a"), Text(id="b", value="b")]), None, "found 2"),
        (Card(children=[Text(id="a", value="a")]), "zzz", "id 'zzz'"),
        (Card(children=[Title(id="a", value="a")]), "a", "found 0"),
    ],
)
async def test_accumulate_text_needs_one_target(
    tree: Any, component_id: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await collect(accumulate_text(states("x"), tree, component_id=component_id))


async def test_text_deltas_reads_model_streams() -> None:
    events: list[Any] = [
        "plain ",
        "",
        SimpleNamespace(type="response.output_text.delta", delta="responses "),
        SimpleNamespace(type="response.created"),
        SimpleNamespace(
            type="raw_response_event",
            data=SimpleNamespace(type="response.output_text.delta", delta="agents"),
        ),
        SimpleNamespace(type="run_item_stream_event"),
    ]
    assert await collect(text_deltas(states(*events))) == ["plain ", "responses ", "agents"]


# ---------------------------------------------------------------------------
# replace_widget
# ---------------------------------------------------------------------------


def test_replace_widget_keeps_the_item_and_swaps_the_tree() -> None:
    item = WidgetItem(
        id="msg_1", thread_id="thr_1", created_at=T0, widget=card("old"), copy_text="old"
    )
    event = replace_widget(item, card("new"))

    assert isinstance(event, ThreadItemReplacedEvent)
    assert (event.item.id, event.item.created_at, event.item.copy_text) == ("msg_1", T0, "old")
    assert event.item.widget == card("new")
    assert item.widget == card("old")
    assert replace_widget(item, card("new"), copy_text="new").item.copy_text == "new"
    assert_reference_reads(event)


def test_client_tool_call_is_a_pending_item(turn: Turn[Any]) -> None:
    event = turn.client_tool_call("get_location", {"precision": "city"})

    assert isinstance(event, ThreadItemDoneEvent)
    call = event.item
    assert call.type == "client_tool_call"
    assert call.id.startswith("tc_")
    assert (call.status, call.name, call.arguments, call.call_id) == (
        "pending",
        "get_location",
        {"precision": "city"},
        call.id,
    )
    assert turn.client_tool_call("ping", call_id="call_9").item.call_id == "call_9"  # type: ignore[union-attr]
    assert_reference_reads(event)
