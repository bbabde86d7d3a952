"""The docs: they build without warnings, their code runs, and the migration table is whole.

Every ```python block of a page runs, in order, in one namespace per page (like a
reader pasting them into one file), in a scratch directory. Blocks that define
`test_*` functions have them called; the checks below then use what the page built.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from chatkit_asgi.types import (
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    WidgetItem,
)

from .conftest import REPO, CLIServer, fetch

DOCS = REPO / "docs"
PAGES = sorted(path.name for path in DOCS.glob("*.md"))
REFERENCE_MODULES = [
    "chatkit.types",
    "chatkit.server",
    "chatkit.store",
    "chatkit.errors",
    "chatkit.actions",
    "chatkit.widgets",
    "chatkit.agents",
]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)  # samples create chatkit.db and friends here
    yield tmp_path


async def run_page(page: str) -> dict[str, Any]:
    """Run a page's python blocks in one namespace, then its `test_*` functions."""
    # A real module, as a reader's file would be (pydantic looks generics' modules up).
    module = types.ModuleType(f"docs_{page[:-3]}")
    namespace: dict[str, Any] = module.__dict__
    sys.modules[module.__name__] = module
    try:
        for number, block in enumerate(python_blocks(page), 1):
            exec(compile(block, f"docs/{page} (python block {number})", "exec"), namespace)
    finally:
        del sys.modules[module.__name__]
    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.iscoroutinefunction(value):
            await value()
    return namespace


async def close_all(namespace: dict[str, Any]) -> None:
    """Close what the page opened (apps close their stores; clients close themselves)."""
    from pymongo import AsyncMongoClient

    for value in list(namespace.values()):
        if isinstance(value, AsyncMongoClient):
            await value.close()
        elif hasattr(value, "aclose") and not inspect.isclass(value):
            await value.aclose()


def final_text(events: list[Any]) -> str:
    done = [e for e in events if isinstance(e, ThreadItemDoneEvent)]
    item = done[-1].item
    assert isinstance(item, AssistantMessageItem)
    return item.content[0].text


# -- the build -----------------------------------------------------------------------


def test_the_docs_build_without_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    for page in PAGES:
        built = "index.html" if page == "index.md" else f"{page[:-3]}/index.html"
        assert (tmp_path / "site" / built).exists(), page


def test_every_page_is_in_the_nav() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    assert sorted(set(re.findall(r"(\w+\.md)", nav))) == PAGES


# -- the samples, page by page ---------------------------------------------------------


async def test_index(in_tmp: Path) -> None:
    page = await run_page("index.md")
    app = page["app"]
    async with ChatKitTestClient(app) as client:
        assert final_text(await client.create_thread("hi")) == "Echo: hi"
        assert (await client.http.get("/")).status_code == 200  # the playground
    await close_all(page)


async def test_quickstart(in_tmp: Path) -> None:
    page = await run_page("quickstart.md")  # runs its test_it_answers
    async with ChatKitTestClient(page["app"]) as client:
        events = await client.create_thread("one two")
        assert sum(isinstance(e, ThreadItemUpdatedEvent) for e in events) == 4
        assert final_text(events) == "You said: one two"
        assert (await client.list_threads()).data[0].title == "one two"
    await close_all(page)


async def test_responders(in_tmp: Path) -> None:
    page = await run_page("responders.md")
    async with ChatKitTestClient(page["app"]) as client:
        events = await client.create_thread("hello")
        assert final_text(events) == "Echo: hello"
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        item_id = events[-1].item.id  # type: ignore[union-attr]
        await client.call(
            "items.feedback", thread_id=thread_id, item_ids=[item_id], kind="positive"
        )
        transcript = await client.call(
            "input.transcribe", audio_base64="AAAA", mime_type="audio/webm"
        )
    assert page["assistant"].feedback == [([item_id], "positive")]
    assert transcript == {"text": "(speech to text goes here)"}

    from chatkit_asgi import ChatKitApp
    from chatkit_asgi.stores import MemoryStore
    from chatkit_asgi.types import ErrorEvent

    for responder, text, expected in [
        (page["count_messages"], "hi", "That makes 1 messages."),
        (page["careful"], "hi", "Echo: hi"),
        (page["with_cleanup"], "hi", "Echo: hi"),
    ]:
        async with ChatKitTestClient(ChatKitApp(responder, store=MemoryStore())) as client:
            assert final_text(await client.create_thread(text)) == expected
    async with ChatKitTestClient(ChatKitApp(page["careful"], store=MemoryStore())) as client:
        events = await client.create_thread("   ")
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].message == "Say something first."
    await close_all(page)


async def test_mounting(in_tmp: Path) -> None:
    page = await run_page("mounting.md")
    async with ChatKitTestClient(page["app"], path="/chatkit/") as client:
        assert final_text(await client.create_thread("hi")) == "Hello stranger: hi"
    async with ChatKitTestClient(page["site"], path="/chatkit") as client:
        assert final_text(await client.create_thread("hi")) == "Hello stranger: hi"
    async with ChatKitTestClient(page["api"], path="/chatkit/") as client:
        with pytest.raises(ProtocolHTTPError) as refused:
            await client.create_thread("hi")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    alice = {"authorization": "Bearer secret-token-of-alice"}
    bob = {"authorization": "Bearer secret-token-of-bob"}
    async with ChatKitTestClient(page["api"], path="/chatkit/", headers=alice) as client:
        events = await client.create_thread("hi")
        assert final_text(events) == "Hello alice: hi"
        thread_id = events[0].thread.id  # type: ignore[union-attr]
    async with ChatKitTestClient(page["api"], path="/chatkit/", headers=bob) as client:
        with pytest.raises(ProtocolHTTPError) as hidden:
            await client.get_thread(thread_id)
        assert hidden.value.status == 404
    transport = httpx.ASGITransport(app=page["dev"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        preflight = await http.options(
            "/chatkit/",
            headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"},
        )
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    await close_all(page)


async def test_stores(in_tmp: Path) -> None:
    page = await run_page("stores.md")
    await close_all(page)


def test_the_custom_store_passes_the_contract_suite(tmp_path: Path) -> None:
    """The page's `DictStore` and `TestDictStore`, run by pytest as a reader would."""
    (tmp_path / "test_dict_store.py").write_text("\n\n".join(python_blocks("stores.md")))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
         "-W", "ignore::ResourceWarning", "test_dict_store.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b4\d passed\b", result.stdout), result.stdout


async def test_attachments(in_tmp: Path) -> None:
    page = await run_page("attachments.md")
    async with ChatKitTestClient(page["app"]) as client:
        upload = await client.http.post("/upload", files={"file": ("a.txt", b"abc", "text/plain")})
        assert upload.status_code == 200, upload.text
        events = await client.create_thread("see", attachments=[upload.json()["id"]])
        assert final_text(events) == "Got 1 files, 3 bytes"
    assert page["s3"].prefix == "chatkit/"
    await close_all(page)


async def test_widgets(in_tmp: Path) -> None:
    page = await run_page("widgets.md")
    async with ChatKitTestClient(page["shop"]) as client:
        events = await client.create_thread("my order")
        widget = events[-1].item  # type: ignore[union-attr]
        assert isinstance(widget, WidgetItem)
        events = await client.stream(
            "threads.custom_action",
            thread_id=widget.thread_id,
            item_id=widget.id,
            action={"type": "order.confirm", "payload": {"order": 1234}},
        )
        replaced = [e for e in events if isinstance(e, ThreadItemReplacedEvent)]
        assert replaced[0].item.widget.children[1].value == "Confirmed"  # type: ignore[union-attr]
        assert final_text(events) == "Order 1234 is on its way."

    from chatkit_asgi import ChatKitApp
    from chatkit_asgi.stores import MemoryStore

    async with ChatKitTestClient(ChatKitApp(page["Counter"](), store=MemoryStore())) as client:
        events = await client.create_thread("x")
        widget = events[-1].item  # type: ignore[union-attr]
        answer = await client.call(
            "threads.sync_custom_action",
            thread_id=widget.thread_id,
            item_id=widget.id,
            action={"type": "seen"},
        )
        assert answer["updated_item"]["widget"]["children"][1]["value"] == "Seen"
    async with ChatKitTestClient(
        ChatKitApp(page["show_order_streamed"], store=MemoryStore())
    ) as client:
        events = await client.create_thread("x")
        kinds = [e.type for e in events if e.type.startswith("thread.item")]
        assert "thread.item.updated" in kinds
        done = [e for e in events if isinstance(e, ThreadItemDoneEvent)][-1]
        assert done.item.widget.children[1].value == "In stock"  # type: ignore[union-attr]
    await close_all(page)


async def test_agents(in_tmp: Path) -> None:
    import agents

    agents.set_tracing_disabled(True)  # no trace export from an offline test
    page = await run_page("agents.md")
    from chatkit_asgi import ChatKitApp
    from chatkit_asgi.stores import MemoryStore
    from tests.agents._script import ScriptedModel, text

    # Run the page's agent offline: a scripted model instead of the API.
    page["agent"].model = ScriptedModel([[text(["Hello ", "there"])]])
    async with ChatKitTestClient(page["app"]) as client:
        assert final_text(await client.create_thread("hi")) == "Hello there"
    for responder in (page["respond"], page["respond_by_hand"]):
        page["agent"].model = ScriptedModel([[text("Again")]])
        async with ChatKitTestClient(ChatKitApp(responder, store=MemoryStore())) as client:
            assert final_text(await client.create_thread("hi")) == "Again"
    assert [tool.name for tool in page["weather_agent"].tools] == ["show_weather", "search_docs"]
    await close_all(page)


async def test_errors(in_tmp: Path) -> None:
    page = await run_page("errors.md")  # runs both of its tests
    await close_all(page)


async def test_playground(in_tmp: Path) -> None:
    page = await run_page("playground.md")
    transport = httpx.ASGITransport(app=page["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/playground/chatkit.html")).status_code == 200
    await close_all(page)


async def test_testing(in_tmp: Path) -> None:
    page = await run_page("testing.md")  # runs test_echo
    await close_all(page)


async def test_deployment(in_tmp: Path) -> None:
    page = await run_page("deployment.md")
    await close_all(page)


async def test_production(in_tmp: Path) -> None:
    page = await run_page("production.md")  # runs test_production_hooks
    refusal = await page["admit"]({"plan": "suspended"}, "threads.create", None)
    assert refusal.code == "suspended"
    assert await page["admit"]({"plan": "pro"}, "threads.create", None) is None
    await close_all(page)


@pytest.mark.uvicorn
async def test_cli_sample_served_by_the_cli(
    start_cli: Callable[..., CLIServer], tmp_path: Path
) -> None:
    (tmp_path / "assistant.py").write_text(python_blocks("cli.md")[0])
    command = next(
        line for line in (DOCS / "cli.md").read_text().splitlines()
        if line.startswith("chatkit-asgi serve assistant:respond")
    )  # fmt: skip
    server = start_cli(*command.split()[1:])
    async with ChatKitTestClient(
        base_url=server.url + "/chatkit/", headers={"x-user": "ada"}
    ) as client:
        assert final_text(await client.create_thread("hi")) == "ada said hi"
    assert (await fetch("GET", server.url + "/chatkit/")).status_code == 200  # --playground


async def test_migration(in_tmp: Path) -> None:
    page = await run_page("migration.md")
    for path in ("/chatkit/", "/assistant/"):
        async with ChatKitTestClient(page["after"], path=path) as client:
            assert final_text(await client.create_thread("hello")) == "Echo: hello"
    # "Keep your ChatKitServer": the same subclass behind its endpoint, and mounted.
    for path in ("/chatkit", "/mounted/"):
        async with ChatKitTestClient(page["kept"], path=path) as client:
            assert final_text(await client.create_thread("hello")) == "Echo: hello"
            with pytest.raises(ProtocolHTTPError) as refused:
                await client.call("threads.get_by_id", thread_id="thr_nope")
            assert (refused.value.status, refused.value.code) == (404, "thread_not_found")
    await close_all(page)


def test_every_page_with_samples_is_run_here() -> None:
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_")}
    for page in PAGES:
        if python_blocks(page):
            stem = page[:-3]
            assert stem in tested or f"{stem}_sample_served_by_the_cli" in tested, page


# -- the migration table ---------------------------------------------------------------


def reference_names(module: str) -> list[str]:
    """The public names a reference module defines (its own classes, functions, aliases)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    names: list[str] = []
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in names if not name.startswith("_")]


def migration_rows() -> dict[str, dict[str, tuple[str, str]]]:
    """module -> name -> (chatkit-asgi cell, notes), from the page's tables."""
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in (DOCS / "migration.md").read_text().splitlines():
        heading = re.fullmatch(r"### `(chatkit\.\w+)`", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
            continue
        row = re.fullmatch(r"\| `(\w+)` \| (.*?) \| (.*?) \|", line)
        if row and current is not None:
            current[row.group(1)] = (row.group(2), row.group(3))
    return sections


@pytest.mark.parametrize("module", REFERENCE_MODULES)
def test_the_migration_table_names_every_reference_name(module: str) -> None:
    rows = migration_rows()
    assert module in rows, f"no table for {module}"
    assert sorted(rows[module]) == sorted(reference_names(module))


@pytest.mark.parametrize("module", REFERENCE_MODULES)
def test_every_equivalent_in_the_table_exists(module: str) -> None:
    for name, (ours, notes) in migration_rows()[module].items():
        if ours == "—":
            assert notes, f"{module}.{name}: say why there is no equivalent"
            continue
        path = re.fullmatch(r"`(chatkit_asgi(?:\.\w+)*)\.(\w+)`", ours)
        if path is None:
            assert ours.startswith("`ChatKitApp("), f"{module}.{name}: {ours}"
            continue
        target = getattr(importlib.import_module(path.group(1)), path.group(2), None)
        assert target is not None, f"{module}.{name}: {ours} does not exist"
