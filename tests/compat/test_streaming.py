"""Streaming requests: the reference and ours answer the same events, byte for byte in shape.

Every test scripts one responder behaviour, sends the same requests to
openai-chatkit's `ChatKitServer` and to our `ChatKitApp`, and compares the SSE
frames after mapping generated ids and timestamps to placeholders.
"""

from __future__ import annotations

from typing import Any

import pytest

from ._pair import Pair, assistant_reply
from ._steps import (
    WIDGET,
    added,
    assistant,
    client_effect,
    client_tool_call,
    done,
    hidden,
    item,
    notice,
    progress,
    raise_,
    removed,
    replaced,
    sdk_hidden,
    streamed_assistant_message,
    structured_input,
    text,
    title,
    update,
    user_input,
    widget,
    workflow_steps,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Direct usage of named widget classes:DeprecationWarning"
)


async def test_create_thread_streams_an_assistant_message(any_pair: Pair) -> None:
    any_pair.script(streamed_assistant_message("answer"))

    both = await any_pair.create_thread("Hello")

    assert both.ours.types() == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.added",
        *["thread.item.updated"] * 6,
        "thread.item.done",
    ]
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    await any_pair.assert_same_store()


_FILE_SOURCE = {"type": "file", "title": "Notes", "filename": "notes.txt", "group": "files"}


async def test_widget_workflow_and_pending_client_tool_call(any_pair: Pair) -> None:
    any_pair.script(
        [
            done(widget("card")),
            *workflow_steps("flow"),
            added(item("generated_image", "img")),
            update(
                "img",
                {
                    "type": "generated_image.updated",
                    "image": {"id": "img_1", "url": "https://example.com/partial.png"},
                    "progress": 0.5,
                },
            ),
            done(
                item(
                    "generated_image",
                    "img",
                    image={"id": "img_1", "url": "https://example.com/final.png"},
                )
            ),
            done(
                item(
                    "task",
                    "task",
                    "task",
                    task={"type": "file", "title": "Read", "sources": [_FILE_SOURCE]},
                )
            ),
            done(item("end_of_turn", "eot")),
            done(client_tool_call("tool")),
        ]
    )

    both = await any_pair.create_thread("Where am I?")

    assert both.ours.events[-1]["item"]["status"] == "pending"
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    await any_pair.assert_same_store()


async def test_add_user_message(any_pair: Pair) -> None:
    any_pair.script(assistant_reply("a1", "first"), assistant_reply("a2", "second"))
    await any_pair.create_thread("one")

    both = await any_pair.add_message("two")

    assert both.ours.types() == ["thread.item.done", "stream_options", "thread.item.done"]
    await any_pair.assert_same_store()


async def test_user_message_with_quoted_text_inference_options_and_tags(pair: Pair) -> None:
    pair.script(assistant_reply("a1", "ok"))
    message = user_input(
        "Tell me about",
        quoted_text="an earlier sentence",
        inference_options={"model": "gpt-test", "tool_choice": {"id": "search"}},
    )
    message["content"].append(
        {
            "type": "input_tag",
            "id": "tag_1",
            "text": "@Ada",
            "data": {"user": 7},
            "group": "people",
            "interactive": True,
        }
    )

    both = await pair.check("threads.create", input=message)

    user_item = both.ours.events[1]["item"]
    assert user_item["quoted_text"] == "an earlier sentence"
    assert user_item["inference_options"] == {"model": "gpt-test", "tool_choice": {"id": "search"}}
    assert user_item["content"][1]["type"] == "input_tag"


async def test_user_message_with_attachments(any_pair: Pair) -> None:
    """Attachments are loaded, given the thread id, saved again, and shown without metadata."""
    file = await any_pair.check(
        "attachments.create", name="notes.txt", size=12, mime_type="text/plain"
    )
    image = await any_pair.check(
        "attachments.create", name="cat.png", size=2048, mime_type="image/png"
    )
    any_pair.remember("file", lambda out: out.body["id"], file)
    any_pair.remember("image", lambda out: out.body["id"], image)
    any_pair.script(assistant_reply("a1", "nice cat"))

    both = await any_pair.check(
        "threads.create", input=user_input("look", attachments=["$id:file", "$id:image"])
    )
    any_pair.remember("thread", lambda out: out.events[0]["thread"]["id"], both)

    attachments = both.ours.events[1]["item"]["attachments"]
    assert [a["type"] for a in attachments] == ["file", "image"]
    assert all("metadata" not in a for a in attachments)
    assert all(a["thread_id"] == both.ours.events[0]["thread"]["id"] for a in attachments)
    for name in ("file", "image"):
        ref_stored = await any_pair.ref.stored_attachment(any_pair.id(any_pair.ref, name))
        our_stored = await any_pair.ours.stored_attachment(any_pair.id(any_pair.ours, name))
        assert ref_stored is not None and our_stored is not None
        assert our_stored["metadata"] == {
            "bucket": "private",
            "size": 12 if name == "file" else 2048,
        }
        assert any_pair.normalized(any_pair.ours, our_stored) == any_pair.normalized(
            any_pair.ref, ref_stored
        )
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")


async def test_hidden_context_items_are_stored_but_never_shown(any_pair: Pair) -> None:
    any_pair.script(
        [
            done(hidden("memo")),
            done(sdk_hidden("note")),
            done(assistant("a1", "visible")),
        ]
    )

    both = await any_pair.create_thread("hi")

    assert both.ours.types() == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    thread = await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    listing = await any_pair.check("items.list", thread_id="$id:thread")
    shown = [i["type"] for i in thread.ours.body["items"]["data"]]
    assert shown == ["user_message", "assistant_message"]
    assert [i["type"] for i in listing.ours.body["data"]] == ["assistant_message", "user_message"]
    await any_pair.assert_same_store()
    stored = await any_pair.ours.stored_items(any_pair.id(any_pair.ours, "thread"))
    assert [i["type"] for i in stored] == [
        "user_message",
        "hidden_context_item",
        "sdk_hidden_context",
        "assistant_message",
    ]


async def test_title_change_becomes_thread_updated(any_pair: Pair) -> None:
    any_pair.script(
        [
            title("Weather"),
            progress("Looking outside", icon="globe"),
            done(assistant("a1", "Sunny")),
            title("Weather today"),
        ]
    )

    both = await any_pair.create_thread("Weather?")

    assert both.ours.types() == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "progress_update",
        "thread.updated",
        "thread.item.done",
        "thread.updated",
    ]
    assert both.ours.events[-1]["thread"]["title"] == "Weather today"
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    await any_pair.check("threads.list")


async def test_title_change_seen_with_a_hidden_item(pair: Pair) -> None:
    """A swallowed hidden item still reports the title change it carried."""
    pair.script([title("Secret"), done(hidden("memo")), done(assistant("a1", "ok"))])

    both = await pair.create_thread("hi")

    assert both.ours.types()[-2:] == ["thread.updated", "thread.item.done"]


async def test_item_removed_and_replaced(any_pair: Pair) -> None:
    any_pair.script(
        [
            done(assistant("draft", "draft")),
            done(assistant("keep", "first version")),
            removed("draft"),
            replaced(assistant("keep", "second version")),
        ]
    )

    await any_pair.create_thread("hi")

    thread = await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    texts = [i["content"][0]["text"] for i in thread.ours.body["items"]["data"][1:]]
    assert texts == ["second version"]
    await any_pair.assert_same_store()


async def test_progress_notice_and_client_effect_events(pair: Pair) -> None:
    pair.script(
        [
            progress("Searching"),
            progress("Reading", icon="book-open"),
            notice("info", "FYI"),
            notice("warning", "Careful, **markdown**", title_="Heads up"),
            client_effect("confetti"),
            client_effect("navigate", {"to": "/settings", "replace": True}),
            done(assistant("a1", "done")),
        ]
    )

    both = await pair.create_thread("go")

    assert both.ours.types()[3:] == [
        "progress_update",
        "progress_update",
        "notice",
        "notice",
        "client_effect",
        "client_effect",
        "thread.item.done",
    ]


@pytest.mark.parametrize(
    "error",
    [
        raise_("stream"),
        raise_("stream", allow_retry=False),
        raise_("custom", message="Quota exceeded"),
        raise_("custom", message="Try again later", allow_retry=True),
        raise_("plain", message="the model crashed"),
    ],
    ids=["stream-error", "stream-error-no-retry", "custom", "custom-retry", "plain-exception"],
)
async def test_errors_raised_mid_stream(any_pair: Pair, error: dict[str, Any]) -> None:
    name = "partial"
    any_pair.script(
        [
            added(item("assistant_message", name, content=[])),
            update(
                name,
                {
                    "type": "assistant_message.content_part.added",
                    "content_index": 0,
                    "content": text("Half an ans"),
                },
            ),
            title("Interrupted"),
            error,
        ]
    )

    both = await any_pair.create_thread("hi")

    assert both.ours.types()[-2:] == ["error", "thread.updated"]
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    await any_pair.assert_same_store()


async def test_error_events_on_the_wire(pair: Pair) -> None:
    pair.script(
        [raise_("stream")],
        [raise_("stream", allow_retry=False)],
        [raise_("custom", message="Quota exceeded")],
        [raise_("plain")],
    )

    answers = [
        await pair.create_thread("one"),
        await pair.add_message("two"),
        await pair.add_message("three"),
        await pair.add_message("four"),
    ]

    assert [both.ours.events[-1] for both in answers] == [
        {"type": "error", "code": "stream.error", "allow_retry": True},
        {"type": "error", "code": "stream.error", "allow_retry": False},
        {"type": "error", "code": "custom", "message": "Quota exceeded", "allow_retry": False},
        {"type": "error", "code": "stream.error", "allow_retry": True},
    ]


async def test_stream_options_allow_cancel_false(any_pair: Pair) -> None:
    any_pair.allow_cancel(False)
    any_pair.script(assistant_reply("a1", "uninterruptible"))

    both = await any_pair.create_thread("hi")

    assert both.ours.events[2] == {
        "type": "stream_options",
        "stream_options": {"allow_cancel": False},
    }


async def test_add_client_tool_output(any_pair: Pair) -> None:
    """The newest pending call is completed; older pending calls are dropped."""
    any_pair.script(
        [done(client_tool_call("old", "call_old")), done(client_tool_call("tool", "call_1"))],
        assistant_reply("a1", "You are in Paris"),
    )
    await any_pair.create_thread("Where am I?")

    both = await any_pair.check(
        "threads.add_client_tool_output", thread_id="$id:thread", result={"city": "Paris"}
    )

    assert both.ours.types() == ["stream_options", "thread.item.done"]
    listing = await any_pair.check("items.list", thread_id="$id:thread", order="asc")
    tool_calls = [i for i in listing.ours.body["data"] if i["type"] == "client_tool_call"]
    assert [(c["call_id"], c["status"], c["output"]) for c in tool_calls] == [
        ("call_1", "completed", {"city": "Paris"})
    ]
    await any_pair.assert_same_store()


async def _thread_with_structured_input(pair: Pair) -> None:
    pair.script([done(structured_input("form"))])
    await pair.create_thread("Order a pizza")


async def test_add_structured_input_answers(any_pair: Pair) -> None:
    """Unknown ids are ignored, single choice keeps one value, empty answers are skipped."""
    await _thread_with_structured_input(any_pair)
    any_pair.script(assistant_reply("a1", "Ordered"))

    both = await any_pair.check(
        "threads.add_structured_input",
        thread_id="$id:thread",
        item_id="$id:form",
        input={
            "status": "answered",
            "answers": {
                "color": {"values": ["red", "blue"]},
                "toppings": {"values": ["ham", "basil"]},
                "name": {"values": []},
                "unknown": {"values": ["x"]},
            },
        },
    )

    assert both.ours.types() == ["stream_options", "thread.item.replaced", "thread.item.done"]
    answered = both.ours.events[1]["item"]
    assert answered["status"] == "answered"
    assert [q.get("answer") for q in answered["inputs"]] == [
        {"values": ["red"], "skipped": False},
        {"values": ["ham", "basil"], "skipped": False},
        {"values": [], "skipped": True},
        {"values": [], "skipped": True},
    ]
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    await any_pair.assert_same_store()


async def test_add_structured_input_skipped(pair: Pair) -> None:
    await _thread_with_structured_input(pair)
    pair.script(assistant_reply("a1", "Maybe later"))

    both = await pair.check(
        "threads.add_structured_input",
        thread_id="$id:thread",
        item_id="$id:form",
        input={"status": "skipped", "answers": {"color": {"values": ["red"]}}},
    )

    answered = both.ours.events[1]["item"]
    assert answered["status"] == "skipped"
    assert all(q["answer"] == {"values": [], "skipped": True} for q in answered["inputs"])


async def test_retry_after_item(any_pair: Pair) -> None:
    any_pair.script(
        assistant_reply("a1", "first answer"),
        assistant_reply("a2", "second answer"),
        assistant_reply("a3", "first answer, again"),
    )
    created = await any_pair.create_thread("first question")
    any_pair.remember("u1", lambda out: out.events[1]["item"]["id"], created)
    await any_pair.add_message("second question")

    both = await any_pair.check(
        "threads.retry_after_item", thread_id="$id:thread", item_id="$id:u1"
    )

    assert both.ours.types() == ["stream_options", "thread.item.done"]
    listing = await any_pair.check("items.list", thread_id="$id:thread", order="asc")
    assert [i["type"] for i in listing.ours.body["data"]] == ["user_message", "assistant_message"]
    await any_pair.assert_same_store()


async def _thread_with_widget(pair: Pair) -> None:
    pair.script([done(widget("card")), done(assistant("a1", "pick one"))])
    await pair.create_thread("Show me a card")


ACTION = {"type": "go", "payload": {"n": 1}}


async def test_custom_action_from_a_widget(any_pair: Pair) -> None:
    await _thread_with_widget(any_pair)
    any_pair.script(
        [
            update("card", {"type": "widget.root.updated", "widget": {**WIDGET, "size": "lg"}}),
            update(
                "card",
                {
                    "type": "widget.streaming_text.value_delta",
                    "component_id": "greeting",
                    "delta": " world",
                    "done": True,
                },
            ),
            done(assistant("a2", "Went")),
        ]
    )

    both = await any_pair.check(
        "threads.custom_action", thread_id="$id:thread", item_id="$id:card", action=ACTION
    )

    assert both.ours.types() == [
        "stream_options",
        "thread.item.updated",
        "thread.item.updated",
        "thread.item.done",
    ]
    assert both.ours.calls[1][0] == "action"


async def test_custom_action_without_a_sender(pair: Pair) -> None:
    await _thread_with_widget(pair)
    pair.script([client_effect("toast", {"text": "done"})])

    both = await pair.check("threads.custom_action", thread_id="$id:thread", action=ACTION)

    assert both.ours.types() == ["stream_options", "client_effect"]


async def test_custom_action_from_a_non_widget_is_an_error_event(pair: Pair) -> None:
    await _thread_with_widget(pair)

    both = await pair.check(
        "threads.custom_action", thread_id="$id:thread", item_id="$id:a1", action=ACTION
    )

    assert both.ours.events == [{"type": "error", "code": "stream.error", "allow_retry": False}]
    assert both.ours.calls == []


def thread_change(**fields: Any) -> dict[str, Any]:
    return {"$thread": fields}


async def test_responder_locks_the_thread(any_pair: Pair) -> None:
    any_pair.script(
        [
            done(assistant("a1", "That is all for today")),
            thread_change(status={"type": "locked", "reason": "Out of credits"}),
        ]
    )

    both = await any_pair.create_thread("hi")

    assert both.ours.events[-1]["type"] == "thread.updated"
    assert both.ours.events[-1]["thread"]["status"] == {
        "type": "locked",
        "reason": "Out of credits",
    }
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")
    await any_pair.check("threads.list")


async def test_responder_changes_thread_metadata_and_image_domains(any_pair: Pair) -> None:
    """A metadata-only change is still a change: `thread.updated`, metadata not shown."""
    any_pair.script(
        [
            thread_change(metadata={"previous_response_id": "resp_1"}),
            done(assistant("a1", "ok")),
            thread_change(allowed_image_domains=["images.example.com"]),
        ]
    )

    both = await any_pair.create_thread("hi")

    assert both.ours.types()[-3:] == ["thread.item.done", "thread.updated", "thread.updated"]
    assert both.ours.events[-2]["thread"]["metadata"] == {}
    assert both.ours.events[-1]["thread"]["allowed_image_domains"] == ["images.example.com"]
    await any_pair.check("threads.get_by_id", thread_id="$id:thread")


async def test_non_ascii_text_is_written_the_same_way(pair: Pair) -> None:
    value = 'héllo ✓ 🎉 "quoted" \\ back\nslash </script> \u2028 tab\t'
    pair.script(assistant_reply("a1", value), [done(assistant("a2", value)), title(value)])

    both = await pair.create_thread(value)
    await pair.add_message(value)

    assert both.ours.events[-1]["item"]["content"][0]["text"] == value
    await pair.check("threads.get_by_id", thread_id="$id:thread")
    await pair.check("threads.list")
