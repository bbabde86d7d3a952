"""Mistakes refused when the app is built, each with a message naming the fix."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.server import ChatKitServer
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.stores.sqlite import SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)


def answer(turn: Turn[Any]) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        content=[AssistantMessageContent(text="hi")],
    )


async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    yield ThreadItemDoneEvent(item=answer(turn))


class Assistant:
    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(item=answer(turn))


def build(responder: Any = respond, **options: Any) -> ChatKitApp:
    options.setdefault("store", MemoryStore())
    return ChatKitApp(responder, **options)


# -- stores ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "fix"),
    [
        ("chatkit.db", 'store=SQLiteStore("chatkit.db")'),
        (Path("chatkit.db"), 'store=SQLiteStore("chatkit.db")'),
        (SQLiteStore, "call it, store=SQLiteStore(...)"),
        (MemoryStore, "call it, store=MemoryStore(...)"),
        ({}, "pass an instance of a Store subclass"),
        (FileSystemAttachmentStore, "pass an instance of a Store subclass"),
    ],
)
def test_a_store_that_is_not_a_store_instance_is_refused(store: Any, fix: str) -> None:
    with pytest.raises(TypeError, match="store must be a chatkit_asgi Store") as caught:
        build(store=store)
    assert fix in str(caught.value)


@pytest.mark.parametrize(
    ("attachment_store", "fix"),
    [
        ("uploads", 'attachment_store=FileSystemAttachmentStore("uploads")'),
        (FileSystemAttachmentStore, "call it, attachment_store=FileSystemAttachmentStore(...)"),
        ({}, "pass an instance of a AttachmentStore subclass"),
        (MemoryStore(), "pass an instance of a AttachmentStore subclass"),
    ],
)
def test_a_wrong_attachment_store_is_refused(attachment_store: Any, fix: str) -> None:
    with pytest.raises(
        TypeError, match="attachment_store must be a chatkit_asgi AttachmentStore"
    ) as caught:
        build(attachment_store=attachment_store)
    assert fix in str(caught.value)


def test_real_stores_are_accepted(tmp_path: Path) -> None:
    app = build(
        store=SQLiteStore(tmp_path / "chatkit.db"),
        attachment_store=FileSystemAttachmentStore(tmp_path / "files"),
    )
    assert app.uploads is not None


# -- responders -----------------------------------------------------------------------


def sync_generator(turn: Turn[Any]) -> Any:
    yield ThreadItemDoneEvent(item=answer(turn))


async def no_yield(turn: Turn[Any]) -> Any:
    return ThreadItemDoneEvent(item=answer(turn))


async def raw_asgi(scope: Any, receive: Any, send: Any) -> None:
    pass


class SyncMethods:
    def respond(self, turn: Turn[Any]) -> Any:
        yield ThreadItemDoneEvent(item=answer(turn))


class Server(ChatKitServer[Any]):
    async def respond(self, thread: Any, input_user_message: Any, context: Any) -> Any:
        yield None


@pytest.mark.parametrize(
    ("responder", "fix"),
    [
        (42, "or an object with a respond(turn) method, not int"),
        (object(), "or an object with a respond(turn) method, not object"),
        (Assistant, "pass an instance, ChatKitApp(Assistant(), ...)"),
        (Server, "pass an instance, ChatKitApp(Server(), ...)"),
        (dict, "dict is a class without a respond(turn) method"),
        (sync_generator, "make it `async def respond(...)`"),
        (SyncMethods(), "make it `async def respond(...)`"),
        (no_yield, "needs at least one `yield`"),
        (Starlette(), "is an ASGI app (it takes scope, receive, send), not a responder"),
        (raw_asgi, "responder raw_asgi is an ASGI app"),
    ],
)
def test_a_responder_of_the_wrong_shape_is_refused(responder: Any, fix: str) -> None:
    with pytest.raises(TypeError) as caught:
        build(responder)
    assert fix in str(caught.value)


@pytest.mark.parametrize("responder", [respond, Assistant(), lambda turn: respond(turn)])
async def test_responders_of_the_right_shapes_are_accepted(responder: Any) -> None:
    async with ChatKitTestClient(build(responder)) as client:
        events = await client.create_thread("hello")
    assert events[-1].type == "thread.item.done"


async def test_yielding_an_item_instead_of_an_event_names_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def yields_an_item(turn: Turn[Any]) -> AsyncIterator[Any]:
        yield answer(turn)

    store: MemoryStore[Any] = MemoryStore()
    with caplog.at_level(logging.ERROR, logger="chatkit_asgi"):
        async with ChatKitTestClient(build(yields_an_item, store=store)) as client:
            events = await client.create_thread("hello")
    assert events[-1].type == "error"
    assert not any(e.type == "assistant_message" for e in events)
    failures = [r for r in caplog.records if r.exc_info]
    assert failures, caplog.text
    message = str(failures[0].exc_info[1])  # type: ignore[index]
    assert "yielded a AssistantMessageItem, an item, not an event" in message
    assert "yield ThreadItemDoneEvent(item=...)" in message


# -- the testing extra ----------------------------------------------------------------


def test_testing_without_its_extra_names_the_pip_command(tmp_path: Path) -> None:
    # Shadow httpx with a module that fails to import, as where it is not installed.
    (tmp_path / "httpx.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'httpx'\", name='httpx')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import chatkit_asgi.testing"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: chatkit_asgi.testing needs httpx")
    assert "pip install 'chatkit-asgi[testing]'" in last
