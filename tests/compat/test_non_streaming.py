"""Non-streaming requests: the reference and ours answer the same JSON."""

from __future__ import annotations

import base64

import pytest

from ._pair import Pair, assistant_reply
from ._steps import WIDGET, assistant, done, item, widget

pytestmark = pytest.mark.filterwarnings(
    "ignore:Direct usage of named widget classes:DeprecationWarning"
)


async def _long_thread(pair: Pair, replies: int = 25) -> None:
    """A thread with a user message and `replies` assistant messages (no hidden items)."""
    pair.script([done(assistant(f"a{n}", f"reply {n}")) for n in range(replies)])
    await pair.create_thread("Tell me a long story")


async def test_get_by_id_answers_the_oldest_twenty_items(any_pair: Pair) -> None:
    await _long_thread(any_pair)

    both = await any_pair.check("threads.get_by_id", thread_id="$id:thread")

    items = both.ours.body["items"]
    assert len(items["data"]) == 20
    assert items["has_more"] is True
    assert items["after"] == items["data"][-1]["id"]
    any_pair.remember("page_end", lambda out: out.body["items"]["after"], both)
    rest = await any_pair.check(
        "items.list", thread_id="$id:thread", order="asc", after="$id:page_end"
    )
    assert len(rest.ours.body["data"]) == 6
    assert rest.ours.body["has_more"] is False


async def test_get_by_id_of_a_short_thread(pair: Pair) -> None:
    pair.script(assistant_reply("a1", "hi"))
    await pair.create_thread("hello")

    both = await pair.check("threads.get_by_id", thread_id="$id:thread")

    items = both.ours.body["items"]
    assert len(items["data"]) == 2
    assert items["has_more"] is False
    assert "after" not in items  # the last page has no cursor


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"order": "asc"},
        {"order": "desc"},
        {"limit": 3},
        {"limit": 3, "order": "asc"},
        {"limit": 0},
        {"limit": 100},
        {"limit": 4, "after": "$id:a3"},
        {"limit": 4, "after": "$id:a3", "order": "asc"},
        {"after": "$id:a9"},
    ],
    ids=str,
)
async def test_items_list(any_pair: Pair, params: dict[str, object]) -> None:
    await _long_thread(any_pair, replies=10)

    await any_pair.check("items.list", thread_id="$id:thread", **params)


async def test_items_list_walks_every_page(pair: Pair) -> None:
    await _long_thread(pair, replies=7)
    seen = 0
    params: dict[str, object] = {"limit": 3, "order": "asc"}
    while True:
        page = await pair.check("items.list", thread_id="$id:thread", **params)
        seen += len(page.ours.body["data"])
        if not page.ours.body["has_more"]:
            break
        pair.remember("cursor", lambda out: out.body["after"], page)
        params["after"] = "$id:cursor"
    assert seen == 8


async def _three_threads(pair: Pair) -> None:
    for name in ("t1", "t2", "t3"):
        pair.script(assistant_reply(f"{name}-reply", f"hi from {name}"))
        await pair.create_thread(f"thread {name}", name=name)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"order": "desc"},
        {"order": "asc"},
        {"limit": 2},
        {"limit": 2, "order": "asc"},
        {"limit": 1, "after": "$id:t3"},
        {"after": "$id:t1", "order": "asc"},
        {"after": "$id:t1"},
        {"limit": 0},
    ],
    ids=str,
)
async def test_threads_list(any_pair: Pair, params: dict[str, object]) -> None:
    await _three_threads(any_pair)

    await any_pair.check("threads.list", **params)


async def test_threads_list_follows_after(pair: Pair) -> None:
    await _three_threads(pair)

    first = await pair.check("threads.list", limit=2)
    assert first.ours.body["has_more"] is True
    pair.remember("cursor", lambda out: out.body["after"], first)
    second = await pair.check("threads.list", limit=2, after="$id:cursor")

    assert second.ours.body["has_more"] is False
    titles = [t.get("title") for t in first.ours.body["data"] + second.ours.body["data"]]
    assert titles == [None, None, None]
    assert len({t["id"] for t in first.ours.body["data"] + second.ours.body["data"]}) == 3


async def test_threads_update(any_pair: Pair) -> None:
    await _three_threads(any_pair)

    both = await any_pair.check("threads.update", thread_id="$id:t2", title="Renamed")

    assert both.ours.body["title"] == "Renamed"
    assert both.ours.body["items"] == {"data": [], "has_more": False}
    await any_pair.check("threads.get_by_id", thread_id="$id:t2")
    await any_pair.check("threads.list")


async def test_threads_delete(any_pair: Pair) -> None:
    await _three_threads(any_pair)

    both = await any_pair.check("threads.delete", thread_id="$id:t2")

    assert both.ours.body == {}
    assert both.ours.raw == both.ref.raw == b"{}"
    listing = await any_pair.check("threads.list")
    assert len(listing.ours.body["data"]) == 2


async def test_items_feedback(pair: Pair) -> None:
    pair.script([done(assistant("a1", "one")), done(assistant("a2", "two"))])
    await pair.create_thread("hi")

    both = await pair.check(
        "items.feedback", thread_id="$id:thread", item_ids=["$id:a1", "$id:a2"], kind="negative"
    )

    assert both.ours.raw == both.ref.raw == b"{}"
    assert [call[0] for call in both.ours.calls] == ["feedback"]
    assert both.ours.calls[0][2:] == (
        [pair.id(pair.ours, "a1"), pair.id(pair.ours, "a2")],
        "negative",
    )


@pytest.mark.parametrize(
    ("name", "mime_type"), [("notes.txt", "text/plain"), ("cat.png", "image/png")]
)
async def test_attachments_create(any_pair: Pair, name: str, mime_type: str) -> None:
    """The two-phase upload descriptor is shown; the integration metadata never is."""
    both = await any_pair.check("attachments.create", name=name, size=99, mime_type=mime_type)

    body = both.ours.body
    assert "metadata" not in body and b"metadata" not in both.ours.raw
    assert body["upload_descriptor"]["method"] == "PUT"
    assert body["upload_descriptor"]["headers"] == {"x-upload-token": "secret"}
    assert ("preview_url" in body) == (mime_type == "image/png")
    stored = await any_pair.ours.stored_attachment(body["id"])
    assert stored is not None and stored["metadata"] == {"bucket": "private", "size": 99}


async def test_attachments_delete(any_pair: Pair) -> None:
    created = await any_pair.check(
        "attachments.create", name="notes.txt", size=5, mime_type="text/plain"
    )
    any_pair.remember("file", lambda out: out.body["id"], created)

    both = await any_pair.check("attachments.delete", attachment_id="$id:file")

    assert both.ours.raw == both.ref.raw == b"{}"
    assert [call[0] for call in both.ours.calls] == ["delete_attachment_bytes"]
    assert await any_pair.ours.stored_attachment(any_pair.id(any_pair.ours, "file")) is None
    assert await any_pair.ref.stored_attachment(any_pair.id(any_pair.ref, "file")) is None


async def test_input_transcribe(pair: Pair) -> None:
    audio = base64.b64encode(b"spoken words").decode()

    both = await pair.check(
        "input.transcribe", audio_base64=audio, mime_type="audio/webm;codecs=opus"
    )

    assert both.ours.body == {"text": "heard 12 bytes: spoken words"}
    assert both.ours.calls == [("transcribe", b"spoken words", "audio/webm;codecs=opus")]


ACTION = {"type": "toggle", "payload": {"on": True}}


async def _thread_with_widget(pair: Pair) -> None:
    pair.script([done(widget("card")), done(assistant("a1", "toggle it"))])
    await pair.create_thread("Show me a switch")


async def test_sync_custom_action_from_a_widget(any_pair: Pair) -> None:
    await _thread_with_widget(any_pair)
    new_widget = {**WIDGET, "children": [{"type": "Text", "id": "greeting", "value": "On"}]}
    any_pair.sync_answer({"updated_item": item("widget", "card", widget=new_widget)})

    both = await any_pair.check(
        "threads.sync_custom_action", thread_id="$id:thread", item_id="$id:card", action=ACTION
    )

    assert both.ours.body["updated_item"]["widget"]["children"][0]["value"] == "On"
    assert both.ours.calls[0][0] == "sync_action"


async def test_sync_custom_action_without_a_sender(pair: Pair) -> None:
    await _thread_with_widget(pair)

    both = await pair.check("threads.sync_custom_action", thread_id="$id:thread", action=ACTION)

    assert both.ours.raw == both.ref.raw == b"{}"
    assert both.ours.calls[0][3] is None  # no sender


async def test_sync_custom_action_persists_the_updated_item_in_ours(any_pair: Pair) -> None:
    """Ours also saves `updated_item` so a reload shows what the user saw; the reference
    only returns it (a reload shows the old widget)."""
    await _thread_with_widget(any_pair)
    new_widget = {**WIDGET, "children": [{"type": "Text", "id": "greeting", "value": "On"}]}
    any_pair.sync_answer({"updated_item": item("widget", "card", widget=new_widget)})
    await any_pair.check(
        "threads.sync_custom_action", thread_id="$id:thread", item_id="$id:card", action=ACTION
    )

    both = await any_pair.request("threads.get_by_id", thread_id="$id:thread")

    def card_text(body: dict[str, object]) -> object:
        items = body["items"]["data"]  # type: ignore[index]
        return next(i for i in items if i["type"] == "widget")["widget"]["children"][0]["value"]

    assert card_text(both.ours.body) == "On"
    assert card_text(both.ref.body) == "Hello"
