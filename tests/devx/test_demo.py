"""The demo assistant (what `chatkit-asgi demo` serves), through the protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from chatkit_asgi import ChatKitApp
from chatkit_asgi._demo import REPLACE_ACTION, DemoAssistant
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    WidgetItem,
)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ChatKitTestClient]:
    app = ChatKitApp(
        DemoAssistant(word_delay=0, slow_word_delay=0),
        store=MemoryStore(),
        attachment_store=FileSystemAttachmentStore(tmp_path / "files"),
    )
    async with ChatKitTestClient(app) as client:
        yield client
    await app.aclose()


def answer(events: list[object]) -> str:
    done = [e for e in events if isinstance(e, ThreadItemDoneEvent)]
    item = done[-1].item
    assert isinstance(item, AssistantMessageItem)
    return item.content[0].text


async def test_echoes_word_by_word_and_titles_the_thread(client: ChatKitTestClient) -> None:
    events = await client.create_thread("hello there")
    assert answer(events) == "Echo: hello there"
    deltas = [e for e in events if isinstance(e, ThreadItemUpdatedEvent)]
    assert [d.update.delta for d in deltas] == ["Echo:", " hello", " there"]  # type: ignore[union-attr]
    threads = await client.list_threads()
    assert threads.data[0].title == "hello there"


async def test_widget_button_replaces_the_card(client: ChatKitTestClient) -> None:
    events = await client.create_thread("widget")
    widgets = [e.item for e in events if isinstance(e, ThreadItemDoneEvent)]
    widget = widgets[-1]
    assert isinstance(widget, WidgetItem)
    tree = widget.widget.model_dump(exclude_none=True)
    button = tree["children"][-1]
    assert button["onClickAction"]["type"] == REPLACE_ACTION

    thread_id = widget.thread_id
    events = await client.stream(
        "threads.custom_action",
        thread_id=thread_id,
        item_id=widget.id,
        action={"type": REPLACE_ACTION, "payload": button["onClickAction"]["payload"]},
    )
    replaced = [e for e in events if isinstance(e, ThreadItemReplacedEvent)]
    assert len(replaced) == 1 and replaced[0].item.id == widget.id
    assert answer(events) == "Button clicked (1)"
    stored = await client.get_thread(thread_id)
    cards = [item for item in stored.items.data if isinstance(item, WidgetItem)]
    assert cards[0].widget.model_dump(exclude_none=True)["children"][1]["value"] == (
        "Clicked 1 time(s)"
    )


async def test_slow_streams_a_long_answer(client: ChatKitTestClient) -> None:
    events = await client.create_thread("slow")
    assert answer(events).startswith("Slow: word1 word2")
    assert sum(isinstance(e, ThreadItemUpdatedEvent) for e in events) > 100
    assert any(isinstance(e, ThreadItemAddedEvent) for e in events)


async def test_lists_attachments_with_their_sizes(
    client: ChatKitTestClient, tmp_path: Path
) -> None:
    upload = await client.http.post(
        "/upload", files={"file": ("notes.txt", b"0123456789", "text/plain")}
    )
    assert upload.status_code == 200, upload.text
    attachment_id = upload.json()["id"]
    events = await client.create_thread("see", attachments=[attachment_id])
    assert answer(events) == "Echo: see | attachments: notes.txt (10 bytes)"


async def test_unknown_actions_are_answered_not_failed(client: ChatKitTestClient) -> None:
    events = await client.create_thread("hi")
    thread_id = events[0].thread.id  # type: ignore[union-attr]
    events = await client.stream(
        "threads.custom_action", thread_id=thread_id, action={"type": "other"}
    )
    assert answer(events) == "Unknown action other"


async def test_served_over_http_by_the_demo_app(tmp_path: Path) -> None:
    from chatkit_asgi.cli import ServeConfig, build_app

    app = build_app(
        ServeConfig(
            target="chatkit_asgi._demo:DemoAssistant",
            store="memory://",
            attachments=f"file://{tmp_path}/files",
            playground=True,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        root = await http.get("/")
        page = await http.get("/chatkit/")
    assert root.status_code == 307 and root.headers["location"] == "/chatkit/"
    assert page.status_code == 200
