"""Hardening from hostile-input runs: odd Content-Length values, lenient JSON types,
uploads around the admission hook, a thread deleted while its reply streams."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatkit_asgi import ChatKitApp, Refusal, Store, Turn
from chatkit_asgi.admission import TURN_REQUEST_TYPES
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


async def echo(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """Never reached: these tests are refused (or are not turns)."""
    raise AssertionError("the responder ran")
    yield  # pragma: no cover


# -- Content-Length ---------------------------------------------------------------------


async def raw_post(app: ChatKitApp, content_length: bytes, body: bytes) -> tuple[int, Any]:
    """POST straight through ASGI: HTTP clients refuse to send such headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", content_length)],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(payload)


@pytest.mark.parametrize(
    "value",
    ["²".encode("latin-1"), "٣".encode(), "1²".encode("latin-1"), b"-1", b"", b" 12x"],
    ids=["superscript", "arabic-indic", "digit-superscript", "negative", "empty", "junk"],
)
async def test_a_content_length_of_anything_but_ascii_digits_is_400(value: bytes) -> None:
    app = ChatKitApp(echo, store=MemoryStore())
    body = json.dumps({"type": "threads.list", "params": {}}).encode()
    status, payload = await raw_post(app, value, body)
    assert status == 400
    assert payload["error"]["code"] == "invalid_request"


async def test_an_ascii_content_length_still_works_and_still_limits() -> None:
    app = ChatKitApp(echo, store=MemoryStore(), max_body_size=100)
    body = json.dumps({"type": "threads.list", "params": {}}).encode()
    status, _ = await raw_post(app, str(len(body)).encode(), body)
    assert status == 200
    status, payload = await raw_post(app, b"1000", body)
    assert (status, payload["error"]["code"]) == (413, "body_too_large")


# -- strict JSON types in request params -------------------------------------------------


@pytest.mark.parametrize(
    ("request_type", "params"),
    [
        ("threads.list", {"limit": "10"}),
        ("threads.list", {"limit": True}),
        ("items.list", {"thread_id": "thr_x", "limit": "10"}),
        ("attachments.create", {"name": "a.png", "size": "10", "mime_type": "image/png"}),
        (
            "threads.add_structured_input",
            {
                "thread_id": "thr_x",
                "item_id": "itm_x",
                "input": {"answers": {"q": {"values": [], "skipped": "no"}}},
            },
        ),
    ],
    ids=["limit-str", "limit-bool", "items-limit", "size-str", "skipped-str"],
)
async def test_strings_where_numbers_or_booleans_belong_are_refused(
    request_type: str, params: dict[str, Any], tmp_path: Path
) -> None:
    app = ChatKitApp(
        echo, store=MemoryStore(), attachment_store=FileSystemAttachmentStore(tmp_path)
    )
    async with ChatKitTestClient(app) as client:
        response = await client.post({"type": request_type, "params": params})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def test_json_numbers_are_still_accepted() -> None:
    async with ChatKitTestClient(ChatKitApp(echo, store=MemoryStore())) as client:
        assert (await client.call("threads.list", limit=10))["data"] == []


# -- direct uploads ask the admission hook ----------------------------------------------


class UploadGate:
    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    async def __call__(self, context: Any, request_type: str, thread: Any) -> Refusal | None:
        self.asked.append((request_type, thread))
        if request_type == "attachments.upload":
            return Refusal("Slow down", retry_after=2.5)
        return None


async def test_a_refused_direct_upload_is_429_and_stores_nothing(tmp_path: Path) -> None:
    gate = UploadGate()
    attachments: FileSystemAttachmentStore[Any] = FileSystemAttachmentStore(tmp_path / "files")
    store: MemoryStore[Any] = MemoryStore()
    app = ChatKitApp(echo, store=store, attachment_store=attachments, admission=gate)
    async with ChatKitTestClient(app) as client:
        response = await client.http.post("/upload", files={"file": ("a.png", PNG, "image/png")})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "rate_limited"
    assert gate.asked == [("attachments.upload", None)]
    stored = [p for p in (tmp_path / "files").rglob("*") if p.is_file() and p.name[0] != "."]
    assert stored == []


async def test_a_hook_about_turns_only_is_not_asked_about_uploads(tmp_path: Path) -> None:
    gate = UploadGate()
    gate.request_types = TURN_REQUEST_TYPES  # type: ignore[attr-defined]
    attachments: FileSystemAttachmentStore[Any] = FileSystemAttachmentStore(tmp_path)
    app = ChatKitApp(echo, store=MemoryStore(), attachment_store=attachments, admission=gate)
    async with ChatKitTestClient(app) as client:
        response = await client.http.post("/upload", files={"file": ("a.png", PNG, "image/png")})
    assert response.status_code == 200, response.text
    assert gate.asked == []


# -- a thread deleted while its reply streams -------------------------------------------


class DeletingResponder:
    """Streams text, and deletes its own thread mid-reply (as another tab would)."""

    def __init__(self, store: Store[Any]) -> None:
        self.store = store

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        item = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="")],
        )
        yield ThreadItemAddedEvent(item=item)
        await self.store.delete_thread(turn.thread.id, {})
        for _ in range(5):
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta="word "),
            )
            await anyio.sleep(0.05)  # the checkpoint interval passes: it finds no thread
        item.content = [AssistantMessageContent(text="word " * 5)]
        yield ThreadItemDoneEvent(item=item)


@pytest.mark.parametrize(
    "interval", [0.02, None], ids=["a-checkpoint-finds-it", "the-final-write-finds-it"]
)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_thread_deleted_mid_reply_ends_it_quietly(
    interval: float | None, backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store: Store[Any] = (
        MemoryStore() if backend == "memory" else SQLiteStore(tmp_path / "chatkit.db")
    )
    app = ChatKitApp(DeletingResponder(store).respond, store=store, checkpoint_interval=interval)
    caplog.set_level(logging.INFO, logger="chatkit_asgi")
    async with ChatKitTestClient(app) as client:
        response = await client.post(
            {
                "type": "threads.create",
                "params": {"input": {"content": [{"type": "input_text", "text": "hi"}]}},
            }
        )
    assert response.status_code == 200
    assert "error" not in [
        json.loads(line[6:])["type"] for line in response.text.splitlines() if line[:6] == "data: "
    ]
    records = [r for r in caplog.records if r.name.startswith("chatkit_asgi")]
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.msg for r in records]
    assert not [r for r in records if r.exc_info], [r.msg for r in records]
    assert any("deleted" in r.getMessage() for r in records if r.levelno >= logging.INFO)
    assert (await store.load_threads(10, None, "desc", {})).data == []
