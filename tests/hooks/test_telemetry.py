"""OpenTelemetry: spans per request, per turn and per store call; metrics; nothing when off.

Spans and metrics are captured with the SDK's in-memory exporter and reader
(`otel` fixture) and asserted by name and attribute.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Mount

from chatkit_asgi import ChatKitApp, Refusal, StreamError, Turn
from chatkit_asgi.observability import tenant_hash
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.telemetry import Telemetry, TracedStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse, user_input
from chatkit_asgi.types import ThreadMetadata

from .conftest import Otel, World, assistant, by_user

CREATE = {"type": "threads.create", "params": {"input": user_input("hello")}}


def traced(world: World, otel: Otel, **options: Any) -> ChatKitApp:
    return world.app(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        tenant=by_user,
        **options,
    )


async def test_a_turn_has_a_request_span_a_turn_span_and_store_spans(
    world: World, otel: Otel
) -> None:
    async with ChatKitTestClient(traced(world, otel)) as client:
        response = await client.post(CREATE)
    events = parse_sse(response.content)
    thread_id = events[0]["thread"]["id"]
    run_id = response.headers["x-chatkit-run-id"]

    request = otel.span("chatkit.request")
    turn = otel.span("chatkit.turn")
    assert request.kind == SpanKind.INTERNAL
    assert request.parent is None  # no server span here: see the middleware test
    assert dict(request.attributes or {}) == {
        "chatkit.request.type": "threads.create",
        "chatkit.thread.id": thread_id,
        "chatkit.run.id": run_id,
        "chatkit.tenant.hash": tenant_hash("alice"),
        "chatkit.outcome": "completed",
        "http.response.status_code": 200,
    }
    assert turn.parent is not None and turn.parent.span_id == request.context.span_id
    assert dict(turn.attributes or {}) == {
        "chatkit.request.type": "threads.create",
        "chatkit.thread.id": thread_id,
        "chatkit.run.id": run_id,
        "chatkit.tenant.hash": tenant_hash("alice"),
        "chatkit.outcome": "completed",
        "chatkit.events": len(events),
        "chatkit.bytes": len(response.content),
        "chatkit.disconnect.policy": "cancel",
        "chatkit.client.disconnected": False,
        "chatkit.time_to_first_event": turn.attributes["chatkit.time_to_first_event"],  # type: ignore[index]
    }
    assert turn.attributes["chatkit.time_to_first_event"] > 0  # type: ignore[index,operator]

    # The thread and the messages are written during the turn, the turn is taken before it.
    saves = otel.spans("chatkit.store.save_thread") + otel.spans("chatkit.store.add_thread_item")
    assert len(saves) == 3  # the thread, the user message, the answer
    assert all(s.parent is not None and s.parent.span_id == turn.context.span_id for s in saves)
    assert saves[0].attributes == {
        "chatkit.store.system": "MemoryStore",
        "db.operation.name": "save_thread",
    }
    for span in otel.spans("chatkit.store.acquire_turn"):
        assert span.parent is not None and span.parent.span_id == request.context.span_id


async def test_spans_are_children_of_the_asgi_middlewares_server_span(
    world: World, otel: Otel
) -> None:
    chatkit = traced(world, otel)
    app = OpenTelemetryMiddleware(
        Starlette(routes=[Mount("/chatkit", app=chatkit)]),
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    async with ChatKitTestClient(app, path="/chatkit/") as client:
        response = await client.post(CREATE)
    assert response.status_code == 200

    servers = [s for s in otel.spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 1
    server = servers[0]
    request = otel.span("chatkit.request")
    assert request.parent is not None and request.parent.span_id == server.context.span_id
    assert request.context.trace_id == server.context.trace_id
    assert otel.span("chatkit.turn").context.trace_id == server.context.trace_id


async def test_a_not_found_store_call_is_an_answer_not_an_error(world: World, otel: Otel) -> None:
    async with ChatKitTestClient(traced(world, otel)) as client:
        response = await client.post(
            {"type": "threads.get_by_id", "params": {"thread_id": "thr_missing"}}
        )
    assert response.status_code == 404

    load = otel.span("chatkit.store.load_thread")
    assert load.attributes is not None and load.attributes["chatkit.store.not_found"] is True
    assert load.status.status_code == StatusCode.UNSET
    request = otel.span("chatkit.request")
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 404
    assert request.attributes["chatkit.error.code"] == "thread_not_found"
    assert request.attributes["chatkit.outcome"] == "refused"
    assert otel.spans("chatkit.turn") == []
    assert otel.point("chatkit.errors", chatkit__error__code="thread_not_found").value == 1


async def test_turn_metrics(world: World, otel: Otel) -> None:
    async with ChatKitTestClient(traced(world, otel)) as client:
        for _ in range(2):
            events = await client.create_thread("hello")

    turns = otel.point(
        "chatkit.turns", chatkit__request__type="threads.create", chatkit__outcome="completed"
    )
    assert turns.value == 2
    assert otel.point("chatkit.streams.active", chatkit__request__type="threads.create").value == 0
    per_turn = otel.point("chatkit.turn.events", chatkit__request__type="threads.create")
    assert per_turn.count == 2
    assert per_turn.sum == 2 * len(events)
    first = otel.point("chatkit.turn.time_to_first_event", chatkit__request__type="threads.create")
    assert first.count == 2
    assert 0 < first.sum < 10


async def test_active_streams_counts_replies_in_progress(world: World, otel: Otel) -> None:
    started, release = anyio.Event(), anyio.Event()

    class Waiting:
        async def respond(self, turn: Turn[Any]) -> Any:
            started.set()
            await release.wait()
            yield assistant(turn, "done")

    world.responder = Waiting()  # type: ignore[assignment]
    async with ChatKitTestClient(traced(world, otel)) as client, anyio.create_task_group() as tasks:
        tasks.start_soon(client.post, CREATE)
        with anyio.fail_after(10):
            await started.wait()
        active = otel.point("chatkit.streams.active").value
        release.set()

    assert active == 1
    assert otel.point("chatkit.streams.active").value == 0


async def test_errors_are_counted_by_code(world: World, otel: Otel) -> None:
    class Failing:
        async def respond(self, turn: Turn[Any]) -> Any:
            raise StreamError("model.overloaded")
            yield

    world.responder = Failing()  # type: ignore[assignment]
    async with ChatKitTestClient(traced(world, otel)) as client:
        await client.create_thread("hello")
        await client.post({"type": "threads.list", "params": {"limit": "many"}})

    turn = otel.span("chatkit.turn")
    assert turn.status.status_code == StatusCode.ERROR
    assert turn.attributes is not None and turn.attributes["chatkit.outcome"] == "error"
    assert otel.point("chatkit.errors", chatkit__error__code="model.overloaded").value == 1
    assert otel.point("chatkit.errors", chatkit__error__code="invalid_request").value == 1
    assert (
        otel.point(
            "chatkit.turns", chatkit__request__type="threads.create", chatkit__outcome="error"
        ).value
        == 1
    )


async def test_refusals_are_turns_with_their_own_outcome_and_an_error_code(
    world: World, otel: Otel
) -> None:
    async def refuse(context: Any, request_type: str, thread: ThreadMetadata | None) -> Any:
        return Refusal("Slow down", retry_after=1)

    async with ChatKitTestClient(traced(world, otel, admission=refuse)) as client:
        await client.post(CREATE)
        await client.post({"type": "threads.list", "params": {}})

    turn = otel.span("chatkit.turn")
    assert turn.attributes is not None
    assert turn.attributes["chatkit.outcome"] == "refused"
    assert turn.attributes["chatkit.error.code"] == "rate_limited"
    assert (
        otel.point(
            "chatkit.errors",
            chatkit__error__code="rate_limited",
            chatkit__request__type="threads.create",
        ).value
        == 1
    )
    assert (
        otel.point(
            "chatkit.errors",
            chatkit__error__code="rate_limited",
            chatkit__request__type="threads.list",
        ).value
        == 1
    )


async def test_the_responder_sees_the_traced_store_which_keeps_the_stores_extras(
    world: World, otel: Otel
) -> None:
    seen: list[Any] = []

    class Looking:
        async def respond(self, turn: Turn[Any]) -> Any:
            seen.append(turn.store)
            yield assistant(turn, "ok")

    world.responder = Looking()  # type: ignore[assignment]
    app = traced(world, otel)
    async with ChatKitTestClient(app) as client:
        await client.create_thread("hello")

    assert isinstance(seen[0], TracedStore)
    assert seen[0].inner is world.store
    assert seen[0].generate_thread_id(None).startswith("thr_")
    assert app.store is world.store  # the app closes the real store


def test_nothing_is_imported_when_telemetry_is_off() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        import httpx
        from chatkit_asgi import ChatKitApp
        from chatkit_asgi.stores import MemoryStore

        async def respond(turn):
            return
            yield

        async def main():
            app = ChatKitApp(respond, store=MemoryStore(), health=True)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = {"type": "threads.create", "params": {"input": {"content": []}}}
                assert (await client.post("/", json=body)).status_code == 200
                assert (await client.get("/healthz")).status_code == 200

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if "opentelemetry" in m or m.endswith(".telemetry"))
        print(loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


async def test_telemetry_true_uses_the_global_providers(world: World) -> None:
    # No SDK configured globally: the API's no-op providers, and everything still works.
    app = world.app(telemetry=True)
    async with ChatKitTestClient(app) as client:
        events = await client.create_thread("hello")
    assert app.telemetry is not None
    assert events[-1].type == "thread.item.done"


async def test_an_app_without_telemetry_has_none() -> None:
    app = ChatKitApp(lambda turn: None, store=MemoryStore())  # type: ignore[arg-type,return-value]
    assert app.telemetry is None
    assert isinstance(app.engine.store, MemoryStore)


async def test_the_http_middleware_alone_does_not_need_chatkit_telemetry(
    world: World, otel: Otel
) -> None:
    app = OpenTelemetryMiddleware(world.app(), tracer_provider=otel.tracer_provider)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/", json=CREATE)
    assert response.status_code == 200
    assert otel.spans("chatkit.request") == []
    assert any(s.kind == SpanKind.SERVER for s in otel.spans())


async def test_store_spans_can_be_turned_off(world: World, otel: Otel) -> None:
    telemetry = Telemetry(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, store_spans=False
    )
    app = world.app(telemetry=telemetry, tenant=by_user)
    async with ChatKitTestClient(app) as client:
        response = await client.post(CREATE)

    assert app.telemetry is telemetry
    assert app.engine.store is world.store  # no proxy in the way
    assert sorted(span.name for span in otel.spans()) == ["chatkit.request", "chatkit.turn"]
    turn = otel.span("chatkit.turn")
    assert turn.attributes is not None
    assert turn.attributes["chatkit.events"] == len(parse_sse(response.content))
    assert otel.point("chatkit.turns", chatkit__outcome="completed").value == 1


class _NotRequests(Sampler):
    """Samples out the `chatkit.request` span and records every other."""

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any
    ) -> SamplingResult:
        decision = Decision.DROP if name == "chatkit.request" else Decision.RECORD_AND_SAMPLE
        return SamplingResult(decision)

    def get_description(self) -> str:
        return "not chatkit.request"


def _requests_sampled_out(otel: Otel) -> TracerProvider:
    """A provider that drops `chatkit.request` spans and exports every other to `otel`."""
    provider = TracerProvider(sampler=_NotRequests())
    provider.add_span_processor(SimpleSpanProcessor(otel.exporter))
    return provider


async def test_a_request_that_records_nothing_makes_no_store_spans(
    world: World, otel: Otel
) -> None:
    # Store spans are children of a recorded span: under a sampled-out request span
    # they would be orphans, so none is made (and none costs anything).
    provider = _requests_sampled_out(otel)
    app = world.app(tracer_provider=provider, meter_provider=otel.meter_provider)
    async with ChatKitTestClient(app) as client:
        thread_id = (await client.create_thread("hello"))[0].thread.id  # type: ignore[union-attr]
        otel.exporter.clear()
        response = await client.post(
            {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}
        )

    assert response.status_code == 200
    assert otel.spans() == []


def test_providers_go_to_telemetry_or_to_the_app_not_both(world: World, otel: Otel) -> None:
    with pytest.raises(TypeError, match="Telemetry"):
        world.app(telemetry=Telemetry(), tracer_provider=otel.tracer_provider)


@pytest.mark.parametrize("tracing", ["sampled out", "no tracer provider"])
async def test_metrics_count_requests_whose_spans_record_nothing(
    world: World, otel: Otel, tracing: str
) -> None:
    # Metrics are not sampled: a turn whose spans are dropped (a ratio sampler in
    # production, or metrics configured without tracing) still counts, and the
    # active-streams gauge still comes back down.
    tracer_provider = (
        TracerProvider(sampler=ALWAYS_OFF)
        if tracing == "sampled out"
        else trace.NoOpTracerProvider()
    )
    app = world.app(tracer_provider=tracer_provider, meter_provider=otel.meter_provider)
    async with ChatKitTestClient(app) as client:
        events = await client.create_thread("hello")
        await client.post({"type": "threads.list", "params": {"limit": "many"}})

    turns = otel.point(
        "chatkit.turns", chatkit__request__type="threads.create", chatkit__outcome="completed"
    )
    assert turns.value == 1
    assert otel.point("chatkit.streams.active", chatkit__request__type="threads.create").value == 0
    per_turn = otel.point("chatkit.turn.events", chatkit__request__type="threads.create")
    assert (per_turn.count, per_turn.sum) == (1, len(events))
    first = otel.point("chatkit.turn.time_to_first_event", chatkit__request__type="threads.create")
    assert first.count == 1
    assert otel.point("chatkit.errors", chatkit__error__code="invalid_request").value == 1
    assert otel.spans() == []


async def test_store_calls_outside_a_request_follow_the_current_span(otel: Otel) -> None:
    # An integration's own store calls (a background job, a migration) are traced
    # when they run under a recorded span of its own, and cost nothing otherwise.
    store = TracedStore(MemoryStore(), otel.tracer_provider.get_tracer("job"))
    thread = ThreadMetadata(id="thr_outside", created_at=Turn.now())
    await store.save_thread(thread, None)
    assert otel.spans() == []

    with otel.tracer_provider.get_tracer("job").start_as_current_span("nightly job"):
        await store.load_thread("thr_outside", None)

    job = otel.span("nightly job")
    load = otel.span("chatkit.store.load_thread")
    assert load.parent is not None and load.parent.span_id == job.context.span_id


async def test_a_request_leaves_no_tracing_state_behind_in_its_caller(
    world: World, otel: Otel
) -> None:
    # The in-process client runs the app in the caller's task. A sampled-out request
    # (also one that fails) must not leave its "records nothing" mark there: the
    # caller's own store calls under its own spans are traced as before.
    provider = _requests_sampled_out(otel)
    app = world.app(tracer_provider=provider, meter_provider=otel.meter_provider)
    thread_id = (await world.request("threads.get_by_id"))[0]["params"]["thread_id"]
    async with ChatKitTestClient(app) as client:
        ok = await client.post({"type": "threads.get_by_id", "params": {"thread_id": thread_id}})
        missing = await client.post({"type": "threads.get_by_id", "params": {"thread_id": "x"}})
    assert (ok.status_code, missing.status_code) == (200, 404)
    otel.exporter.clear()

    traced_store = app.engine.store
    assert isinstance(traced_store, TracedStore)
    with provider.get_tracer("job").start_as_current_span("job"):
        await traced_store.load_thread(thread_id, {"user": "alice"})

    assert [span.name for span in otel.spans()] == ["chatkit.store.load_thread", "job"]
