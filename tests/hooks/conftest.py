"""Fixtures of the production-hook tests: a store seeded for every request type,
an app whose responder handles them all, and in-memory OpenTelemetry providers.

The user is whoever the `x-user` header names (Alice by default); the store and
the attachment store give each user their own space.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo import AsyncMongoClient
from starlette.requests import Request

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import FileSystemAttachmentStore, MemoryStore
from chatkit_asgi.testing import user_input
from chatkit_asgi.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    AudioInput,
    Card,
    ClientToolCallItem,
    FileAttachment,
    InferenceOptions,
    StructuredInputFreeform,
    StructuredInputItem,
    SyncCustomActionResponse,
    Text,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from tests._mongo_server import mongo_uri  # noqa: F401 - the session's MongoDB-wire server

ALICE = {"user": "alice"}

STREAMING_TYPES = [
    "threads.create",
    "threads.add_user_message",
    "threads.add_client_tool_output",
    "threads.add_structured_input",
    "threads.retry_after_item",
    "threads.custom_action",
]
"""Every request type that starts a turn."""

JSON_TYPES = [
    "threads.sync_custom_action",
    "threads.get_by_id",
    "threads.list",
    "threads.update",
    "threads.delete",
    "items.list",
    "items.feedback",
    "attachments.create",
    "attachments.delete",
    "input.transcribe",
]
"""Every request type answered with one JSON document."""


def user_context(request: Request) -> dict[str, str]:
    """The context factory of these tests: the user named by `x-user`."""
    return {"user": request.headers.get("x-user", "alice")}


def by_user(context: Any) -> str:
    """The tenant key: one space per user."""
    user: str = context["user"]
    return user


def assistant(turn: Turn[Any], text: str) -> ThreadItemDoneEvent:
    """A finished assistant message on the turn's thread."""
    return ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=text)],
        )
    )


@dataclass
class Responder:
    """Answers every request type, and notes the turns it was given."""

    turns: list[Turn[Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        self.turns.append(turn)
        self.calls.append("respond")
        yield assistant(turn, f"Echo: {turn.input_text()}")

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        self.turns.append(turn)
        self.calls.append("action")
        yield assistant(turn, f"Did {action.type}")

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        self.calls.append("sync_action")
        return SyncCustomActionResponse()

    async def add_feedback(self, turn: Turn[Any], item_ids: list[str], kind: str) -> None:
        self.calls.append("add_feedback")

    async def transcribe(self, audio: AudioInput, context: Any) -> TranscriptionResult:
        self.calls.append("transcribe")
        return TranscriptionResult(text="hello")


@dataclass
class World:
    """A seeded store, an attachment store and the request of each type against them."""

    store: MemoryStore[Any]
    attachments: FileSystemAttachmentStore[Any]
    responder: Responder

    def app(self, **options: Any) -> ChatKitApp:
        """An app over this world; options go to `ChatKitApp`."""
        options.setdefault("turn_wait", 5.0)
        return ChatKitApp(
            self.responder,
            store=self.store,
            attachment_store=self.attachments,
            context=user_context,
            **options,
        )

    async def request(self, request_type: str) -> tuple[dict[str, Any], str | None]:
        """A valid request body of `request_type` in a fresh thread of Alice's, and the
        id of the thread the admission hook should see (None when there is none)."""
        thread = ThreadMetadata(id=f"thr_{uuid.uuid4().hex[:12]}", created_at=Turn.now())
        await self.store.save_thread(thread, ALICE)
        message = UserMessageItem(
            id=f"msg_{uuid.uuid4().hex[:12]}",
            thread_id=thread.id,
            created_at=Turn.now(),
            content=[UserMessageTextContent(text="earlier question")],
            inference_options=InferenceOptions(),
        )
        await self.store.add_thread_item(thread.id, message, ALICE)
        params: dict[str, Any]
        seen_thread: str | None = thread.id
        match request_type:
            case "threads.create":
                params, seen_thread = {"input": user_input("hello")}, None
            case "threads.add_user_message":
                params = {"thread_id": thread.id, "input": user_input("hello")}
            case "threads.add_client_tool_output":
                call = ClientToolCallItem(
                    id=f"tc_{uuid.uuid4().hex[:12]}",
                    thread_id=thread.id,
                    created_at=Turn.now(),
                    call_id="call_1",
                    name="get_location",
                    arguments={},
                )
                await self.store.add_thread_item(thread.id, call, ALICE)
                params = {"thread_id": thread.id, "result": {"city": "Lyon"}}
            case "threads.add_structured_input":
                question = StructuredInputItem(
                    id=f"msg_{uuid.uuid4().hex[:12]}",
                    thread_id=thread.id,
                    created_at=Turn.now(),
                    inputs=[StructuredInputFreeform(id="q1", question="Why?")],
                )
                await self.store.add_thread_item(thread.id, question, ALICE)
                params = {
                    "thread_id": thread.id,
                    "item_id": question.id,
                    "input": {"answers": {"q1": {"values": ["fun"]}}, "status": "answered"},
                }
            case "threads.retry_after_item":
                params = {"thread_id": thread.id, "item_id": message.id}
            case "threads.custom_action" | "threads.sync_custom_action":
                widget = WidgetItem(
                    id=f"msg_{uuid.uuid4().hex[:12]}",
                    thread_id=thread.id,
                    created_at=Turn.now(),
                    widget=Card(children=[Text(value="Vote?")]),
                )
                await self.store.add_thread_item(thread.id, widget, ALICE)
                params = {"thread_id": thread.id, "item_id": widget.id, "action": {"type": "vote"}}
            case "threads.get_by_id" | "threads.delete":
                params = {"thread_id": thread.id}
            case "threads.list":
                params, seen_thread = {}, None
            case "threads.update":
                params = {"thread_id": thread.id, "title": "Renamed"}
            case "items.list":
                params = {"thread_id": thread.id}
            case "items.feedback":
                params = {"thread_id": thread.id, "item_ids": [message.id], "kind": "positive"}
            case "attachments.create":
                params = {"name": "notes.txt", "size": 5, "mime_type": "text/plain"}
                seen_thread = None
            case "attachments.delete":
                attachment = FileAttachment(
                    id=f"atc_{uuid.uuid4().hex[:12]}", name="a.txt", mime_type="text/plain"
                )
                await self.store.save_attachment(attachment, ALICE)
                params, seen_thread = {"attachment_id": attachment.id}, None
            case "input.transcribe":
                audio = base64.b64encode(b"audio").decode()
                params = {"audio_base64": audio, "mime_type": "audio/webm"}
                seen_thread = None
            case _:  # pragma: no cover
                raise AssertionError(request_type)
        return {"type": request_type, "params": params}, seen_thread

    async def snapshot(self) -> list[str]:
        """Everything Alice owns, serialized: equal snapshots mean nothing changed."""
        out: list[str] = []
        threads = await self.store.load_threads(1000, None, "asc", ALICE)
        for thread in threads.data:
            out.append(thread.model_dump_json())
            items = await self.store.load_thread_items(thread.id, None, 1000, "asc", ALICE)
            out.extend(item.model_dump_json() for item in items.data)
        return out


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A fresh world per test."""
    return World(
        store=MemoryStore(tenant=by_user),
        attachments=FileSystemAttachmentStore(tmp_path / "attachments", tenant=by_user),
        responder=Responder(),
    )


# -- OpenTelemetry -------------------------------------------------------------------------


@dataclass
class Otel:
    """In-memory OpenTelemetry providers: finished spans and collected metrics."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, of one name or all."""
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span of this name."""
        found = self.spans(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def points(self, metric: str) -> list[Any]:
        """The data points of one metric, as collected now."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]

    def point(self, metric: str, **attributes: Any) -> Any:
        """The data point of `metric` whose attributes include `attributes`."""
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        found = [
            p
            for p in self.points(metric)
            if all(p.attributes.get(k) == v for k, v in wanted.items())
        ]
        assert len(found) == 1, (metric, wanted, [dict(p.attributes) for p in self.points(metric)])
        return found[0]


@pytest.fixture
def otel() -> Iterator[Otel]:
    """Providers of this test only (the global ones are left alone)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(exporter, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


# -- MongoDB ---------------------------------------------------------------------------------


@pytest.fixture
async def mongo_client(mongo_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:  # noqa: F811
    """A PyMongo async client of the session's server."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def database_name() -> str:
    """A database name no other test uses."""
    return f"chatkit_hooks_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def database(
    mongo_client: AsyncMongoClient[dict[str, Any]], database_name: str
) -> AsyncIterator[Any]:
    """A database of the test's own, dropped afterwards."""
    try:
        yield mongo_client[database_name]
    finally:
        await mongo_client.drop_database(database_name)


Clock = Callable[[], float]
