"""Structured logs: one record per request and per turn on the `chatkit_asgi` logger."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest

from chatkit_asgi import ChatKitApp, Refusal, Turn
from chatkit_asgi.observability import tenant_hash
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse, user_input
from chatkit_asgi.types import ErrorEvent, ThreadMetadata

from ..streaming._support import ScriptedClient, http_scope, request_body
from .conftest import World, assistant, by_user

FIELDS = (
    "kind",
    "request_type",
    "outcome",
    "error_code",
    "duration_ms",
    "run_id",
    "thread_id",
    "tenant_hash",
    "events",
    "bytes",
)
SECRET = "my password is hunter2"
CREATE = {"type": "threads.create", "params": {"input": user_input("hello")}}


def records(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "kind", None) == kind]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record, which must survive a JSON round trip."""
    extra = {
        key: value
        for key, value in vars(record).items()
        if key not in logging.makeLogRecord({}).__dict__ and key != "message"
    }
    assert json.loads(json.dumps(extra)) == extra
    return extra


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="chatkit_asgi")
    return caplog


async def test_a_turn_logs_one_request_record_and_one_turn_record(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    async with ChatKitTestClient(world.app(tenant=by_user)) as client:
        response = await client.post(
            {"type": "threads.create", "params": {"input": user_input(SECRET)}}
        )
    events = parse_sse(response.content)
    run_id = response.headers["x-chatkit-run-id"]
    thread_id = events[0]["thread"]["id"]

    [request] = records(logs, "request")
    [turn] = records(logs, "turn")
    assert request.name == turn.name == "chatkit_asgi"
    assert request.levelno == turn.levelno == logging.INFO
    request_fields, turn_fields = fields(request), fields(turn)
    assert request_fields == {
        "kind": "request",
        "request_type": "threads.create",
        "path": "/",
        "status": 200,
        "outcome": "completed",
        "error_code": None,
        "duration_ms": request_fields["duration_ms"],
        "run_id": run_id,
        "thread_id": thread_id,
        "tenant_hash": tenant_hash("alice"),
        "events": len(events),
        "bytes": len(response.content),
    }
    assert turn_fields == {
        "kind": "turn",
        "request_type": "threads.create",
        "outcome": "completed",
        "error_code": None,
        "duration_ms": turn_fields["duration_ms"],
        "run_id": run_id,
        "thread_id": thread_id,
        "tenant_hash": tenant_hash("alice"),
        "events": len(events),
        "bytes": len(response.content),
        "time_to_first_event_ms": turn_fields["time_to_first_event_ms"],
        "disconnect_policy": "cancel",
        "client_disconnected": False,
    }
    assert 0 < turn_fields["time_to_first_event_ms"] <= request_fields["duration_ms"]
    assert run_id in turn.getMessage()
    # Never the message: not in the text, not in the fields.
    for record in logs.records:
        assert "hunter2" not in record.getMessage()
        assert "hunter2" not in json.dumps(fields(record), default=str)


async def test_message_contents_are_logged_only_when_asked(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    async with ChatKitTestClient(world.app(log_content=True)) as client:
        await client.create_thread(SECRET)

    [request] = records(logs, "request")
    [turn] = records(logs, "turn")
    assert fields(request)["input_text"] == SECRET
    assert fields(turn)["output_text"] == f"Echo: {SECRET}"


async def test_non_streaming_requests_log_their_status_and_error_code(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    async with ChatKitTestClient(world.app()) as client:
        await client.post({"type": "threads.list", "params": {}})
        await client.post({"type": "items.list", "params": {"thread_id": "thr_missing"}})
        await client.post(b"{not json")

    ok, missing, broken = (fields(r) for r in records(logs, "request"))
    assert (ok["request_type"], ok["status"], ok["outcome"]) == ("threads.list", 200, "ok")
    assert ok["events"] is None and ok["run_id"] is None
    assert (missing["status"], missing["outcome"], missing["error_code"]) == (
        404,
        "refused",
        "thread_not_found",
    )
    assert missing["thread_id"] == "thr_missing"
    assert (broken["request_type"], broken["status"], broken["error_code"]) == (
        None,
        400,
        "invalid_json",
    )
    assert records(logs, "turn") == []


async def test_turn_outcomes_error_and_refused(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    class Failing:
        async def respond(self, turn: Turn[Any]) -> Any:
            raise RuntimeError("boom")
            yield

    refuse = False

    async def admit(context: Any, request_type: str, thread: ThreadMetadata | None) -> Any:
        return Refusal("later", retry_after=5) if refuse else None

    world.responder = Failing()  # type: ignore[assignment]
    async with ChatKitTestClient(world.app(admission=admit)) as client:
        await client.create_thread("hello")
        refuse = True
        await client.create_thread("hello")

    failed, refused = (fields(r) for r in records(logs, "turn"))
    assert (failed["outcome"], failed["error_code"]) == ("error", "stream.error")
    assert (refused["outcome"], refused["error_code"]) == ("refused", "rate_limited")
    assert refused["time_to_first_event_ms"] is None


@pytest.mark.parametrize("how", ["raises", "yields an error event"])
async def test_an_error_after_the_answer_began_is_the_turns_outcome(
    world: World, logs: pytest.LogCaptureFixture, how: str
) -> None:
    # Events are looked at closely only until the responder's first one; errors always.
    class FailingLate:
        async def respond(self, turn: Turn[Any]) -> Any:
            yield assistant(turn, "a first answer")
            yield assistant(turn, "a second answer")
            if how == "raises":
                raise RuntimeError("boom")
            yield ErrorEvent(code="custom", message="the model went away")

    world.responder = FailingLate()  # type: ignore[assignment]
    async with ChatKitTestClient(world.app()) as client:
        response = await client.post(
            {"type": "threads.create", "params": {"input": user_input("hello")}}
        )

    [turn] = records(logs, "turn")
    code = "stream.error" if how == "raises" else "custom"
    assert (fields(turn)["outcome"], fields(turn)["error_code"]) == ("error", code)
    assert parse_sse(response.content)[-1]["type"] == "error"


async def test_an_action_on_an_item_that_is_not_a_widget_is_an_error_turn(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    # The engine answers it with an error event of its own, outside the reply pipeline.
    async with ChatKitTestClient(world.app()) as client:
        created = parse_sse((await client.post(CREATE)).content)
        thread_id = created[0]["thread"]["id"]
        [message_id] = [e["item"]["id"] for e in created if e["type"] == "thread.item.done"][:1]
        response = await client.post(
            {
                "type": "threads.custom_action",
                "params": {"thread_id": thread_id, "item_id": message_id, "action": {"type": "x"}},
            }
        )

    assert parse_sse(response.content)[-1]["type"] == "error"
    action = fields(records(logs, "turn")[-1])
    assert (action["request_type"], action["outcome"]) == ("threads.custom_action", "error")
    assert action["error_code"] == "stream.error"
    assert action["time_to_first_event_ms"] is None  # the responder never ran


async def test_a_failure_outside_the_responder_is_an_error_turn(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    class UserMessagesFail(MemoryStore[Any]):
        async def add_thread_item(self, thread_id: str, item: Any, context: Any) -> None:
            if item.type == "user_message":
                raise RuntimeError("disk full")
            await super().add_thread_item(thread_id, item, context)

    app = ChatKitApp(world.responder, store=UserMessagesFail())
    async with ChatKitTestClient(app) as client:
        response = await client.post(CREATE)

    assert parse_sse(response.content)[-1]["type"] == "error"
    [turn] = records(logs, "turn")
    assert (fields(turn)["outcome"], fields(turn)["error_code"]) == ("error", "stream.error")


@pytest.mark.parametrize(
    ("accept", "count"),
    [
        ("application/x-ndjson", lambda body: len(body.splitlines())),
        ("application/json", lambda body: len(json.loads(body))),
    ],
)
async def test_events_and_bytes_are_counted_in_every_framing(
    world: World, logs: pytest.LogCaptureFixture, accept: str, count: Any
) -> None:
    async with ChatKitTestClient(world.app()) as client:
        response = await client.post(
            {"type": "threads.create", "params": {"input": user_input("hello")}},
            headers={"accept": accept},
        )

    assert response.headers["content-type"].startswith(accept)
    [turn] = records(logs, "turn")
    assert fields(turn)["events"] == count(response.content) > 3
    assert fields(turn)["bytes"] == len(response.content)


async def test_records_come_from_the_record_factory(
    world: World, logs: pytest.LogCaptureFixture
) -> None:
    # What a factory adds (OpenTelemetry's logging instrumentation adds trace ids this
    # way) is on the library's records too.
    default = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = default(*args, **kwargs)
        record.trace_marker = "from the factory"
        return record

    logging.setLogRecordFactory(factory)
    try:
        async with ChatKitTestClient(world.app()) as client:
            await client.create_thread("hello")
    finally:
        logging.setLogRecordFactory(default)

    mine = records(logs, "request") + records(logs, "turn")
    assert len(mine) == 2
    for record in mine:
        assert vars(record)["trace_marker"] == "from the factory"
        assert record.pathname.endswith("observability.py")
        assert record.getMessage().startswith(("request threads.create", "turn "))


async def test_a_failed_request_is_logged_at_warning_when_info_is_off(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(MemoryStore[Any]):
        async def load_threads(self, *args: Any) -> Any:
            raise RuntimeError("a bug in the store")

    caplog.set_level(logging.WARNING, logger="chatkit_asgi")
    app = ChatKitApp(world.responder, store=Broken(), telemetry=True)  # telemetry: a record
    async with ChatKitTestClient(app) as client:
        response = await client.post({"type": "threads.list", "params": {}})

    assert response.status_code == 500
    [request] = records(caplog, "request")
    assert request.levelno == logging.WARNING
    assert (fields(request)["status"], fields(request)["error_code"]) == (500, "internal_error")


@pytest.mark.parametrize(
    ("disconnect", "outcome"), [("cancel", "cancelled"), ("continue", "detached")]
)
async def test_a_client_that_leaves_is_logged_with_the_policy_applied(
    logs: pytest.LogCaptureFixture, disconnect: Any, outcome: str
) -> None:
    started, release = anyio.Event(), anyio.Event()

    async def respond(turn: Turn[Any]) -> Any:
        started.set()
        await release.wait()
        yield assistant(turn, "late")

    app = ChatKitApp(respond, store=MemoryStore(), disconnect=disconnect)
    client = ScriptedClient(request_body("threads.create", input=user_input("hi")))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(app, http_scope(), client.receive, client.send)
            await started.wait()
            client.disconnect()
            await anyio.wait_all_tasks_blocked()  # the app has seen the disconnect
            release.set()

    [turn] = (fields(r) for r in records(logs, "turn"))
    assert turn["outcome"] == outcome
    assert turn["disconnect_policy"] == disconnect
    assert turn["client_disconnected"] is True


async def test_no_record_is_made_when_info_is_off(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chatkit_asgi")
    app = world.app()
    assert app.observer.begin({"type": "http", "path": "/"}) is None
    async with ChatKitTestClient(app) as client:
        await client.create_thread("hello")
    assert records(caplog, "request") == records(caplog, "turn") == []


def test_log_level_from_the_environment_shows_the_records() -> None:
    script = textwrap.dedent(
        """
        import asyncio
        import httpx
        from chatkit_asgi import ChatKitApp
        from chatkit_asgi.stores import MemoryStore

        async def respond(turn):
            return
            yield

        async def main():
            app = ChatKitApp(respond, store=MemoryStore())
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await client.post("/", json={"type": "threads.list", "params": {}})

        asyncio.run(main())
        """
    )

    def run(level: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
        if level is not None:
            env["LOG_LEVEL"] = level
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=env,
        )
        return result.stderr

    assert "request threads.list / -> 200 ok" in run("INFO")
    assert "request threads.list" not in run("WARNING")
    assert "request threads.list" not in run(None)
