"""Fixtures of the Agents SDK bridge tests: offline SDK, stores, apps, a readable timeline.

The real `Runner` runs with scripted models (see `_script.py`); no test may reach
the network: tracing is off, the API key is a dummy, and outbound connections fail.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import set_tracing_disabled

from chatkit_asgi import ChatKitApp, Store
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartAnnotationAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ClientEffectEvent,
    ClientToolCallItem,
    CustomTask,
    DurationSummary,
    ErrorEvent,
    GeneratedImageItem,
    GeneratedImageUpdated,
    ProgressUpdateEvent,
    StreamOptionsEvent,
    Task,
    TaskItem,
    ThoughtTask,
    ThreadCreatedEvent,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    ThreadUpdatedEvent,
    UserMessageItem,
    WidgetItem,
    WidgetRootUpdated,
    WorkflowItem,
    WorkflowTaskAdded,
    WorkflowTaskUpdated,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A dummy key, no tracing export, and no outbound connections."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy-not-a-real-key")
    set_tracing_disabled(True)
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise AssertionError(f"a test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    yield


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store[Any]]:
    """Each bridge test runs over both embedded stores."""
    if request.param == "memory":
        yield MemoryStore()
        return
    sqlite: SQLiteStore[Any] = SQLiteStore(tmp_path / "agents.db")
    yield sqlite
    await sqlite.aclose()


def client_for(responder: Any, store: Store[Any], **options: Any) -> ChatKitTestClient:
    """A test client over the real ASGI app."""
    return ChatKitTestClient(ChatKitApp(responder, store=store, **options))


def thread_id_of(events: list[ThreadStreamEvent]) -> str:
    """The id of the thread a `threads.create` stream created."""
    created = [e for e in events if isinstance(e, ThreadCreatedEvent)]
    assert created, "no thread.created event"
    return created[0].thread.id


# -- a readable, exact timeline of a stream --------------------------------------------


class Ids:
    """Short stable names for generated ids: `msg#1`, `wf#1`, `tc#1`..."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def __call__(self, ident: str) -> str:
        if ident not in self.names:
            prefix = ident.split("_", 1)[0]
            count = sum(1 for name in self.names.values() if name.startswith(prefix + "#"))
            self.names[ident] = f"{prefix}#{count + 1}"
        return self.names[ident]


def _task(task: Task) -> str:
    status = "" if task.status_indicator == "none" else f" [{task.status_indicator}]"
    if isinstance(task, ThoughtTask):
        return f"thought {task.content!r}{status}"
    if isinstance(task, CustomTask):
        return f"custom {task.title!r}{f' {task.content!r}' if task.content else ''}{status}"
    return f"{task.type}{status}"


def describe_item(item: ThreadItem, ids: Ids) -> str:
    """One line for an item: its kind, short id and what the user sees of it."""
    ref = ids(item.id)
    if isinstance(item, UserMessageItem):
        return f"user_message {ref} " + repr("".join(getattr(c, "text", "") for c in item.content))
    if isinstance(item, AssistantMessageItem):
        parts = []
        for part in item.content:
            cited = "".join(
                f" +{a.source.type}:{getattr(a.source, 'url', None) or a.source.title}@{a.index}"
                for a in part.annotations
            )
            parts.append(f"{part.text!r}{cited}")
        return f"assistant_message {ref} [{', '.join(parts)}]"
    if isinstance(item, WorkflowItem):
        wf = item.workflow
        summary = ""
        if isinstance(wf.summary, DurationSummary):
            summary = " summary=duration"
        elif wf.summary is not None:
            summary = f" summary={wf.summary.title!r}"
        tasks = "; ".join(_task(t) for t in wf.tasks)
        return f"workflow {ref} {wf.type} [{tasks}]{summary}{' expanded' if wf.expanded else ''}"
    if isinstance(item, ClientToolCallItem):
        return (
            f"client_tool_call {ref} {item.name} {item.arguments} {item.status} call={item.call_id}"
        )
    if isinstance(item, GeneratedImageItem):
        return f"generated_image {ref} " + (item.image.url if item.image else "(empty)")
    if isinstance(item, WidgetItem):
        return f"widget {ref} {item.widget.type}"
    if isinstance(item, TaskItem):
        return f"task {ref} {_task(item.task)}"
    return f"{item.type} {ref}"


def timeline(events: list[ThreadStreamEvent], ids: Ids | None = None) -> list[str]:
    """Each event as one line, ids shortened, timestamps left out, nothing else lost
    that a test of the bridge cares about."""
    ids = ids or Ids()
    lines = []
    for event in events:
        if isinstance(event, StreamOptionsEvent):
            lines.append(f"stream_options cancel={event.stream_options.allow_cancel}")
        elif isinstance(event, ThreadCreatedEvent):
            lines.append("thread.created")
        elif isinstance(event, ThreadUpdatedEvent):
            lines.append(f"thread.updated title={event.thread.title!r}")
        elif isinstance(event, ThreadItemAddedEvent):
            lines.append("added " + describe_item(event.item, ids))
        elif isinstance(event, ThreadItemDoneEvent):
            lines.append("done " + describe_item(event.item, ids))
        elif isinstance(event, ThreadItemReplacedEvent):
            lines.append("replaced " + describe_item(event.item, ids))
        elif isinstance(event, ThreadItemRemovedEvent):
            lines.append(f"removed {ids(event.item_id)}")
        elif isinstance(event, ThreadItemUpdatedEvent):
            lines.append(f"update {ids(event.item_id)} {_update(event.update)}")
        elif isinstance(event, ErrorEvent):
            lines.append(f"error {event.code} {event.message!r} retry={event.allow_retry}")
        elif isinstance(event, ProgressUpdateEvent):
            lines.append(f"progress {event.text!r}")
        elif isinstance(event, ClientEffectEvent):
            lines.append(f"client_effect {event.name} {event.data}")
        else:
            lines.append(event.type)
    return lines


def _update(update: Any) -> str:
    if isinstance(update, AssistantMessageContentPartAdded):
        return f"part_added[{update.content_index}] {update.content.text!r}"
    if isinstance(update, AssistantMessageContentPartTextDelta):
        return f"text_delta[{update.content_index}] {update.delta!r}"
    if isinstance(update, AssistantMessageContentPartAnnotationAdded):
        source = update.annotation.source
        where = getattr(source, "url", None) or source.title
        return (
            f"annotation[{update.content_index}][{update.annotation_index}] "
            f"{source.type}:{where}@{update.annotation.index}"
        )
    if isinstance(update, AssistantMessageContentPartDone):
        cited = len(update.content.annotations)
        return f"part_done[{update.content_index}] {update.content.text!r} annotations={cited}"
    if isinstance(update, WorkflowTaskAdded):
        return f"task_added[{update.task_index}] {_task(update.task)}"
    if isinstance(update, WorkflowTaskUpdated):
        return f"task_updated[{update.task_index}] {_task(update.task)}"
    if isinstance(update, GeneratedImageUpdated):
        return f"image {update.image.url} progress={update.progress}"
    if isinstance(update, WidgetRootUpdated):
        return f"widget_root {update.widget.type}"
    return str(update.type)
