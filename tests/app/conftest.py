"""Fixtures of the ASGI-layer tests: a seeded multi-tenant store and apps over it.

Alice owns a thread with one item of nearly every kind and an attachment; Bob owns
a thread of his own. The user is whoever the `x-user` header names.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Store, Turn
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    AudioInput,
    Card,
    ClientToolCallItem,
    FileAttachment,
    HiddenContextItem,
    InferenceOptions,
    StructuredInputAnswer,
    StructuredInputFreeform,
    StructuredInputItem,
    SyncCustomActionResponse,
    Text,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from tests._postgres_server import schema_store

ALICE = {"user": "alice"}
BOB = {"user": "bob"}

ALICE_THREAD = "thr_alice0001"
ALICE_SECOND_THREAD = "thr_alice0002"
BOB_THREAD = "thr_bob000001"
ALICE_ATTACHMENT = "atc_alice0001"


class ItemIds:
    """Ids of the items seeded into Alice's first thread, oldest first."""

    USER_MESSAGE = "msg_alice_user"
    TOOL_CALL_DONE = "tc_alice_done"
    WIDGET = "msg_alice_widget"
    STRUCTURED_ANSWERED = "msg_alice_si_answered"
    STRUCTURED_PENDING = "msg_alice_si_pending"
    ASSISTANT = "msg_alice_assistant"
    HIDDEN = "msg_alice_hidden"
    BOB_MESSAGE = "msg_bob_user"


def user_context(request: Request) -> dict[str, str]:
    """The context factory of these tests: the user named by `x-user`."""
    return {"user": request.headers.get("x-user", "anonymous")}


def tenant_of(context: dict[str, str]) -> str:
    """The store's tenant key: one space per user."""
    return context["user"]


def _assistant(thread_id: str, text: str) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=f"msg_{thread_id[4:]}_{len(text)}",
        thread_id=thread_id,
        created_at=Turn.now(),
        content=[AssistantMessageContent(text=text)],
    )


class FullResponder:
    """A responder that supports every optional request type."""

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(item=_assistant(turn.thread.id, f"echo: {turn.input_text()}"))

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(item=_assistant(turn.thread.id, f"action: {action.type}"))

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        return SyncCustomActionResponse()

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: str) -> None:
        return None

    async def transcribe(self, audio: AudioInput, context: Any) -> TranscriptionResult:
        return TranscriptionResult(text=f"{len(audio.data)} bytes of {audio.media_type}")


async def bare_respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """A plain function responder: no actions, feedback or transcription."""
    yield ThreadItemDoneEvent(item=_assistant(turn.thread.id, "bare"))


async def seed(store: Store[Any]) -> None:
    """Alice's two threads (items of every kind in the first) and Bob's thread."""
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def at(minutes: int) -> datetime:
        return start + timedelta(minutes=minutes)

    thread_id = ALICE_THREAD
    attachment = FileAttachment(
        id=ALICE_ATTACHMENT,
        name="notes.txt",
        mime_type="text/plain",
        thread_id=thread_id,
        metadata={"bucket": "private"},
    )
    await store.save_thread(
        ThreadMetadata(id=thread_id, title="Alice's plans", created_at=at(0)), ALICE
    )
    await store.save_thread(
        ThreadMetadata(id=ALICE_SECOND_THREAD, title="Second", created_at=at(1)), ALICE
    )
    await store.save_attachment(attachment, ALICE)
    items = [
        UserMessageItem(
            id=ItemIds.USER_MESSAGE,
            thread_id=thread_id,
            created_at=at(2),
            content=[UserMessageTextContent(text="Plan my week")],
            attachments=[attachment],
            inference_options=InferenceOptions(),
        ),
        ClientToolCallItem(
            id=ItemIds.TOOL_CALL_DONE,
            thread_id=thread_id,
            created_at=at(3),
            status="completed",
            call_id="call_1",
            name="get_calendar",
            arguments={"week": 1},
            output={"events": []},
        ),
        WidgetItem(
            id=ItemIds.WIDGET,
            thread_id=thread_id,
            created_at=at(4),
            widget=Card(children=[Text(value="Monday: gym")]),
        ),
        StructuredInputItem(
            id=ItemIds.STRUCTURED_ANSWERED,
            thread_id=thread_id,
            created_at=at(5),
            status="answered",
            inputs=[
                StructuredInputFreeform(
                    id="q1", question="Why?", answer=StructuredInputAnswer(values=["fun"])
                )
            ],
        ),
        StructuredInputItem(
            id=ItemIds.STRUCTURED_PENDING,
            thread_id=thread_id,
            created_at=at(6),
            inputs=[StructuredInputFreeform(id="q2", question="When?")],
        ),
        AssistantMessageItem(
            id=ItemIds.ASSISTANT,
            thread_id=thread_id,
            created_at=at(7),
            content=[AssistantMessageContent(text="Here is your week.")],
        ),
        HiddenContextItem(
            id=ItemIds.HIDDEN,
            thread_id=thread_id,
            created_at=at(8),
            content="the user prefers mornings",
        ),
    ]
    for item in items:
        await store.add_thread_item(thread_id, item, ALICE)

    await store.save_thread(ThreadMetadata(id=BOB_THREAD, title="Bob", created_at=at(9)), BOB)
    await store.add_thread_item(
        BOB_THREAD,
        UserMessageItem(
            id=ItemIds.BOB_MESSAGE,
            thread_id=BOB_THREAD,
            created_at=at(10),
            content=[UserMessageTextContent(text="hi")],
            inference_options=InferenceOptions(),
        ),
        BOB,
    )


async def snapshot(store: Store[Any], context: dict[str, str]) -> list[str]:
    """Everything a user owns, as the store returns it, serialized to JSON."""
    out: list[str] = []
    threads = await store.load_threads(1000, None, "asc", context)
    assert not threads.has_more
    for thread in threads.data:
        out.append((await store.load_thread(thread.id, context)).model_dump_json())
        items = await store.load_thread_items(thread.id, None, 1000, "asc", context)
        assert not items.has_more
        out.extend(item.model_dump_json() for item in items.data)
    if context == ALICE:
        attachment = await store.load_attachment(ALICE_ATTACHMENT, context)
        out.append(attachment.model_dump_json())
    return out


@pytest.fixture(params=["sqlite", "mongodb", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store[Any]]:
    """A seeded store with one space per user: the embedded default, MongoDB, PostgreSQL."""
    if request.param == "sqlite":
        sqlite: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db", tenant=tenant_of)
        await seed(sqlite)
        yield sqlite
        await sqlite.aclose()
        return
    if request.param == "postgres":
        async with schema_store(request.getfixturevalue("postgres_url"), tenant=tenant_of) as pg:
            await seed(pg)
            yield pg
        return
    client: AsyncMongoClient[Any] = AsyncMongoClient(request.getfixturevalue("mongo_uri"))
    name = f"chatkit_app_{uuid.uuid4().hex[:12]}"
    try:
        mongo: MongoStore[Any] = MongoStore(client[name], tenant=tenant_of)
        await seed(mongo)
        yield mongo
    finally:
        await client.drop_database(name)
        await client.close()


def make_app(store: Store[Any], responder: Any, **options: Any) -> ChatKitApp:
    """The app under test: small body limit, short turn wait, the user from `x-user`."""
    options.setdefault("max_body_size", 64 * 1024)
    options.setdefault("turn_wait", 2.0)
    return ChatKitApp(responder, store=store, context=user_context, **options)


@pytest.fixture
def app(store: Store[Any]) -> ChatKitApp:
    """An app whose responder supports every request type."""
    return make_app(store, FullResponder())


@pytest.fixture
def bare_app(store: Store[Any]) -> ChatKitApp:
    """An app over the same store whose responder is a plain function."""
    return make_app(store, bare_respond)


@pytest.fixture
async def client(app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    async with ChatKitTestClient(app) as client:
        yield client


@pytest.fixture
async def bare_client(bare_app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    async with ChatKitTestClient(bare_app) as client:
        yield client
