"""The access control matrix: Bob against Alice's threads, items and attachments.

For every store (memory, SQLite, MongoDB) with every attachment store (filesystem,
S3), Alice gets a thread with an item of every kind, an image attachment sent in
a message and a file attachment not sent yet; Bob gets a thread and an attachment of
his own. Then Bob sends every request type that names an id, and hits the upload
and download routes, with Alice's ids in every position. Each time:

- Bob gets 404 with the same code a made-up id gets (another user's ids do not
  exist for him), never 200, 403 or 409, which would tell him the id is real;
- Alice's data (threads, every item, attachment metadata and bytes, the files or
  objects in the attachment store) is exactly as before.

Download and two-phase upload URLs are capabilities, like presigned S3 URLs: the
signed token in them is the permission, handed only to its owner. Bob cannot make
one for Alice's files: a token he edits is not found.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from chatkit_asgi import AttachmentStore, ChatKitApp, Store, Turn
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.stores.s3 import S3AttachmentStore
from chatkit_asgi.testing import ChatKitTestClient, user_input
from chatkit_asgi.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    AudioInput,
    Card,
    ClientToolCallItem,
    HiddenContextItem,
    StructuredInputFreeform,
    StructuredInputItem,
    SyncCustomActionResponse,
    Text,
    ThreadCreatedEvent,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
    TranscriptionResult,
    WidgetItem,
)
from tests._postgres_server import schema_store
from tests._s3_server import S3Endpoint, s3_bucket, s3_endpoint  # noqa: F401 (fixtures)
from tests.attachments._helpers import stored_objects, upload_two_phase

from ._apps import by_user, user_context
from .conftest import ALICE, all_items, snapshot, unique_database

PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(1500)
NOTES = b"Alice's private notes\n" * 20


class Assistant:
    """Supports every request type, so none is refused before its ids are checked."""

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text=f"echo: {turn.input_text()}")],
            )
        )

    def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        return self.respond(turn)

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        return SyncCustomActionResponse()

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: str) -> None:
        return None

    async def transcribe(self, audio: AudioInput, context: Any) -> TranscriptionResult:
        return TranscriptionResult(text="")


# -- the stores ------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "mongodb", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store[Any]]:
    if request.param == "memory":
        yield MemoryStore(tenant=by_user)
    elif request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        async with schema_store(url, tenant=by_user) as pg:
            yield pg
    elif request.param == "sqlite":
        sqlite: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db", tenant=by_user)
        yield sqlite
        await sqlite.aclose()
    else:
        uri: str = request.getfixturevalue("mongo_uri")
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
        name = unique_database()
        try:
            yield MongoStore(client[name], tenant=by_user)
        finally:
            await client.drop_database(name)
            await client.close()


@pytest.fixture(params=["filesystem", "s3"])
async def attachment_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AttachmentStore[Any]]:
    if request.param == "filesystem":
        yield FileSystemAttachmentStore(tmp_path / "attachments", tenant=by_user)
        return
    endpoint: S3Endpoint = request.getfixturevalue("s3_endpoint")
    s3 = S3AttachmentStore(
        request.getfixturevalue("s3_bucket"),
        prefix=f"matrix-{secrets.token_hex(4)}/",
        tenant=by_user,
        **endpoint.client_args(),
    )
    yield s3
    await s3.aclose()


@pytest.fixture
def s3_endpoint_or_none(request: pytest.FixtureRequest, attachment_store: Any) -> Any:
    if isinstance(attachment_store, S3AttachmentStore):
        return request.getfixturevalue("s3_endpoint")
    return None


# -- Alice's and Bob's data ---------------------------------------------------------------


@dataclass
class World:
    """The ids the matrix plays with."""

    thread: str  # Alice's, with an item of every kind
    user_message: str
    assistant: str
    widget: str
    question: str  # a pending structured input
    hidden: str
    tool_call: str  # a pending client tool call, the newest item of `tool_thread`
    tool_thread: str
    image: str  # sent in Alice's first message
    notes: str  # uploaded, not sent yet
    bob_thread: str
    bob_image: dict[str, Any]  # Bob's own attachment, as created


async def build_world(store: Store[Any], alice: ChatKitTestClient, bob: ChatKitTestClient) -> World:
    image = await upload_two_phase(alice, "photo.png", PNG, "image/png")
    notes = await upload_two_phase(alice, "notes.txt", NOTES, "text/plain")
    events = await alice.create_thread("my plans", attachments=[image["id"]])
    thread = next(e.thread.id for e in events if isinstance(e, ThreadCreatedEvent))
    user_message, assistant = [item.id for item in await all_items(store, thread, ALICE)]

    now = datetime.now(timezone.utc)
    extra: dict[str, ThreadItem] = {
        "widget": WidgetItem(
            id="msg_alice_widget",
            thread_id=thread,
            created_at=now,
            widget=Card(children=[Text(value="Monday: gym")]),
        ),
        "question": StructuredInputItem(
            id="msg_alice_question",
            thread_id=thread,
            created_at=now,
            inputs=[StructuredInputFreeform(id="q", question="When?")],
        ),
        "hidden": HiddenContextItem(
            id="msg_alice_hidden", thread_id=thread, created_at=now, content="likes mornings"
        ),
    }
    for item in extra.values():
        await store.add_thread_item(thread, item, ALICE)

    tool_events = await alice.create_thread("call a tool")
    tool_thread = next(e.thread.id for e in tool_events if isinstance(e, ThreadCreatedEvent))
    tool_call = ClientToolCallItem(
        id="tc_alice_call",
        thread_id=tool_thread,
        created_at=now,
        call_id="c1",
        name="t",
        arguments={},
    )
    await store.add_thread_item(tool_thread, tool_call, ALICE)

    bob_events = await bob.create_thread("Bob's own")
    bob_thread = next(e.thread.id for e in bob_events if isinstance(e, ThreadCreatedEvent))
    bob_image = await upload_two_phase(bob, "bob.png", PNG, "image/png")
    return World(
        thread=thread,
        user_message=user_message,
        assistant=assistant,
        widget=extra["widget"].id,
        question=extra["question"].id,
        hidden=extra["hidden"].id,
        tool_call=tool_call.id,
        tool_thread=tool_thread,
        image=image["id"],
        notes=notes["id"],
        bob_thread=bob_thread,
        bob_image=bob_image,
    )


# -- the requests Bob tries -------------------------------------------------------------------

ACTION = {"type": "vote", "payload": {}}
ANSWERS = {"status": "answered", "answers": {"q": {"values": ["now"]}}}
UNKNOWN = {"thread": "thr_000000000000000000000000", "item": "msg_000000000000000000000000"}
UNKNOWN_ATTACHMENT = "atc_000000000000000000000000"


def protocol_rows(w: World) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(name, type, params with Alice's id, the same params with a made-up id)."""
    t, i, a = UNKNOWN["thread"], UNKNOWN["item"], UNKNOWN_ATTACHMENT
    bob = w.bob_thread
    rows: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("get_by_id", "threads.get_by_id", {"thread_id": w.thread}, {"thread_id": t}),
        (
            "update",
            "threads.update",
            {"thread_id": w.thread, "title": "mine"},
            {"thread_id": t, "title": "mine"},
        ),
        ("delete", "threads.delete", {"thread_id": w.thread}, {"thread_id": t}),
        ("list_after", "threads.list", {"after": w.thread}, {"after": t}),
        ("items_list", "items.list", {"thread_id": w.thread}, {"thread_id": t}),
        (
            "items_list_after",
            "items.list",
            {"thread_id": bob, "after": w.assistant},
            {"thread_id": bob, "after": i},
        ),
    ]
    for name, item in [
        ("user_message", w.user_message),
        ("assistant", w.assistant),
        ("hidden", w.hidden),
    ]:
        rows.append(
            (
                f"feedback_{name}",
                "items.feedback",
                {"thread_id": bob, "item_ids": [item], "kind": "negative"},
                {"thread_id": bob, "item_ids": [i], "kind": "negative"},
            )
        )
    rows += [
        (
            "feedback_thread",
            "items.feedback",
            {"thread_id": w.thread, "item_ids": [w.assistant], "kind": "negative"},
            {"thread_id": t, "item_ids": [w.assistant], "kind": "negative"},
        ),
        (
            "add_user_message",
            "threads.add_user_message",
            {"thread_id": w.thread, "input": user_input("hi")},
            {"thread_id": t, "input": user_input("hi")},
        ),
        (
            "client_tool_output",
            "threads.add_client_tool_output",
            {"thread_id": w.tool_thread, "result": {"ok": True}},
            {"thread_id": t, "result": {"ok": True}},
        ),
        (
            "structured_input_thread",
            "threads.add_structured_input",
            {"thread_id": w.thread, "item_id": w.question, "input": ANSWERS},
            {"thread_id": t, "item_id": w.question, "input": ANSWERS},
        ),
        (
            "structured_input_item",
            "threads.add_structured_input",
            {"thread_id": bob, "item_id": w.question, "input": ANSWERS},
            {"thread_id": bob, "item_id": i, "input": ANSWERS},
        ),
        (
            "retry_thread",
            "threads.retry_after_item",
            {"thread_id": w.thread, "item_id": w.user_message},
            {"thread_id": t, "item_id": w.user_message},
        ),
        (
            "retry_item",
            "threads.retry_after_item",
            {"thread_id": bob, "item_id": w.user_message},
            {"thread_id": bob, "item_id": i},
        ),
    ]
    for kind in ("custom_action", "sync_custom_action"):
        rows += [
            (
                f"{kind}_thread",
                f"threads.{kind}",
                {"thread_id": w.thread, "item_id": w.widget, "action": ACTION},
                {"thread_id": t, "item_id": w.widget, "action": ACTION},
            ),
            (
                f"{kind}_item",
                f"threads.{kind}",
                {"thread_id": bob, "item_id": w.widget, "action": ACTION},
                {"thread_id": bob, "item_id": i, "action": ACTION},
            ),
        ]
    for name, attachment in [("sent_image", w.image), ("unsent_notes", w.notes)]:
        rows += [
            (
                f"attachment_delete_{name}",
                "attachments.delete",
                {"attachment_id": attachment},
                {"attachment_id": a},
            ),
            (
                f"create_with_{name}",
                "threads.create",
                {"input": user_input("mine", attachments=[attachment])},
                {"input": user_input("mine", attachments=[a])},
            ),
            (
                f"add_message_with_{name}",
                "threads.add_user_message",
                {"thread_id": bob, "input": user_input("mine", attachments=[attachment])},
                {"thread_id": bob, "input": user_input("mine", attachments=[a])},
            ),
        ]
    return rows


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forged_tokens(bobs_token: str, alice_owner: str, alice_id: str) -> list[str]:
    """Bob's own signed token edited to name Alice's file, and a made-up one."""
    payload, _, mac = bobs_token.partition(".")
    claims = json.loads(_unb64(payload))
    retargeted = {**claims, "o": alice_owner, "i": alice_id}
    same_owner = {**claims, "i": alice_id}
    return [
        f"{_b64(json.dumps(retargeted, separators=(',', ':'), sort_keys=True).encode())}.{mac}",
        f"{_b64(json.dumps(same_owner, separators=(',', ':'), sort_keys=True).encode())}.{mac}",
        f"{_b64(json.dumps(retargeted).encode())}.{_b64(secrets.token_bytes(32))}",
    ]


def route_rows(w: World) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(name, method, path, httpx keyword arguments) of Bob at the attachment routes."""
    preview = w.bob_image.get("preview_url") or ""
    bobs_token = preview.rsplit("/", 1)[-1] if "/files/" in preview else ""
    tokens = forged_tokens(bobs_token, "alice", w.image) if bobs_token else []
    tokens.append(_b64(b'{"o":"alice","i":"' + w.image.encode() + b'"}'))  # unsigned
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    for n, token in enumerate(tokens):
        rows += [
            (f"download_forged_{n}", "GET", f"/files/{token}", {}),
            (f"upload_put_forged_{n}", "PUT", f"/upload/{token}", {"content": b"overwritten"}),
            (
                f"upload_post_forged_{n}",
                "POST",
                f"/upload/{token}",
                {"files": {"file": ("x.png", b"overwritten", "image/png")}},
            ),
        ]
    return rows


# -- the matrix -----------------------------------------------------------------------------------


async def alice_snapshot(
    store: Store[Any], attachment_store: AttachmentStore[Any], world: World, endpoint: Any
) -> list[Any]:
    data: list[Any] = await snapshot(store, ALICE, [world.image, world.notes])
    for attachment_id in (world.image, world.notes):
        data.append(b"".join([c async for c in attachment_store.open(attachment_id, ALICE)]))
    data.append([name for name in stored_objects(attachment_store, endpoint) if "bob" not in name])
    return data


def _code(response: httpx.Response) -> Any:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


async def test_bob_cannot_reach_anything_of_alices(
    store: Store[Any], attachment_store: AttachmentStore[Any], s3_endpoint_or_none: Any
) -> None:
    app = ChatKitApp(
        Assistant(), store=store, attachment_store=attachment_store, context=user_context
    )
    async with (
        ChatKitTestClient(app, headers={"x-user": "alice"}) as alice,
        ChatKitTestClient(app, headers={"x-user": "bob"}) as bob,
    ):
        world = await build_world(store, alice, bob)
        # Every id Bob will try is real: Alice reaches each of them.
        for thread_id in (world.thread, world.tool_thread):
            await store.load_thread(thread_id, ALICE)
        for item_id in (world.user_message, world.assistant, world.widget, world.question):
            await store.load_item(world.thread, item_id, ALICE)
        for attachment_id in (world.image, world.notes):
            await store.load_attachment(attachment_id, ALICE)
        preview = world.bob_image.get("preview_url")
        if preview and "/files/" in preview:
            # The download route works for a genuine token (Bob's own file)...
            own = await bob.http.get(preview)
            assert (own.status_code, own.content) == (200, PNG)
        before = await alice_snapshot(store, attachment_store, world, s3_endpoint_or_none)
        bobs_before = await snapshot(store, {"user": "bob"}, [])
        failures: list[str] = []

        for name, request_type, foreign, made_up in protocol_rows(world):
            response = await bob.post({"type": request_type, "params": foreign})
            expected = await bob.post({"type": request_type, "params": made_up})
            if expected.status_code != 404:
                failures.append(f"{name}: a made-up id got {expected.status_code} {expected.text}")
            if (response.status_code, _code(response)) != (404, _code(expected)):
                failures.append(f"{name}: {response.status_code} {response.text[:200]}")
            if await alice_snapshot(store, attachment_store, world, s3_endpoint_or_none) != before:
                failures.append(f"{name}: Alice's data changed")
                before = await alice_snapshot(store, attachment_store, world, s3_endpoint_or_none)

        for name, method, path, options in route_rows(world):
            response = await bob.http.request(method, path, **options)
            if response.status_code != 404:
                failures.append(f"{name}: {response.status_code} {response.text[:200]}")
            if await alice_snapshot(store, attachment_store, world, s3_endpoint_or_none) != before:
                failures.append(f"{name}: Alice's data changed")
                before = await alice_snapshot(store, attachment_store, world, s3_endpoint_or_none)

        # Bob's listing shows his own threads only, and Alice still sees all of hers.
        listed = await bob.list_threads()
        if {t.id for t in listed.data} & {world.thread, world.tool_thread}:
            failures.append("threads.list: Bob sees Alice's threads")
        alices = {t.id for t in (await alice.list_threads()).data}
        assert {world.thread, world.tool_thread} <= alices
        assert failures == []
        # Bob's refused requests left nothing in his own space either, except the
        # threads he created with a made-up attachment... which were refused too.
        assert await snapshot(store, {"user": "bob"}, []) == bobs_before
