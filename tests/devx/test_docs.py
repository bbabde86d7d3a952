"""The docs: they build without warnings, their code runs, and the migration table is whole.

Every ```python block runs alone, as its own module with nothing injected (a reader
pastes each into a file of its own), in a scratch directory; blocks that define `test_*`
functions have them called. The checks below use what each block built, page by page.
`tests/docs/test_blocks.py` proves each block also runs in a fresh interpreter against
the built wheel; this file checks what the blocks do.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
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
from tests._s3_server import S3Endpoint, s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

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


async def run_tests(namespace: dict[str, Any]) -> None:
    """Call a block's `async def test_*` functions, as pytest would."""
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert tests, "the block defines no test"
    for test in tests:
        assert inspect.iscoroutinefunction(test)
        await test()


def run_block(page: str, marker: str) -> dict[str, Any]:
    """Run the one python block of `page` that contains `marker`, alone, as its own module."""
    (block,) = [block for block in python_blocks(page) if marker in block]
    module = types.ModuleType(f"docs_{page[:-3]}_block")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block, f"docs/{page} (block with {marker!r})", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.__dict__


def pytest_files(folder: Path, files: dict[str, str], test_file: str) -> str:
    """Write `files` into `folder` and run pytest on `test_file` there, as a reader would."""
    for name, source in files.items():
        (folder / name).write_text(source)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function",
         "-W", "ignore::ResourceWarning", test_file],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


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
    assert sorted(set(re.findall(r"([\w-]+\.md)", nav))) == PAGES


# -- the samples, page by page ---------------------------------------------------------


async def test_index(in_tmp: Path) -> None:
    page = run_block("index.md", "playground=True")
    app = page["app"]
    async with ChatKitTestClient(app) as client:
        assert final_text(await client.create_thread("hi")) == "Echo: hi"
        assert (await client.http.get("/")).status_code == 200  # the playground
    await close_all(page)


async def test_quickstart(in_tmp: Path) -> None:
    # The test block is partial: it imports `app` from the first block, saved as app.py.
    app_py, test_py = python_blocks("quickstart.md")
    files = {"app.py": app_py, "test_app.py": test_py}
    assert "1 passed" in pytest_files(in_tmp, files, "test_app.py")
    page = run_block("quickstart.md", "app = ChatKitApp(respond")
    async with ChatKitTestClient(page["app"]) as client:
        events = await client.create_thread("one two")
        assert sum(isinstance(e, ThreadItemUpdatedEvent) for e in events) == 4
        assert final_text(events) == "You said: one two"
        assert (await client.list_threads()).data[0].title == "one two"
    await close_all(page)


async def test_responders(in_tmp: Path) -> None:
    page = run_block("responders.md", "class Assistant")
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

    await close_all(page)
    for marker, expected in [
        ("async def respond(turn", "Echo: hi"),
        ("async def count_messages(", "That makes 1 messages."),
        ("async def careful(", "Echo: hi"),
        ("async def with_cleanup(", "Echo: hi"),
    ]:
        block = run_block("responders.md", marker)
        async with ChatKitTestClient(block["app"]) as client:
            assert final_text(await client.create_thread("hi")) == expected
        await close_all(block)
    careful = run_block("responders.md", "async def careful(")["careful"]
    async with ChatKitTestClient(ChatKitApp(careful, store=MemoryStore())) as client:
        events = await client.create_thread("   ")
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].message == "Say something first."


async def test_mounting(in_tmp: Path) -> None:
    mounted = run_block("mounting.md", 'app = Starlette(routes=[Mount("/chatkit", app=chatkit)]')
    async with ChatKitTestClient(mounted["app"], path="/chatkit/") as client:
        assert final_text(await client.create_thread("hi")) == "Hello stranger: hi"
    own_lifespan = run_block("mounting.md", "async def lifespan(")
    async with ChatKitTestClient(own_lifespan["app"], path="/chatkit/") as client:
        assert final_text(await client.create_thread("hi")) == "Hello"
    site = run_block("mounting.md", "Middleware(ChatKitMiddleware")
    async with ChatKitTestClient(site["app"], path="/chatkit") as client:
        assert final_text(await client.create_thread("hi")) == "Hello stranger: hi"
    page = run_block("mounting.md", "TOKENS = ")
    async with ChatKitTestClient(page["app"], path="/chatkit/") as client:
        with pytest.raises(ProtocolHTTPError) as refused:
            await client.create_thread("hi")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    alice = {"authorization": "Bearer secret-token-of-alice"}
    bob = {"authorization": "Bearer secret-token-of-bob"}
    async with ChatKitTestClient(page["app"], path="/chatkit/", headers=alice) as client:
        events = await client.create_thread("hi")
        assert final_text(events) == "Hello alice: hi"
        thread_id = events[0].thread.id  # type: ignore[union-attr]
    async with ChatKitTestClient(page["app"], path="/chatkit/", headers=bob) as client:
        with pytest.raises(ProtocolHTTPError) as hidden:
            await client.get_thread(thread_id)
        assert hidden.value.status == 404
    dev = run_block("mounting.md", "CORSMiddleware")
    transport = httpx.ASGITransport(app=dev["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        preflight = await http.options(
            "/chatkit/",
            headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"},
        )
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    for block in (mounted, own_lifespan, site, page, dev):
        await close_all(block)


async def test_stores(in_tmp: Path) -> None:
    for marker in ("SQLiteStore(", "AsyncMongoClient(", "MongoStore.from_uri(", "class DictStore"):
        await close_all(run_block("stores.md", marker))


def test_the_custom_store_passes_the_contract_suite(tmp_path: Path) -> None:
    """The page's `DictStore` and its partial `TestDictStore`, run by pytest as a reader would."""
    (store,) = [block for block in python_blocks("stores.md") if "class DictStore" in block]
    (suite,) = [block for block in python_blocks("stores.md") if "class TestDictStore" in block]
    files = {"dict_store.py": store, "test_dict_store.py": suite}
    output = pytest_files(tmp_path, files, "test_dict_store.py")
    assert re.search(r"\b4\d passed\b", output), output


async def test_attachments(in_tmp: Path) -> None:
    page = run_block("attachments.md", "FileSystemAttachmentStore(")
    async with ChatKitTestClient(page["app"]) as client:
        upload = await client.http.post("/upload", files={"file": ("a.txt", b"abc", "text/plain")})
        assert upload.status_code == 200, upload.text
        events = await client.create_thread("see", attachments=[upload.json()["id"]])
        assert final_text(events) == "Got 1 files, 3 bytes"
    await close_all(page)
    s3 = run_block("attachments.md", "S3AttachmentStore(")
    assert s3["s3"].prefix == "chatkit/"
    await close_all(s3)


async def test_widgets(in_tmp: Path) -> None:
    blocks = ("class Vote(", '"Paris"', "class Person(", 'build({"degrees": 21})', "strict = ")
    for marker in blocks:
        run_block("widgets.md", marker)  # their asserts are the checks
    page = run_block("widgets.md", "class Shop:")
    async with ChatKitTestClient(page["app"]) as client:
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

    counter = run_block("widgets.md", "class Counter:")
    async with ChatKitTestClient(counter["app"]) as client:
        events = await client.create_thread("x")
        widget = events[-1].item  # type: ignore[union-attr]
        answer = await client.call(
            "threads.sync_custom_action",
            thread_id=widget.thread_id,
            item_id=widget.id,
            action={"type": "order.seen"},
        )
        assert answer["updated_item"]["widget"]["children"][1]["value"] == "Seen"
    streamed = run_block("widgets.md", "async def show_order_streamed(")
    async with ChatKitTestClient(streamed["app"]) as client:
        events = await client.create_thread("x")
        kinds = [e.type for e in events if e.type.startswith("thread.item")]
        assert "thread.item.updated" in kinds
        done = [e for e in events if isinstance(e, ThreadItemDoneEvent)][-1]
        assert done.item.widget.children[1].value == "In stock"  # type: ignore[union-attr]
    shown = run_block("widgets.md", "async def show_order(")
    async with ChatKitTestClient(shown["app"]) as client:
        events = await client.create_thread("x")
        assert isinstance(events[-1].item, WidgetItem)  # type: ignore[union-attr]
    for block in (page, counter, streamed, shown):
        await close_all(block)


async def test_agents(in_tmp: Path) -> None:
    import agents

    from chatkit_asgi.agents import AgentContext
    from chatkit_asgi.types import ClientToolCallItem
    from tests.agents._script import ScriptedModel, function_call, text

    agents.set_tracing_disabled(True)  # no trace export from an offline test
    # Each block's agent runs offline: a scripted model instead of the API.
    for marker in (
        "app = ChatKitApp(AgentResponder(agent)",
        "async def respond(turn",
        "async def respond_by_hand(",
        "class MyConverter(",
    ):
        block = run_block("agents.md", marker)
        block["agent"].model = ScriptedModel([[text(["Hello ", "there"])]])
        async with ChatKitTestClient(block["app"]) as client:
            assert final_text(await client.create_thread("hi")) == "Hello there", marker
        await close_all(block)

    tools = run_block("agents.md", "def show_weather(")
    assert [tool.name for tool in tools["weather_agent"].tools] == ["show_weather", "search_docs"]
    assert tools["show_weather"].params_json_schema["required"] == ["city"]
    assert AgentContext  # the tools' context type, imported by the block
    tools["weather_agent"].model = ScriptedModel(
        [[function_call("show_weather", '{"city": "Paris"}')], [text("Sunny.")]]
    )
    async with ChatKitTestClient(tools["app"]) as client:
        events = await client.create_thread("weather?")
    widgets = [e for e in events if isinstance(e, ThreadItemDoneEvent) and e.item.type == "widget"]
    assert widgets and widgets[0].item.widget.children[0].value == "Paris"  # type: ignore[union-attr]
    assert final_text(events) == "Sunny."
    await close_all(tools)

    page_tools = run_block("agents.md", "def get_selection(")
    page_tools["page_agent"].model = ScriptedModel([[function_call("get_selection", "{}")]])
    async with ChatKitTestClient(page_tools["app"]) as client:
        events = await client.create_thread("what did I select?")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        thread = await client.get_thread(thread_id)
    calls = [item for item in thread.items.data if isinstance(item, ClientToolCallItem)]
    assert [(call.name, call.status) for call in calls] == [("get_selection", "pending")]
    await close_all(page_tools)


async def test_errors(in_tmp: Path) -> None:
    for marker in ("def test_an_unknown_thread", "def test_stream_errors", "def test_http_exc"):
        block = run_block("errors.md", marker)
        await run_tests(block)  # each block is a test module: its tests are the checks
        await close_all(block)


async def test_playground(in_tmp: Path) -> None:
    page = run_block("playground.md", "playground=True")
    transport = httpx.ASGITransport(app=page["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/playground/chatkit.html")).status_code == 200
    await close_all(page)


async def test_testing(in_tmp: Path) -> None:
    page = run_block("testing.md", "async def test_echo(")
    await run_tests(page)
    await close_all(page)


async def test_deployment(
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    mongo_uri: str,
    s3_endpoint: S3Endpoint,  # noqa: F811
    s3_bucket: str,  # noqa: F811
) -> None:
    # The block finds MongoDB and S3 through the environment, as the page says.
    database = "docs_deployment"
    monkeypatch.setenv("MONGODB_URL", f"{mongo_uri}/{database}")
    monkeypatch.setenv("S3_BUCKET", s3_bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_endpoint.region)
    page = run_block("deployment.md", "MongoStore.from_uri(")
    ada = {"x-user-id": "ada"}
    try:
        async with ChatKitTestClient(page["app"], headers=ada) as client:
            upload = await client.http.post(
                "/upload", files={"file": ("a.txt", b"abc", "text/plain")}, headers=ada
            )
            assert upload.status_code == 200, upload.text
            events = await client.create_thread("hi", attachments=[upload.json()["id"]])
            assert final_text(events) == "Echo: hi"
        keys = s3_endpoint.boto3_client().list_objects_v2(Bucket=s3_bucket, Prefix="chatkit/ada/")
        assert keys["KeyCount"] == 1, keys  # the bytes went to S3, under the user's prefix
    finally:
        await close_all(page)
        from pymongo import AsyncMongoClient

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
        await mongo.drop_database(database)
        await mongo.close()


async def test_production(in_tmp: Path) -> None:
    (hooks,) = [block for block in python_blocks("production.md") if "def test_" in block]
    assert "1 passed" in pytest_files(in_tmp, {"test_hooks.py": hooks}, "test_hooks.py")
    for marker in ("# let it in", "admit.request_types = "):
        admit = run_block("production.md", marker)["admit"]
        refusal = await admit({"plan": "suspended"}, "threads.create", None)
        assert refusal.code == "suspended"
        assert await admit({"plan": "pro"}, "threads.create", None) is None
    from chatkit_asgi.admission import TURN_REQUEST_TYPES

    assert admit.request_types == TURN_REQUEST_TYPES


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
    before = run_block("migration.md", "class EchoServer(ChatKitServer")
    after = run_block("migration.md", "async def respond(turn: Turn)")
    assistant = run_block("migration.md", "class Assistant:")
    for app, path in (
        (before["app"], "/chatkit"),
        (after["app"], "/chatkit/"),
        (assistant["app"], "/"),
    ):
        async with ChatKitTestClient(app, path=path) as client:
            assert final_text(await client.create_thread("hello")) == "Echo: hello", path
    # "Keep your ChatKitServer": the same subclass behind its endpoint, and mounted.
    kept = run_block("migration.md", "class KeptEchoServer(")
    for path in ("/chatkit", "/mounted/"):
        async with ChatKitTestClient(kept["app"], path=path) as client:
            assert final_text(await client.create_thread("hello")) == "Echo: hello"
            with pytest.raises(ProtocolHTTPError) as refused:
                await client.call("threads.get_by_id", thread_id="thr_nope")
            assert (refused.value.status, refused.value.code) == (404, "thread_not_found")
    for block in (before, after, assistant, kept):
        await close_all(block)


def test_production_guide(tmp_path: Path) -> None:
    # Its app and logging.json are examples/production, served by uvicorn with two workers
    # in tests/examples/test_production.py; here, the logging block, in a fresh interpreter
    # (it configures the root logger).
    (block,) = [block for block in python_blocks("production-guide.md") if "dictConfig" in block]
    (tmp_path / "logs.py").write_text(block)
    result = subprocess.run(
        [sys.executable, "logs.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert (line["message"], line["service"], line["workers"]) == ("ready", "chat", 4)


def test_every_page_with_samples_is_run_here() -> None:
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_")}
    for page in PAGES:
        if python_blocks(page):
            stem = page[:-3].replace("-", "_")
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
