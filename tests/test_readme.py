"""What the README's blocks do: quick starts, auth, the migration pair, widgets, tests.

Each block runs alone, as its own module, with nothing injected (`tests.docs.blocks.load`);
`tests/docs/test_blocks.py` proves that each also runs pasted into an empty folder in a
fresh interpreter. These tests check what the README says the blocks do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkit_asgi.testing import ChatKitTestClient, parse_sse
from tests.docs.blocks import THREADS_CREATE, load

README = "README.md"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # blocks create chatkit.db in the working directory
    yield tmp_path


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to `app`, inside the app's lifespan (as a server would run it)."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await lifespan


def final_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    done = [e for e in parse_sse(response.content) if e["type"] == "thread.item.done"]
    return str(done[-1]["item"]["content"][0]["text"])


async def test_starlette_quick_start() -> None:
    block = load(README, "app = Starlette(routes=[Mount")
    async with running(block["app"]) as http:
        assert final_text(await http.post("/chatkit/", json=THREADS_CREATE)) == "Echo: hello"


async def test_middleware_block_serves_chatkit_at_its_path() -> None:
    block = load(README, "Middleware(ChatKitMiddleware")
    async with running(block["app"]) as http:
        assert final_text(await http.post("/chatkit", json=THREADS_CREATE)) == "Echo: hello"
        assert (await http.post("/elsewhere", json=THREADS_CREATE)).status_code == 404


async def test_fastapi_quick_start_refuses_strangers() -> None:
    block = load(README, "TOKENS = ")
    async with running(block["app"]) as http:
        response = await http.post("/chatkit/", json={"type": "threads.list", "params": {}})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
        alice = {"authorization": "Bearer secret-token-of-alice"}
        response = await http.post("/chatkit/", json=THREADS_CREATE, headers=alice)
        assert final_text(response) == "Hello alice, you said: hello"
        response = await http.post(
            "/chatkit/", json={"type": "threads.list", "params": {}}, headers=alice
        )
        assert response.status_code == 200
        assert len(response.json()["data"]) == 1


async def test_migration_pair_answers_alike() -> None:
    before = load(README, "class EchoServer(ChatKitServer")
    after = load(README, "ChatKitApp(respond, store=MyStore())")
    # Same store class on both sides: our stores keep openai-chatkit's Store signatures.
    async with running(before["app"]) as http:
        assert final_text(await http.post("/chatkit", json=THREADS_CREATE)) == "Echo: hello"
    async with running(after["app"]) as http:
        assert final_text(await http.post("/chatkit/", json=THREADS_CREATE)) == "Echo: hello"


async def test_test_client_example() -> None:
    block = load(README, "async def test_echo")
    await block["test_echo"]()


def test_client_is_exported() -> None:
    assert ChatKitTestClient.__doc__


async def test_attachments_block_reads_the_uploaded_bytes() -> None:
    block = load(README, "FileSystemAttachmentStore(")
    async with ChatKitTestClient(block["app"]) as client:
        upload = await client.http.post("/upload", files={"file": ("a.txt", b"abc", "text/plain")})
        assert upload.status_code == 200, upload.text
        events = await client.create_thread("see", attachments=[upload.json()["id"]])
    done = [e for e in events if e.type == "thread.item.done"]
    assert done[-1].item.content[0].text == "Got 1 files, 3 bytes"  # type: ignore[union-attr]


def test_widget_template_block_checks_the_data() -> None:
    block = load(README, "WidgetTemplate({")  # its own asserts check the refusal
    assert block["card"].children[0].value == "Paris"


async def test_widget_poll_example_streams_and_votes() -> None:
    block = load(README, "class Poll:")
    async with ChatKitTestClient(block["app"]) as client:
        events = await client.create_thread("pizza?")
        done = events[-1]
        assert done.type == "thread.item.done"
        widget = done.item.widget  # type: ignore[union-attr]
        assert widget.children[1].value == "Only on Fridays."  # type: ignore[union-attr]
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        vote = {"type": "vote", "payload": {"votes": 0}}
        answer = await client.call(
            "threads.sync_custom_action", thread_id=thread_id, item_id=done.item.id, action=vote
        )
        assert answer["updated_item"]["widget"]["children"][2]["children"][0]["label"] == "1 votes"


async def test_production_block_limits_and_reports_health(
    mongo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymongo import AsyncMongoClient

    database = "readme_production"
    monkeypatch.setenv("MONGODB_URL", f"{mongo_uri}/{database}")
    block = load(README, "TokenBucketLimiter(20")
    try:
        async with running(block["app"]) as http:
            health = await http.get("/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "ok"
            ada = {"x-user-id": "ada"}
            replies = [
                await http.post("/", json=THREADS_CREATE, headers=ada) for _ in range(6)
            ]  # a burst of 5, then the limiter's refusal inside the stream
            assert [final_text(reply) for reply in replies[:5]] == ["Echo: hello"] * 5
            refused = [e for e in parse_sse(replies[5].content) if e["type"] == "error"]
            assert refused, replies[5].text
            other = await http.post("/", json=THREADS_CREATE, headers={"x-user-id": "bob"})
            assert final_text(other) == "Echo: hello"  # limits are per user
    finally:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
        await client.drop_database(database)
        await client.close()
