"""The README's code runs: quick starts, the migration pair, the test example."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
CREATE = {
    "type": "threads.create",
    "params": {"input": {"content": [{"type": "input_text", "text": "hello"}], "attachments": []}},
}
CREATE_REFERENCE = {  # the reference requires every field the UI always sends
    "type": "threads.create",
    "params": {
        "input": {
            "content": [{"type": "input_text", "text": "hello"}],
            "attachments": [],
            "inference_options": {},
        }
    },
}


def _block(marker: str) -> str:
    matches = [block for block in BLOCKS if marker in block]
    assert len(matches) == 1, f"expected one README block containing {marker!r}"
    return matches[0]


def _run(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # blocks create chatkit.db in the working directory
    namespace: dict[str, Any] = {"MyStore": MemoryStore, "datetime": datetime, "pytest": pytest}
    exec(compile(source, "README.md", "exec"), namespace)
    return namespace


async def _final_text(app: Any, body: dict[str, Any], path: str = "/chatkit/") -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    events = parse_sse(response.content)
    done = [e for e in events if e["type"] == "thread.item.done"]
    return str(done[-1]["item"]["content"][0]["text"])


async def test_starlette_quick_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = _run(_block("app = Starlette(routes=[Mount"), tmp_path, monkeypatch)
    assert await _final_text(namespace["app"], CREATE) == "Echo: hello"
    await namespace["chatkit"].aclose()


async def test_middleware_snippet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_start = _run(_block("app = Starlette(routes=[Mount"), tmp_path, monkeypatch)
    namespace = {"chatkit": quick_start["chatkit"], "Starlette": quick_start["Starlette"]}
    exec(compile(_block("ChatKitMiddleware"), "README.md", "exec"), namespace)
    assert await _final_text(namespace["app"], CREATE) == "Echo: hello"
    await quick_start["chatkit"].aclose()


async def test_fastapi_quick_start_refuses_strangers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = _run(_block("TOKENS = "), tmp_path, monkeypatch)
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/chatkit/", json={"type": "threads.list", "params": {}})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
        response = await client.post(
            "/chatkit/",
            json={"type": "threads.list", "params": {}},
            headers={"authorization": "Bearer secret-token-of-alice"},
        )
        assert response.status_code == 200
        assert response.json() == {"data": [], "has_more": False}
    await namespace["chatkit"].aclose()


async def test_migration_pair_answers_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _run(_block("class EchoServer(ChatKitServer"), tmp_path, monkeypatch)
    after = _run(_block('app.mount("/chatkit", ChatKitApp(respond'), tmp_path, monkeypatch)
    # Same store class on both sides: our stores keep openai-chatkit's Store signatures.
    assert await _final_text(before["app"], CREATE_REFERENCE, "/chatkit") == "Echo: hello"
    assert await _final_text(after["app"], CREATE) == "Echo: hello"


async def test_test_client_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quick_start = _run(_block("app = Starlette(routes=[Mount"), tmp_path, monkeypatch)
    namespace = {"chatkit": quick_start["chatkit"]}
    exec(compile(_block("async def test_echo"), "README.md", "exec"), namespace)
    await namespace["test_echo"]()
    await quick_start["chatkit"].aclose()


def test_client_is_exported() -> None:
    assert ChatKitTestClient.__doc__


async def test_widget_poll_example_streams_and_votes() -> None:
    async def model_text(prompt: str) -> Any:
        for word in ["Only", " on", " Fridays."]:
            yield word

    namespace: dict[str, Any] = {"model_text": model_text}
    exec(compile(_block("class Poll:"), "README.md", "exec"), namespace)
    from chatkit_asgi import ChatKitApp

    async with ChatKitTestClient(ChatKitApp(namespace["Poll"](), store=MemoryStore())) as client:
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
