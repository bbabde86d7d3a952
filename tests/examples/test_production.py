"""`examples/production`, the app of docs/production-guide.md, against real MongoDB and S3.

The guide shows the example's `app.py` and `logging.json` whole; the first test checks
they are the same files, then runs them as a reader would: pasted into an empty folder,
served by uvicorn with two workers and `--log-config`, configured from the environment.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from chatkit_asgi.logs import JSONFormatter
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError, parse_sse, user_input
from chatkit_asgi.types import AssistantMessageItem, ThreadItemDoneEvent
from tests._s3_server import S3Endpoint

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "production"
GUIDE = REPO / "docs" / "production-guide.md"

ALICE = {"authorization": "Bearer secret-token-of-alice"}
BOB = {"authorization": "Bearer secret-token-of-bob"}
CREATE = {"type": "threads.create", "params": {"input": user_input("pineapple secret")}}


def guide_blocks(language: str) -> list[str]:
    text = GUIDE.read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


@pytest.fixture
async def database(mongo_uri: str) -> AsyncIterator[str]:
    """`MONGODB_URL` of a database of this test, dropped afterwards."""
    name = f"production_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{mongo_uri}/{name}"
    finally:
        admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
        await admin.drop_database(name)
        await admin.close()


def service_env(database: str, s3: S3Endpoint, bucket: str) -> dict[str, str]:
    """The example's environment: the services as a deployment would name them."""
    return {
        "MONGODB_URL": database,
        "S3_BUCKET": bucket,
        "AWS_ENDPOINT_URL": s3.url,
        "AWS_REGION": s3.region,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "S3_ADDRESSING_STYLE": "path",
    }


def answer_text(events: list[Any]) -> str:
    done = [e for e in events if isinstance(e, ThreadItemDoneEvent)]
    item = done[-1].item
    assert isinstance(item, AssistantMessageItem)
    return item.content[0].text


# -- the guide, as pasted, under uvicorn -------------------------------------------------


def test_the_guide_shows_the_example_whole() -> None:
    apps = [block for block in guide_blocks("python") if "app = FastAPI(" in block]
    assert apps == [(EXAMPLE / "app.py").read_text()]
    configs = [block for block in guide_blocks("json") if '"version": 1' in block]
    assert configs == [(EXAMPLE / "logging.json").read_text()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], tuple[str, Path]]]:
    """Paste the guide's app.py and logging.json into an empty folder and run uvicorn there."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> tuple[str, Path]:
        (app_py,) = [block for block in guide_blocks("python") if "app = FastAPI(" in block]
        (config,) = [block for block in guide_blocks("json") if '"version": 1' in block]
        (tmp_path / "app.py").write_text(app_py)
        (tmp_path / "logging.json").write_text(config)
        port = free_port()
        log = tmp_path / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port),
                 "--workers", "2", "--log-config", "logging.json",
                 "--timeout-graceful-shutdown", "5"],
                cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )  # fmt: skip
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/livez", timeout=2).status_code == 200:
                    return url, log
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.uvicorn
async def test_the_guide_app_under_uvicorn_with_two_workers(
    serve: Callable[[dict[str, str]], tuple[str, Path]],
    database: str,
    s3_endpoint: S3Endpoint,
    s3_bucket: str,
) -> None:
    url, log = serve(service_env(database, s3_endpoint, s3_bucket))
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        health = await http.get("/chatkit/healthz")
        anonymous = await http.post("/chatkit/", json=CREATE)
        me = await http.get("/api/me", headers=ALICE)
        me_anonymous = await http.get("/api/me")
        upload = await http.post(
            "/chatkit/upload", headers=ALICE, files={"file": ("a.txt", b"abc", "text/plain")}
        )
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "checks": {"store": "ok", "attachment_store": "ok"}}
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert me.json() == {"id": "u-alice", "name": "Alice"}
    assert me_anonymous.status_code == 401
    assert upload.status_code == 200, upload.text
    listing = s3_endpoint.boto3_client().list_objects_v2(Bucket=s3_bucket)
    keys = [entry["Key"] for entry in listing["Contents"]]
    assert f"chatkit/u-alice/{upload.json()['id']}" in keys  # the bytes went to S3

    async with ChatKitTestClient(base_url=url + "/chatkit/", headers=ALICE) as alice:
        events = await alice.create_thread("hi", attachments=[upload.json()["id"]])
        assert answer_text(events) == "Hello Alice, you said: hi"
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        threads = await alice.list_threads()
    assert [t.id for t in threads.data] == [thread_id]
    async with ChatKitTestClient(base_url=url + "/chatkit/", headers=BOB) as bob:
        with pytest.raises(ProtocolHTTPError) as hidden:
            await bob.get_thread(thread_id)
    assert hidden.value.status == 404  # per-user threads

    output = log.read_text()
    records = [json.loads(line) for line in output.splitlines()]  # every line is JSON
    started = {r["message"] for r in records if r["message"].startswith("Started server process")}
    assert len(started) == 2, output  # two workers
    turns = [r for r in records if r.get("kind") == "turn"]
    assert [t["outcome"] for t in turns] == ["completed"]
    assert any(r["logger"] == "uvicorn.access" for r in records)
    assert "pineapple" not in output and "you said" not in output  # no message contents


# -- the example in process: limits, logs, CORS -----------------------------------------


@pytest.fixture
def load_example(
    monkeypatch: pytest.MonkeyPatch, database: str, s3_endpoint: S3Endpoint, s3_bucket: str
) -> Iterator[Callable[[], ModuleType]]:
    """Imports the example afresh (one import is one worker's app), logging as JSON."""
    for name, value in service_env(database, s3_endpoint, s3_bucket).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    # Five turns at once, then one per 100 minutes: no refill while a test runs.
    monkeypatch.setenv("CHATKIT_TURNS_PER_MINUTE", "0.01")
    monkeypatch.setenv("CHATKIT_TURN_BURST", "5")

    def load() -> ModuleType:
        monkeypatch.delitem(sys.modules, "examples.production.app", raising=False)
        return importlib.import_module("examples.production.app")

    try:
        yield load
    finally:
        sys.modules.pop("examples.production.app", None)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The `chatkit_asgi` logger at INFO through the package's JSONFormatter."""
    library = logging.getLogger("chatkit_asgi")
    saved = (library.level, library.propagate)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False
    try:
        yield stream
    finally:
        library.removeHandler(handler)
        library.setLevel(saved[0])
        library.propagate = saved[1]


def client_of(example: ModuleType) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=example.app)
    return httpx.AsyncClient(transport=transport, base_url="http://api.example.com")


def created(response: httpx.Response) -> bool:
    assert response.status_code == 200, response.text
    return any(e["type"] == "thread.created" for e in parse_sse(response.content))


async def test_the_example_limits_logs_and_exposes_the_run_id(
    load_example: Callable[[], ModuleType], json_logs: io.StringIO
) -> None:
    example = load_example()
    try:
        async with client_of(example) as client:
            anonymous = await client.post("/chatkit/", json=CREATE)
            alice = [await client.post("/chatkit/", json=CREATE, headers=ALICE) for _ in range(6)]
            bob = await client.post("/chatkit/", json=CREATE, headers=BOB)
            live = await client.get("/livez")
            browser = await client.post(
                "/chatkit/", json=CREATE, headers={**BOB, "origin": "http://localhost:5173"}
            )
    finally:
        await example.chatkit.aclose()

    assert anonymous.status_code == 401
    assert [created(r) for r in alice] == [True] * 5 + [False]  # a burst of 5
    assert parse_sse(alice[-1].content)[0]["type"] == "error"
    assert created(bob)
    assert live.json() == {"status": "ok"}
    assert browser.headers["access-control-expose-headers"] == "X-ChatKit-Run-Id"

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    turns = [line for line in lines if line.get("kind") == "turn"]
    assert {t["run_id"] for t in turns} >= {r.headers["x-chatkit-run-id"] for r in alice}
    assert [t["outcome"] for t in turns].count("refused") == 1
    assert all("pineapple" not in json.dumps(line) for line in lines)  # no message contents


async def test_every_worker_draws_from_the_same_limit(
    load_example: Callable[[], ModuleType],
) -> None:
    workers = [load_example(), load_example()]  # two processes' worth of app
    try:
        answers = []
        for n in range(6):
            async with client_of(workers[n % 2]) as client:
                answers.append(await client.post("/chatkit/", json=CREATE, headers=ALICE))
    finally:
        for worker in workers:
            await worker.chatkit.aclose()
    assert [created(r) for r in answers] == [True] * 5 + [False]


async def test_readiness_reflects_a_mongodb_outage_liveness_does_not(
    monkeypatch: pytest.MonkeyPatch, load_example: Callable[[], ModuleType]
) -> None:
    # Nothing listens on this port: MongoDB is down.
    monkeypatch.setenv("MONGODB_URL", f"mongodb://127.0.0.1:{free_port()}/chatkit")
    example = load_example()
    try:
        async with client_of(example) as client:
            ready = await client.get("/chatkit/healthz")
            live = await client.get("/livez")
    finally:
        await example.chatkit.aclose()
    assert ready.status_code == 503 and "retry-after" in ready.headers
    assert ready.json()["checks"]["store"] in ("unavailable", "timeout")
    assert ready.json()["checks"]["attachment_store"] == "ok"
    assert live.status_code == 200
