"""The protocol package driven directly, without HTTP: parse, prepare, run into a list."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chatkit_asgi import ConflictError, InvalidRequestError, Refusal, ResourceNotFoundError
from chatkit_asgi._reply import JSONResult, ReplyStats, StreamPlan
from chatkit_asgi.protocol import HANDLERS, Engine
from chatkit_asgi.protocol.parse import REQUEST_MODELS
from chatkit_asgi.protocol.registry import Handlers, merge
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import user_input
from chatkit_asgi.types import (
    AssistantMessageItem,
    ChatKitReq,
    ThreadsCreateReq,
    ThreadsGetByIdReq,
    ThreadStreamEvent,
)
from tests._echo import echo

CONTEXT: dict[str, Any] = {}


def request(kind: str, **params: Any) -> ChatKitReq:
    return Engine.parse(json.dumps({"type": kind, "params": params}).encode())


async def run(plan: StreamPlan, stats: ReplyStats | None = None) -> list[ThreadStreamEvent]:
    events: list[ThreadStreamEvent] = []

    async def emit(event: ThreadStreamEvent) -> None:
        events.append(event)

    await plan.run(emit, stats)
    return events


async def create_thread(engine: Engine, text: str = "hi") -> tuple[str, list[ThreadStreamEvent]]:
    plan = await engine.prepare(request("threads.create", input=user_input(text)), CONTEXT)
    assert isinstance(plan, StreamPlan)
    events = await run(plan)
    thread_id = plan.thread_id
    assert thread_id is not None
    return thread_id, events


async def test_threads_create_is_a_plan_whose_events_are_stored() -> None:
    store = MemoryStore()
    engine = Engine(echo, store)
    thread_id, events = await create_thread(engine)
    assert [event.type for event in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    stored = await store.load_thread_items(thread_id, None, 10, "asc", CONTEXT)
    assert [item.type for item in stored.data] == ["user_message", "assistant_message"]
    answer = stored.data[1]
    assert isinstance(answer, AssistantMessageItem)
    assert answer.content[0].text == "echo: hi"


async def test_reply_statistics_are_passed_to_the_run() -> None:
    engine = Engine(echo, MemoryStore())
    plan = await engine.prepare(request("threads.create", input=user_input("hi")), CONTEXT)
    assert isinstance(plan, StreamPlan)
    stats = ReplyStats(time.perf_counter(), collect_text=True)
    await run(plan, stats)
    assert stats.first_event is not None
    assert stats.output == ["echo: hi"]
    assert stats.error_code is None


async def test_threads_get_by_id_is_a_json_answer() -> None:
    engine = Engine(echo, MemoryStore())
    thread_id, _ = await create_thread(engine, "hello")
    result = await engine.prepare(request("threads.get_by_id", thread_id=thread_id), CONTEXT)
    assert isinstance(result, JSONResult)
    thread = json.loads(result.body)
    assert thread["id"] == thread_id
    assert [item["type"] for item in thread["items"]["data"]] == [
        "user_message",
        "assistant_message",
    ]


async def test_a_missing_thread_is_a_protocol_error() -> None:
    engine = Engine(echo, MemoryStore())
    with pytest.raises(ResourceNotFoundError) as raised:
        await engine.prepare(request("threads.get_by_id", thread_id="thr_missing"), CONTEXT)
    assert raised.value.code == "thread_not_found"


async def test_a_plan_holds_the_threads_turn_until_it_has_run() -> None:
    engine = Engine(echo, MemoryStore(), turn_wait=0.05)
    thread_id, _ = await create_thread(engine)
    add = request("threads.add_user_message", thread_id=thread_id, input=user_input("again"))
    first = await engine.prepare(add, CONTEXT)
    assert isinstance(first, StreamPlan)
    with pytest.raises(ConflictError) as busy:
        await engine.prepare(add, CONTEXT)
    assert busy.value.code == "thread_busy"
    await run(first)
    second = await engine.prepare(add, CONTEXT)  # the turn is free again
    assert isinstance(second, StreamPlan)
    await second.release()


async def test_a_refused_validation_gives_the_turn_back() -> None:
    engine = Engine(echo, MemoryStore(), turn_wait=0.05)
    thread_id, _ = await create_thread(engine)
    retry = request("threads.retry_after_item", thread_id=thread_id, item_id="msg_missing")
    with pytest.raises(ResourceNotFoundError) as missing:
        await engine.prepare(retry, CONTEXT)
    assert missing.value.code == "item_not_found"
    add = request("threads.add_user_message", thread_id=thread_id, input=user_input("next"))
    plan = await engine.prepare(add, CONTEXT)  # not 409: the failed request let go
    assert isinstance(plan, StreamPlan)
    await plan.release()


async def test_an_admission_refusal_is_an_event_on_a_stream() -> None:
    async def refuse(context: Any, request_type: str, thread: Any) -> Refusal:
        return Refusal("not now")

    engine = Engine(echo, MemoryStore(), admission=refuse)
    plan = await engine.prepare(request("threads.create", input=user_input("hi")), CONTEXT)
    assert isinstance(plan, StreamPlan)
    assert plan.refusal is not None
    events = await run(plan)
    assert [event.type for event in events] == ["error"]


def test_every_request_model_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(REQUEST_MODELS)
    assert len(REQUEST_MODELS) == len(set(REQUEST_MODELS)) == 16
    assert len(set(HANDLERS.values())) == len(HANDLERS)  # no function answers two types


def test_the_registry_refuses_a_missing_or_duplicate_handler() -> None:
    async def answer(services: Any, request: Any, call: Any) -> JSONResult:
        return JSONResult(b"{}")

    one, other = Handlers(), Handlers()
    one.on(ThreadsGetByIdReq)(answer)
    other.on(ThreadsGetByIdReq)(answer)
    with pytest.raises(TypeError, match="two handlers"):
        merge([one, other], [ThreadsGetByIdReq])
    with pytest.raises(TypeError, match="missing"):
        merge([one], [ThreadsGetByIdReq, ThreadsCreateReq])
    with pytest.raises(TypeError, match="two handlers"):
        one.on(ThreadsGetByIdReq)(answer)


def test_parse_refuses_ambiguous_json() -> None:
    body = b'{"type": "threads.list", "type": "threads.delete", "params": {}}'
    with pytest.raises(InvalidRequestError) as raised:
        Engine.parse(body)
    assert raised.value.code == "invalid_json"
