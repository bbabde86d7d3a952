"""The admission hook: asked before every turn and every non-streaming request.

Allowed requests are answered as usual; a refused turn streams only the refusal;
a refused non-streaming request answers 429 with `Retry-After`.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from chatkit_asgi import Refusal
from chatkit_asgi.admission import REQUEST_TYPES, combine
from chatkit_asgi.testing import ChatKitTestClient, parse_sse, user_input
from chatkit_asgi.types import ThreadMetadata

from .conftest import ALICE, JSON_TYPES, STREAMING_TYPES, World


class Gate:
    """An admission hook that records what it was asked and answers `refusal`."""

    def __init__(self, refusal: Refusal | None = None) -> None:
        self.refusal = refusal
        self.asked: list[tuple[Any, str, str | None]] = []

    async def __call__(
        self, context: Any, request_type: str, thread: ThreadMetadata | None
    ) -> Refusal | None:
        self.asked.append((context, request_type, thread.id if thread is not None else None))
        return self.refusal


@pytest.mark.parametrize("request_type", STREAMING_TYPES + JSON_TYPES)
async def test_an_admitted_request_is_answered_as_usual(world: World, request_type: str) -> None:
    gate = Gate()
    body, thread_id = await world.request(request_type)
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post(body)

    assert response.status_code == 200, response.text
    assert gate.asked == [(ALICE, request_type, thread_id)]
    if request_type in STREAMING_TYPES:
        types = [event["type"] for event in parse_sse(response.content)]
        assert "stream_options" in types
        assert "error" not in types


@pytest.mark.parametrize("request_type", STREAMING_TYPES)
async def test_a_refused_turn_streams_only_the_refusal(world: World, request_type: str) -> None:
    gate = Gate(Refusal("Slow down, please.", retry_after=3))
    body, thread_id = await world.request(request_type)
    before = await world.snapshot()
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post(body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-chatkit-run-id"].startswith("run_")
    assert parse_sse(response.content) == [
        {"type": "error", "code": "custom", "message": "Slow down, please.", "allow_retry": False}
    ]
    assert gate.asked == [(ALICE, request_type, thread_id)]
    assert world.responder.calls == []  # the responder never ran
    assert await world.snapshot() == before  # and nothing was stored


@pytest.mark.parametrize("request_type", JSON_TYPES)
async def test_a_refused_request_answers_429_with_retry_after(
    world: World, request_type: str
) -> None:
    gate = Gate(Refusal("Slow down, please.", retry_after=2.2))
    body, thread_id = await world.request(request_type)
    before = await world.snapshot()
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post(body)

    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"  # whole seconds, rounded up
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "code": "rate_limited",
            "message": "Slow down, please.",
            "details": [{"retry_after": 2.2}],
        },
        "message": "Slow down, please.",
    }
    assert gate.asked == [(ALICE, request_type, thread_id)]
    assert world.responder.calls == []
    assert await world.snapshot() == before


async def test_a_refusal_can_be_a_notice(world: World) -> None:
    gate = Gate(Refusal("Daily quota reached.", level="notice", title="Quota"))
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        events = await client.create_thread("hello")

    assert [event.model_dump(exclude_none=True) for event in events] == [
        {"type": "notice", "level": "warning", "message": "Daily quota reached.", "title": "Quota"}
    ]


async def test_a_refusal_without_retry_after_has_no_header_and_its_own_code(world: World) -> None:
    gate = Gate(Refusal("This month's quota is used up.", code="quota_exceeded"))
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post({"type": "threads.list", "params": {}})

    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.json()["error"]["code"] == "quota_exceeded"


async def test_a_refused_turn_does_not_wait_for_the_turn(world: World) -> None:
    """The hook runs before the thread's turn is taken: a refusal is immediate even
    while another reply holds the thread."""
    release = anyio.Event()
    started = anyio.Event()
    refuse = False

    class Slow:
        async def respond(self, turn: Any) -> Any:
            started.set()
            await release.wait()
            return
            yield

    async def admit(context: Any, request_type: str, thread: ThreadMetadata | None) -> Any:
        return Refusal("Busy", retry_after=1) if refuse else None

    world.responder = Slow()  # type: ignore[assignment]
    body, _ = await world.request("threads.add_user_message")
    app = world.app(admission=admit, turn_wait=30.0)
    async with ChatKitTestClient(app) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.post, body)
        await started.wait()
        refuse = True
        with anyio.fail_after(10):  # would wait up to turn_wait (30 s) for the turn, then 409
            response = await client.post(body)
        release.set()

    assert response.status_code == 200
    assert parse_sse(response.content)[0]["message"] == "Busy"


async def test_a_failing_hook_fails_the_request_with_500(world: World) -> None:
    async def admit(context: Any, request_type: str, thread: ThreadMetadata | None) -> Any:
        raise RuntimeError("quota service down")

    async with ChatKitTestClient(world.app(admission=admit)) as client:
        streaming = await client.post(
            {"type": "threads.create", "params": {"input": user_input("hi")}}
        )
        listing = await client.post({"type": "threads.list", "params": {}})

    assert streaming.status_code == listing.status_code == 500
    assert streaming.json()["error"]["code"] == "internal_error"
    assert world.responder.calls == []


async def test_a_request_for_a_missing_thread_is_404_before_the_hook(world: World) -> None:
    gate = Gate(Refusal("no"))
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post(
            {"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}}
        )

    assert response.status_code == 404
    assert gate.asked == []


async def test_combine_returns_the_first_refusal(world: World) -> None:
    first, second, third = Gate(), Gate(Refusal("second says no")), Gate(Refusal("third"))
    async with ChatKitTestClient(world.app(admission=combine(first, second, third))) as client:
        response = await client.post({"type": "threads.list", "params": {}})

    assert response.json()["error"]["message"] == "second says no"
    assert len(first.asked) == len(second.asked) == 1
    assert third.asked == []


# -- hooks that name their request types ------------------------------------------------


class TurnGate(Gate):
    """A `Gate` that says it decides turns only."""

    request_types = frozenset(STREAMING_TYPES)


@pytest.mark.parametrize("request_type", STREAMING_TYPES + JSON_TYPES)
async def test_a_hook_is_asked_only_about_the_request_types_it_names(
    world: World, request_type: str
) -> None:
    gate = TurnGate(Refusal("turns are closed"))
    body, thread_id = await world.request(request_type)
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post(body)

    if request_type in STREAMING_TYPES:
        assert gate.asked == [(ALICE, request_type, thread_id)]
        assert parse_sse(response.content)[0]["message"] == "turns are closed"
    else:
        assert gate.asked == []  # not even awaited
        assert response.status_code == 200, response.text


async def test_a_request_type_the_hook_does_not_name_still_needs_its_thread(world: World) -> None:
    gate = TurnGate()
    async with ChatKitTestClient(world.app(admission=gate)) as client:
        response = await client.post(
            {"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}}
        )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "thread_not_found"


async def test_combine_asks_each_hook_about_its_own_request_types(world: World) -> None:
    turns, everything = TurnGate(), Gate(Refusal("everything says no"))
    lists = Gate(Refusal("lists say no"))
    lists.request_types = {"threads.list"}  # type: ignore[attr-defined]
    combined = combine(turns, lists, everything)
    async with ChatKitTestClient(world.app(admission=combined)) as client:
        listed = await client.post({"type": "threads.list", "params": {}})
        created = await client.post(
            {"type": "threads.create", "params": {"input": user_input("hi")}}
        )

    assert listed.json()["error"]["message"] == "lists say no"
    assert parse_sse(created.content)[0]["message"] == "everything says no"
    assert [asked[1] for asked in turns.asked] == ["threads.create"]
    assert [asked[1] for asked in lists.asked] == ["threads.list"]
    assert [asked[1] for asked in everything.asked] == ["threads.create"]  # lists refused first


def test_combine_names_the_request_types_of_its_hooks() -> None:
    lists = Gate()
    lists.request_types = ["threads.list", "no.such.type"]  # type: ignore[attr-defined]
    assert combine(TurnGate(), lists).request_types == {  # type: ignore[attr-defined]
        *STREAMING_TYPES,
        "threads.list",
    }
    assert combine(TurnGate(), Gate()).request_types == REQUEST_TYPES  # type: ignore[attr-defined]
