"""`chatkit_asgi.logs.JSONFormatter`: one parsable JSON object per line, whatever is logged."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.logs import JSONFormatter
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
)

from .conftest import free_port


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own, writing through a JSONFormatter into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"tests.logs.{time.monotonic_ns()}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # one object per line


def test_standard_fields_and_extras(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    before = datetime.now(timezone.utc)
    logger.warning("user %s said %r", "ada", "hi", extra={"run_id": "run_1", "events": 3})
    [line] = lines(stream)

    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["level"] == "WARNING"
    assert line["logger"] == logger.name
    assert line["message"] == "user ada said 'hi'"
    assert (line["run_id"], line["events"]) == ("run_1", 3)
    assert line["time"].endswith("Z")
    when = datetime.fromisoformat(line["time"].replace("Z", "+00:00"))
    assert when.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= when <= datetime.now(timezone.utc)
    assert "exc_info" not in line and "args" not in line and "msg" not in line


def test_an_exception_is_one_string_field(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("it failed", extra={"thread_id": "thr_1"})
    logger.info("here", stack_info=True)
    failed, stacked = lines(stream)  # the traceback's newlines stay inside the string

    assert failed["level"] == "ERROR" and failed["thread_id"] == "thr_1"
    assert isinstance(failed["exc_info"], str)
    assert failed["exc_info"].startswith("Traceback (most recent call last):")
    assert failed["exc_info"].endswith("ValueError: boom\nsecond line")
    assert "test_an_exception_is_one_string_field" in stacked["stack_info"]


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_values_json_cannot_write_do_not_lose_the_record(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    moment = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
    logger.info(
        "odd values",
        extra={
            "when": moment,
            "tags": {"a"},
            "pair": (1, 2),
            "path": Path("/tmp/x"),
            "obj": Unprintable(),
            "loop": loop,
            "keys": {(1, 2): "tuple key"},
            "time": "an extra named like a standard field",
            "text": "café",
        },
    )
    [line] = lines(stream)

    assert line["message"] == "odd values"
    assert line["when"] == "2026-01-31T12:00:00+00:00"
    assert line["tags"] == ["a"] and line["pair"] == [1, 2]
    assert line["path"] == "/tmp/x"
    assert line["obj"] == "<unprintable Unprintable>"
    assert isinstance(line["loop"], str) and "loop" in line["loop"]
    assert line["keys"] == "{(1, 2): 'tuple key'}"
    assert line["time_"] == "an extra named like a standard field"
    assert line["time"].endswith("Z")
    assert line["text"] == "café"
    assert stream.getvalue().isascii()


def test_built_by_dict_config_with_static_fields(capsys: pytest.CaptureFixture[str]) -> None:
    name = f"tests.logs.dictconfig.{time.monotonic_ns()}"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "factory": {"()": "chatkit_asgi.logs.JSONFormatter", "static": {"service": "chat"}},
                "by_class": {"class": "chatkit_asgi.logs.JSONFormatter", "format": "%(message)s"},
            },
            "handlers": {
                "one": {"class": "logging.StreamHandler", "formatter": "factory",
                        "stream": "ext://sys.stdout"},
                "two": {"class": "logging.StreamHandler", "formatter": "by_class",
                        "stream": "ext://sys.stdout"},
            },
            "loggers": {name: {"handlers": ["one", "two"], "level": "INFO", "propagate": False}},
        }
    )  # fmt: skip
    logger = logging.getLogger(name)
    try:
        logger.info("configured", extra={"kind": "request"})
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["service"] == "chat" and "service" not in second
    for line in (first, second):
        assert (line["message"], line["kind"], line["level"]) == ("configured", "request", "INFO")


async def respond(turn: Turn[Any]) -> Any:
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="hello")],
        )
    )


async def test_the_library_records_become_documents() -> None:
    library = logging.getLogger("chatkit_asgi")
    saved = (library.level, library.propagate)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False
    app = ChatKitApp(respond, store=MemoryStore(), tenant=lambda ctx: "alice")
    try:
        async with ChatKitTestClient(app) as client:
            response = await client.post(
                {"type": "threads.create",
                 "params": {"input": {"content": [{"type": "input_text", "text": "secret"}]}}}
            )  # fmt: skip
        await app.aclose()
    finally:
        library.removeHandler(handler)
        library.setLevel(saved[0])
        library.propagate = saved[1]
    records = lines(stream)
    run_id = response.headers["x-chatkit-run-id"]
    by_kind = {record.get("kind"): record for record in records}
    request, turn = by_kind["request"], by_kind["turn"]
    assert (request["status"], request["outcome"], request["run_id"]) == (200, "completed", run_id)
    assert request["request_type"] == "threads.create" and request["path"] == "/"
    assert (turn["outcome"], turn["run_id"], turn["client_disconnected"]) == (
        "completed",
        run_id,
        False,
    )
    assert turn["thread_id"].startswith("thr_") and len(turn["tenant_hash"]) == 16
    assert isinstance(turn["duration_ms"], float) and turn["events"] >= 2
    assert all(record["logger"] == "chatkit_asgi" for record in records)
    assert "secret" not in stream.getvalue()


@pytest.mark.uvicorn
def test_uvicorn_log_config(tmp_path: Path) -> None:
    """`uvicorn --log-config logging.json`: uvicorn's own lines and ours, all JSON."""
    (tmp_path / "logging.json").write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"json": {"()": "chatkit_asgi.logs.JSONFormatter"}},
                "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
                "root": {"handlers": ["stderr"], "level": "INFO"},
            }
        )
    )
    (tmp_path / "tiny.py").write_text(
        textwrap.dedent(
            """
            from chatkit_asgi import ChatKitApp
            from chatkit_asgi.stores import MemoryStore

            async def respond(turn):
                return
                yield

            app = ChatKitApp(respond, store=MemoryStore(), health=True)
            """
        )
    )
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tiny:app", "--port", str(port),
             "--log-config", "logging.json"],
            cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert health.status_code == 200
        answer = httpx.post(
            f"http://127.0.0.1:{port}/", json={"type": "threads.list", "params": {}}
        )
        assert answer.status_code == 200
    finally:
        server.send_signal(2)
        server.wait(timeout=15)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    loggers = {record["logger"] for record in records}
    assert {"uvicorn.error", "uvicorn.access", "chatkit_asgi"} <= loggers
    access = [record for record in records if record["logger"] == "uvicorn.access"]
    assert any('"GET /healthz HTTP/1.1" 200' in record["message"] for record in access)
    ours = [record for record in records if record.get("kind") == "request"]
    assert ours[-1]["request_type"] == "threads.list" and ours[-1]["status"] == 200
    assert all("color_message" not in record for record in records)
