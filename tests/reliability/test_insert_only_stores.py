"""Stores written to openai-chatkit's contract, whose `add_thread_item` is a plain INSERT.

The engine adds each item through `add_thread_item` once, and writes it again only
through `save_item`: checkpoints of a streaming answer, the final `thread.item.done`,
the partial answer saved on a cancellation, `thread.item.replaced`, and a workflow
carried over to the next reply. Each scenario runs under real uvicorn over
`InsertOnlyStore` (tests/insert_only_store.py), which raises `IntegrityError` on a
second INSERT of an id, as the reference's own test store does.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent, StopAtTools, function_tool, set_tracing_disabled
from agents.tool_context import ToolContext

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.agents import AgentContext, AgentResponder, ClientToolCall
from chatkit_asgi.store import NotFoundError
from chatkit_asgi.testing import ChatKitTestClient, user_input
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ErrorEvent,
    InferenceOptions,
    SDKHiddenContextItem,
    ThreadItem,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
    WorkflowItem,
)
from tests.agents._script import ScriptedModel, function_call, reasoning, text
from tests.insert_only_store import InsertOnlyStore
from tests.streaming._support import Gate, MessageStream

from .conftest import LiveServer

pytestmark = pytest.mark.uvicorn

ServeApp = Callable[..., LiveServer]
ALICE = {"user_id": "alice"}
INTERVAL = 0.05  # the checkpoint interval of these tests
CANCELLED_NOTE = "The user cancelled the stream. Stop responding to the prior request."


class RecordingStore(InsertOnlyStore):
    """An `InsertOnlyStore` that records every item write, failed ones included."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[tuple[str, str]] = []

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self.writes.append(("add", item.id))
        await super().add_thread_item(thread_id, item, context)

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        self.writes.append(("save", item.id))
        await super().save_item(thread_id, item, context)

    def adds(self) -> Counter[str]:
        """How many times each item id was INSERTed."""
        return Counter(item_id for op, item_id in self.writes if op == "add")

    def saves(self, item_id: str) -> int:
        return sum(1 for op, written in self.writes if (op, written) == ("save", item_id))


@pytest.fixture
def store(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "reference.db")


def app(responder: Any, store: InsertOnlyStore, **options: Any) -> ChatKitApp:
    return ChatKitApp(
        responder,
        store=store,
        context=lambda request: ALICE,
        checkpoint_interval=INTERVAL,
        **options,
    )


async def all_items(store: InsertOnlyStore, thread_id: str) -> list[ThreadItem]:
    """What the store holds, hidden items included, oldest first."""
    return (await store.load_thread_items(thread_id, None, 100, "asc", ALICE)).data


def thread_id_of(events: list[ThreadStreamEvent]) -> str:
    return next(e.thread.id for e in events if e.type == "thread.created")


def stored_text(item: ThreadItem) -> str:
    assert isinstance(item, AssistantMessageItem), item
    return "".join(part.text for part in item.content)


# -- checkpoints, then the end of the answer ---------------------------------------------


async def test_a_reply_longer_than_three_checkpoints_ends_and_is_stored_whole(
    serve_app: ServeApp, store: RecordingStore
) -> None:
    words = [f"word{n} " for n in range(40)]

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        message = MessageStream(turn)
        yield message.added()
        for word in words:
            yield message.delta(word)
            await anyio.sleep(INTERVAL / 4)  # ~10 intervals of streaming in all
        yield message.done()

    server = serve_app(app(respond, store))
    async with ChatKitTestClient(base_url=server.url) as client:
        events = await client.create_thread("Tell me a long story")
    await server.wait_idle()

    assert not [e for e in events if isinstance(e, ErrorEvent)]
    assert events[-1].type == "thread.item.done"
    stored = await all_items(store, thread_id_of(events))
    assert [item.type for item in stored] == ["user_message", "assistant_message"]
    assert stored_text(stored[1]) == "".join(words)
    # Checkpoints did happen (at least three updates in place), and no id was
    # INSERTed twice.
    assert store.saves(stored[1].id) >= 3
    assert set(store.adds().values()) == {1}


async def test_a_cancelled_reply_on_an_insert_only_store_keeps_its_partial_text_once(
    serve_app: ServeApp, store: RecordingStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The client leaves after several checkpoints: the partial answer is updated in
    place, and the cancellation note is added after it."""
    cancelled = Gate()
    yielded = ""

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        nonlocal yielded
        message = MessageStream(turn)
        try:
            yield message.added()
            for n in range(10_000):
                await anyio.sleep(INTERVAL / 5)
                yielded += f"{n} "
                yield message.delta(f"{n} ")
        except (anyio.get_cancelled_exc_class(), GeneratorExit):
            cancelled.set()
            raise

    server = serve_app(app(respond, store, disconnect="cancel"))
    async with ChatKitTestClient(base_url=server.url) as client:
        thread_id = ""
        deltas = 0
        params = {"input": user_input("Count")}
        async with (
            client.open_stream("threads.create", params) as stream,
            aclosing(stream) as events,  # type: ignore[type-var]
        ):
            async for event in events:
                if event.type == "thread.created":
                    thread_id = event.thread.id
                if isinstance(event, ThreadItemUpdatedEvent):
                    deltas += 1
                    if deltas == 30:  # ~6 checkpoint intervals: the client leaves
                        break
        with anyio.fail_after(5):
            await cancelled.wait()
        await server.wait_idle()

    stored = await all_items(store, thread_id)
    assert [item.type for item in stored] == [
        "user_message",
        "assistant_message",
        "sdk_hidden_context",
    ]
    assert stored_text(stored[1]) == yielded
    assert isinstance(stored[2], SDKHiddenContextItem)
    assert stored[2].content == CANCELLED_NOTE
    assert store.saves(stored[1].id) >= 1  # it was checkpointed before the cancellation
    assert set(store.adds().values()) == {1}
    # Nothing failed on the way (the server's thread logs through the same handlers).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- other ways an item is written again -------------------------------------------------


async def test_an_item_finished_by_replaced_is_stored(
    serve_app: ServeApp, store: RecordingStore
) -> None:
    """`thread.item.replaced` is an upsert: an item streamed in this reply and ended
    by a replace is added once, checkpointed or not."""

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        for name, wait in (("quick", 0.0), ("slow", INTERVAL * 3)):  # slow: checkpointed
            message = MessageStream(turn)
            yield message.added()
            yield message.delta(f"Draft {name}")
            await anyio.sleep(wait)
            final = message.item.model_copy(
                update={"content": [AssistantMessageContent(text=f"Final {name}")]}
            )
            yield ThreadItemReplacedEvent(item=final)

    server = serve_app(app(respond, store))
    async with ChatKitTestClient(base_url=server.url) as client:
        events = await client.create_thread("Hi")
    await server.wait_idle()

    assert not [e for e in events if isinstance(e, ErrorEvent)]
    stored = await all_items(store, thread_id_of(events))
    assert [stored_text(item) for item in stored[1:]] == ["Final quick", "Final slow"]
    assert set(store.adds().values()) == {1}


@function_tool
async def pick_color(ctx: ToolContext[AgentContext[Any]], palette: str) -> str:
    """Ask the user to pick a color on the page."""
    ctx.context.client_tool_call = ClientToolCall(
        name="pick_color", arguments={"palette": palette}, call_id=ctx.tool_call_id
    )
    return "The page asks the user."


async def test_a_workflow_continued_by_the_next_reply_is_updated_not_inserted_again(
    serve_app: ServeApp,
    store: RecordingStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Agents bridge stores a workflow left open for a client tool call; the
    next reply continues it and ends it with `thread.item.done`."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy-not-a-real-key")
    set_tracing_disabled(True)
    model = ScriptedModel(
        [
            [
                reasoning("The user wants a color"),
                function_call("pick_color", '{"palette": "warm"}', call_id="call_pick"),
            ],
            [reasoning("Got the color"), text("Orange it is.")],
        ]
    )
    agent = Agent(
        name="Painter",
        model=model,
        tools=[pick_color],
        tool_use_behavior=StopAtTools(stop_at_tool_names=["pick_color"]),
    )

    server = serve_app(app(AgentResponder(agent), store))
    async with ChatKitTestClient(base_url=server.url) as client:
        first = await client.create_thread("Pick a color for me")
        thread_id = thread_id_of(first)
        second = await client.stream(
            "threads.add_client_tool_output", thread_id=thread_id, result={"color": "#f80"}
        )
    await server.wait_idle()

    assert not [e for e in first + second if isinstance(e, ErrorEvent)]
    assert second[-1].type == "thread.item.done"
    stored = await all_items(store, thread_id)
    assert [item.type for item in stored] == [
        "user_message",
        "workflow",
        "client_tool_call",
        "assistant_message",
    ]
    workflow = stored[1]
    assert isinstance(workflow, WorkflowItem)
    assert len(workflow.workflow.tasks) == 2
    assert workflow.workflow.summary is not None  # the end of the workflow was saved
    assert set(store.adds().values()) == {1}


# -- the store itself ----------------------------------------------------------------------


def _message(item_id: str, text: str, at: datetime) -> UserMessageItem:
    return UserMessageItem(
        id=item_id,
        thread_id="thr_1",
        created_at=at,
        content=[UserMessageTextContent(text=text)],
        attachments=[],
        inference_options=InferenceOptions(),
    )


async def test_the_insert_only_store_keeps_the_reference_contract() -> None:
    store = InsertOnlyStore()
    try:
        now = datetime.now()
        await store.save_thread(ThreadMetadata(id="thr_1", created_at=now), ALICE)
        for n in range(3):
            await store.add_thread_item("thr_1", _message(f"m{n}", str(n), now), ALICE)

        # A second INSERT of an id fails, as a primary key does.
        with pytest.raises(sqlite3.IntegrityError):
            await store.add_thread_item("thr_1", _message("m1", "again", now), ALICE)
        # `save_item` updates in place, and adds nothing for an unknown id.
        await store.save_item("thr_1", _message("m1", "changed", now), ALICE)
        await store.save_item("thr_1", _message("m9", "never added", now), ALICE)
        page = await store.load_thread_items("thr_1", None, 10, "asc", ALICE)
        assert [(i.id, i.content[0].text) for i in page.data] == [  # type: ignore[union-attr]
            ("m0", "0"),
            ("m1", "changed"),
            ("m2", "2"),
        ]
        # Paging past an id, both ways (equal timestamps: insertion order).
        page = await store.load_thread_items("thr_1", "m0", 1, "asc", ALICE)
        assert ([i.id for i in page.data], page.has_more, page.after) == (["m1"], True, "m1")
        page = await store.load_thread_items("thr_1", "m2", 5, "desc", ALICE)
        assert ([i.id for i in page.data], page.has_more, page.after) == (["m1", "m0"], False, None)

        # Other users see nothing; missing things are NotFoundError.
        bob = {"user_id": "bob"}
        assert (await store.load_thread_items("thr_1", None, 10, "asc", bob)).data == []
        assert (await store.load_threads(10, None, "asc", bob)).data == []
        for missing in (
            store.load_thread("thr_1", bob),
            store.load_item("thr_1", "m0", bob),
            store.load_item("thr_1", "m9", ALICE),
            store.load_attachment("atc_1", ALICE),
            store.load_thread_items("thr_1", "m9", 10, "asc", ALICE),
            store.delete_thread("thr_1", bob),
        ):
            with pytest.raises(NotFoundError):
                await missing
        await store.delete_thread("thr_1", ALICE)
        assert (await store.load_thread_items("thr_1", None, 10, "asc", ALICE)).data == []
    finally:
        store.close()
