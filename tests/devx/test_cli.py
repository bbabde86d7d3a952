"""The `chatkit-asgi` command, run as a real process like a person would."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chatkit_asgi.testing import ChatKitTestClient

from .conftest import REPO, CLIServer, fetch

pytestmark = pytest.mark.uvicorn

RunCLI = Callable[..., subprocess.CompletedProcess[str]]

RESPONDER = """
from chatkit_asgi import Turn
from chatkit_asgi.types import AssistantMessageContent, AssistantMessageItem, ThreadItemDoneEvent


async def respond(turn: Turn):
    yield ThreadItemDoneEvent(item=AssistantMessageItem(
        id=turn.new_id("message"), thread_id=turn.thread.id, created_at=turn.now(),
        content=[AssistantMessageContent(text=f"{turn.context.get('user', 'nobody')} said "
                                               f"{turn.input_text()}")]))


class Assistant:
    async def respond(self, turn: Turn):
        async for event in respond(turn):
            yield event


def user(request):
    return {"user": request.headers.get("x-user", "anonymous")}
"""


@pytest.fixture
def app_module(tmp_path: Path) -> str:
    (tmp_path / "myassistant.py").write_text(textwrap.dedent(RESPONDER))
    return "myassistant"


async def reply_text(url: str, text: str, headers: dict[str, str] | None = None) -> str:
    async with ChatKitTestClient(base_url=url, headers=headers) as client:
        events = await client.create_thread(text)
    done = [e for e in events if e.type == "thread.item.done"]
    return str(done[-1].item.content[0].text)  # type: ignore[union-attr]


def test_help_lists_the_commands(run_cli: RunCLI) -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "serve" in result.stdout
    serve = run_cli("serve", "--help")
    for option in ("--store", "--attachments", "--host", "--port", "--playground", "--workers"):
        assert option in serve.stdout


def test_version(run_cli: RunCLI) -> None:
    from chatkit_asgi import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"chatkit-asgi {__version__}"


async def test_serve_a_responder_function(
    start_cli: Callable[..., CLIServer], app_module: str, tmp_path: Path
) -> None:
    server = start_cli("serve", f"{app_module}:respond", "--store", "sqlite:///threads.db")
    assert await reply_text(server.url + "/chatkit/", "hi") == "nobody said hi"
    assert (tmp_path / "threads.db").exists()  # relative to the working directory
    # No playground unless asked for.
    assert (await fetch("GET", server.url + "/chatkit/")).status_code == 405
    assert "ChatKit endpoint: " + server.url + "/chatkit/" in server.stop()


async def test_serve_a_class_with_context_playground_and_mount(
    start_cli: Callable[..., CLIServer], app_module: str
) -> None:
    server = start_cli(
        "serve",
        f"{app_module}:Assistant",
        "--store",
        "memory://",
        "--context",
        f"{app_module}:user",
        "--mount",
        "/api/chat",
        "--playground",
        ready_path="/api/chat/",
    )
    url = server.url + "/api/chat/"
    assert await reply_text(url, "hello", headers={"x-user": "ada"}) == "ada said hello"
    page = await fetch("GET", url)
    assert page.status_code == 200 and "ChatKit playground" in page.text
    assert (await fetch("GET", server.url + "/")).headers["location"] == "/api/chat/"


async def test_serve_with_file_attachments(
    start_cli: Callable[..., CLIServer], app_module: str, tmp_path: Path
) -> None:
    server = start_cli(
        "serve", f"{app_module}:respond", "--store", "memory://", "--attachments", "file://files"
    )
    response = await fetch(
        "POST", server.url + "/chatkit/upload", files={"file": ("a.txt", b"abc", "text/plain")}
    )
    assert response.status_code == 200, response.text
    attachment = response.json()
    assert attachment["name"] == "a.txt"
    assert any((tmp_path / "files").rglob(attachment["id"]))


async def test_demo_serves_the_playground_and_the_demo_assistant(
    start_cli: Callable[..., CLIServer], tmp_path: Path
) -> None:
    server = start_cli("demo", "--store", "memory://", "--attachments", f"file://{tmp_path}/f")
    assert await reply_text(server.url + "/chatkit/", "ping") == "Echo: ping"
    page = await fetch("GET", server.url + "/chatkit/")
    assert page.status_code == 200 and "ChatKit playground" in page.text
    # The ChatKit UI usually runs on another origin while developing.
    preflight = await fetch(
        "OPTIONS",
        server.url + "/chatkit/",
        headers={"origin": "http://localhost:3000", "access-control-request-method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://localhost:3000")
    output = server.stop()
    assert "Playground:" in output
    assert "Application shutdown complete" in output


def test_demo_defaults_keep_data_in_the_working_directory(
    start_cli: Callable[..., CLIServer], tmp_path: Path
) -> None:
    server = start_cli("demo")
    response = httpx.post(
        server.url + "/chatkit/upload", files={"file": ("b.txt", b"xyz", "text/plain")}
    )
    assert response.status_code == 200, response.text
    server.stop()
    assert (tmp_path / "chatkit-demo.db").exists()
    assert (tmp_path / "chatkit-demo-files").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "nosuchmodule:respond"], "cannot import module 'nosuchmodule'"),
        (["serve", "myassistant:nothing"], "has no attribute 'nothing'"),
        (["serve", "myassistant"], "module:attribute"),
        (["serve", "myassistant:respond", "--store", "redis://x"], "unknown store URL"),
        (["serve", "myassistant:respond", "--store", "sqlite://x.db"], "bad SQLite URL"),
        (["serve", "myassistant:respond", "--attachments", "ftp://x"], "unknown attachments"),
        (["serve", "myassistant:respond", "--attachments", "s3://"], "bad S3 URL"),
        (
            ["serve", "myassistant:respond", "--attachments", "s3://b/p?color=red"],
            "unknown S3 URL option 'color'",
        ),
        (
            ["serve", "myassistant:respond", "--store", "memory://", "--workers", "2"],
            "use a single worker",
        ),
    ],
)
def test_bad_command_lines_are_clear_errors(
    run_cli: RunCLI, app_module: str, args: list[str], message: str
) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--store", "mongodb://127.0.0.1:1/chatkit"], "chatkit-asgi[mongodb]"),
        (["--attachments", "s3://bucket/prefix/"], "chatkit-asgi[s3]"),
        (["--store", "memory://"], "chatkit-asgi[server]"),  # uvicorn
    ],
)
def test_a_missing_optional_dependency_names_the_extra(
    run_cli: RunCLI, app_module: str, tmp_path: Path, args: list[str], extra: str
) -> None:
    # Shadow the drivers with modules that fail to import, as on a machine without them.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ("pymongo", "aioboto3", "uvicorn"):
        (blocked / f"{name}.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n"
        )
    result = run_cli("serve", "myassistant:respond", *args, env={"PYTHONPATH": str(blocked)})
    assert result.returncode == 2, result.stderr
    assert f"pip install '{extra}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_works_from_a_built_wheel(tmp_path: Path) -> None:
    """A fresh install: the wheel carries the command and the playground's files."""
    # With the build backend at hand, build offline; else let pip fetch it.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
         "-w", str(tmp_path / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("chatkit_asgi-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "chatkit-asgi = chatkit_asgi.cli:main" in archive.read(entry_points).decode()
        archive.extractall(tmp_path / "site")
    for asset in ("index.html", "app.js", "app.css", "chatkit.html"):
        assert f"chatkit_asgi/playground/{asset}" in names
    # Run the command from the unpacked wheel, not from the checkout.
    probe = subprocess.run(
        [sys.executable, "-c",
         "import chatkit_asgi, chatkit_asgi.playground as p; print(chatkit_asgi.__file__); "
         "print(len(p._read('index.html')))"],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    location, size = probe.stdout.split()
    assert location.startswith(str(tmp_path / "site"))
    assert int(size) > 1000
    help_run = subprocess.run(
        [sys.executable, "-c", "import sys; from chatkit_asgi.cli import main; "
         "sys.exit(main(['--help']))"],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert help_run.returncode == 0 and "serve" in help_run.stdout


REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_demo_serves_the_agent_example_beside_it(
    start_cli: Callable[..., CLIServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `make demo` runs: the Agents SDK example next to the demo assistant, offline
    # (no OPENAI_API_KEY: a scripted model answers).
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("CHATKIT_DB", str(tmp_path / "agent.db"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = start_cli("demo", "--store", "memory://", "--also", "/agent=examples.agent.app:app")
    assert await reply_text(server.url + "/chatkit/", "ping") == "Echo: ping"
    async with ChatKitTestClient(base_url=server.url + "/agent/chatkit/") as client:
        events = await client.create_thread("What is the weather in Paris?")
    kinds = {event.type for event in events}
    assert {"thread.created", "stream_options", "thread.item.done"} <= kinds
    widgets = [
        e
        for e in events
        if e.type == "thread.item.done" and e.item.type == "widget"  # type: ignore[union-attr]
    ]
    assert widgets, "the offline agent shows its weather card"
    server.stop()


def test_also_needs_a_path_and_an_app(run_cli: RunCLI) -> None:
    result = run_cli("demo", "--also", "examples.agent.app:app")
    assert result.returncode == 2
    assert "PATH=MODULE:APP" in result.stderr


BROKEN_TARGETS = {
    "inner_import": "import nosuchdependency_xyz\n\nasync def respond(turn):\n    yield None\n",
    "bad_syntax": "async def respond(turn)\n    yield None\n",
    "raises": "raise RuntimeError('DATABASE_URL is not set\\nset it first')\n",
    "asgi": (
        "from starlette.applications import Starlette\n\n"
        "app = Starlette()\n\n"
        "async def raw(scope, receive, send):\n    pass\n"
    ),
    "plain": ("def respond(turn):\n    yield None\n\nclass Assistant:\n    pass\n"),
}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("inner_import:respond", "No module named 'nosuchdependency_xyz'"),
        ("bad_syntax:respond", "syntax error in"),
        ("raises:respond", "RuntimeError: DATABASE_URL is not set set it first"),
        ("asgi:app", "asgi:app is an ASGI app, not a responder"),
        ("asgi:raw", "asgi:raw is an ASGI app, not a responder"),
        ("plain:respond", "make it `async def respond(...)`"),
        ("plain:Assistant", "a class without a respond(turn) method"),
    ],
)
def test_a_bad_target_is_one_line_and_status_2(
    run_cli: RunCLI, tmp_path: Path, target: str, message: str
) -> None:
    for name, source in BROKEN_TARGETS.items():
        (tmp_path / f"{name}.py").write_text(source)
    result = run_cli("serve", target, "--store", "memory://")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chatkit-asgi: error: ")
    assert message in lines[0]


async def test_cors_exposes_the_run_id_header(
    start_cli: Callable[..., CLIServer], app_module: str
) -> None:
    server = start_cli(
        "serve", f"{app_module}:respond", "--store", "memory://", "--cors", "http://localhost:3000"
    )
    response = await fetch(
        "POST",
        server.url + "/chatkit/",
        json={
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": "hi"}],
                    "attachments": [],
                    "inference_options": {},
                }
            },
        },
        headers={"origin": "http://localhost:3000"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-chatkit-run-id"]
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-chatkit-run-id" in exposed


MOUNTED = """
from chatkit_asgi import ChatKitApp
from chatkit_asgi.stores import MemoryStore

from myassistant import respond

closed = []


class Store(MemoryStore):
    async def aclose(self) -> None:
        closed.append(True)
        await super().aclose()


app = ChatKitApp(respond, store=Store())


async def plain(scope, receive, send):  # an ASGI app that knows nothing of lifespan
    assert scope["type"] == "http"
"""


async def test_apps_mounted_with_also_get_their_lifespan(
    tmp_path: Path,
    app_module: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from chatkit_asgi.cli import ServeConfig, build_app

    (tmp_path / "mounted.py").write_text(textwrap.dedent(MOUNTED))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = ServeConfig(
        target=f"{app_module}:respond",
        store="memory://",
        also={"/other": "mounted:app", "/plain": "mounted:plain"},
        app_dir=str(tmp_path),
    )
    host = build_app(config)
    mounted = sys.modules["mounted"]
    async with host.router.lifespan_context(host):
        async with ChatKitTestClient(host, path="/other/") as client:
            events = await client.create_thread("hi")
        assert [e.type for e in events][-1] == "thread.item.done"
        assert mounted.closed == []
    assert mounted.closed == [True]  # its store was closed on shutdown, like ours
    assert "received no lifespan" not in caplog.text
