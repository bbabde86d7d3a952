"""`AgentContext`: what an agent's tools see, and how they add to the reply.

Pass an `AgentContext` as the run context (`Runner.run_streamed(agent, input,
context=ctx)`); tools receive it as `ctx.context`. Its helpers (`stream_widget`,
`add_workflow_task`, `progress_update`...) emit ChatKit events that
`stream_agent_response` merges into the reply in the order they happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any, Generic, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SkipValidation
from typing_extensions import Self, TypeVar

from ..store import AttachmentStore, Store, StoreItemType
from ..types import (
    ClientEffectEvent,
    ClientToolCallItem,
    DurationSummary,
    EndOfTurnItem,
    GeneratedImageItem,
    HiddenContextItem,
    ProgressUpdateEvent,
    SDKHiddenContextItem,
    Task,
    TaskItem,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    WidgetItem,
    WidgetRoot,
    Workflow,
    WorkflowItem,
    WorkflowSummary,
    WorkflowTaskAdded,
    WorkflowTaskUpdated,
)
from ..types.icons import IconName
from ..widgets.streaming import stream_widget

if TYPE_CHECKING:
    from ..turn import Turn

__all__ = ["AgentContext", "ClientToolCall"]

TContext = TypeVar("TContext", default=Any)

# Items that do not end a workflow when they follow it: the UI draws nothing for
# them between the workflow and what comes next.
_INVISIBLE = (ClientToolCallItem, HiddenContextItem, SDKHiddenContextItem, EndOfTurnItem)


class ClientToolCall(BaseModel):
    """Set on `AgentContext.client_tool_call` by a tool to have the client page run it.

    The reply ends with a pending `client_tool_call` item; the page runs the tool
    and sends its output back (`threads.add_client_tool_output`), which starts the
    next reply. Give the agent `tool_use_behavior=StopAtTools(stop_at_tool_names=[...])`
    for such tools so the run stops there instead of asking the model to go on.
    """

    name: str
    """The tool name the client page knows."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """The arguments the page receives."""
    call_id: str | None = None
    """The model's call id (`ToolContext.tool_call_id`); when None, the id of the
    last function call of the run is used."""


# -- the outbox: events from tools, merged with the SDK's stream ------------------------


@dataclass
class _FromSDK:
    event: Any


@dataclass
class _FromContext:
    event: ThreadStreamEvent


@dataclass
class _Barrier:
    reached: asyncio.Event


@dataclass
class _End:
    error: BaseException | None


_Entry = _FromSDK | _FromContext | _Barrier | _End
_Sink = Callable[[ThreadStreamEvent], None]


class _Outbox:
    """One ordered channel for everything a reply is made of.

    `stream_agent_response` (the consumer) puts the SDK's events in and reads
    everything out in order. Context helpers first wait until the consumer has
    handled everything queued before them (a barrier), so that what they read
    and change (the open workflow...) is the state the client has seen, then
    queue their events. Unbounded on purpose: the SDK's own event queue is
    unbounded, and the backpressure that matters is the barrier. An asyncio
    queue because the SDK runs on asyncio only, and it needs no closing.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._consumer: asyncio.Task[Any] | None = None

    def attach(self) -> None:
        self._consumer = asyncio.current_task()

    def detach(self) -> None:
        self._consumer = None
        # Whoever still waits on a barrier would wait forever: let them go. What
        # else is left belongs to a reply that is over.
        for entry in self.drain():
            if isinstance(entry, _Barrier):
                entry.reached.set()

    def put(self, entry: _Entry) -> None:
        self._queue.put_nowait(entry)

    async def get(self) -> _Entry:
        return await self._queue.get()

    def drain(self) -> list[_Entry]:
        entries: list[_Entry] = []
        while not self._queue.empty():
            entries.append(self._queue.get_nowait())
        return entries

    async def sync(self) -> None:
        # Let a pump that was already woken move the SDK events it has into the
        # queue first (asyncio runs ready tasks in order): whatever the SDK queued
        # before this call comes before it.
        await asyncio.sleep(0)
        consumer = self._consumer
        if consumer is None or consumer is asyncio.current_task():
            return
        reached = asyncio.Event()
        self.put(_Barrier(reached))
        await reached.wait()


# -- the context ------------------------------------------------------------------------


class AgentContext(BaseModel, Generic[TContext]):
    """The run context of an agent behind ChatKit: pass it as `context=` to the Runner.

    Tools get it as `ctx.context`: the thread (mutable: a new `title` reaches the
    client), the store, the request context, ids, and helpers that add events to
    the reply while the run streams. Subclass it to give tools more (pydantic
    fields).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    thread: ThreadMetadata
    """The thread being answered (the same object as `Turn.thread`)."""
    store: Annotated[Store[TContext], SkipValidation]
    """The app's store."""
    request_context: TContext
    """Whatever the app's context factory returned for this request."""
    attachment_store: Annotated[AttachmentStore[TContext] | None, SkipValidation] = None
    """The app's attachment store, if any."""
    previous_response_id: str | None = None
    """For integrations that chain Responses API calls; not used by this package."""
    client_tool_call: ClientToolCall | None = None
    """Set by a tool to end the reply with a call the client page runs."""
    workflow_item: WorkflowItem | None = None
    """The workflow currently open in the reply, if any."""
    generated_image_item: GeneratedImageItem | None = None
    """The image being generated, if any."""

    _outbox: _Outbox = PrivateAttr(default_factory=_Outbox)
    # Workflows opened here but not shown yet (a custom one waits for its first
    # task). Any other workflow, one assigned to `workflow_item` by app code
    # included, is taken to be on the client's screen, as openai-chatkit does.
    _deferred: set[str] = PrivateAttr(default_factory=set)

    @classmethod
    def from_turn(cls, turn: Turn[TContext], **fields: Any) -> Self:
        """The context for a responder's turn (extra `fields` for subclasses)."""
        return cls(
            thread=turn.thread,
            store=turn.store,
            request_context=turn.context,
            attachment_store=turn.attachment_store,
            **fields,
        )

    # -- ids and time ---------------------------------------------------------------

    def generate_id(self, type: StoreItemType, thread: ThreadMetadata | None = None) -> str:
        """A new id from the store's id scheme."""
        if type == "thread":
            return self.store.generate_thread_id(self.request_context)
        return self.store.generate_item_id(type, thread or self.thread, self.request_context)

    @staticmethod
    def now() -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(timezone.utc)

    # -- emitting -------------------------------------------------------------------

    async def stream(self, event: ThreadStreamEvent) -> None:
        """Add any event to the reply, after everything that happened before it.

        A visible item (added or done) closes the open workflow first; an added
        workflow becomes the open one.
        """
        await self._outbox.sync()
        self._emit(event)

    async def stream_widget(
        self,
        widget: WidgetRoot | AsyncIterable[WidgetRoot],
        copy_text: str | None = None,
    ) -> WidgetItem:
        """Show a widget: a finished tree, or successive states of one from an async
        iterator (sent as minimal updates, see `chatkit_asgi.widgets.stream_widget`).

        Returns the widget item, e.g. for `replace_widget` later.
        """
        shown: WidgetItem | None = None
        events = cast(  # an async generator, typed as an iterator by the widgets package
            AsyncGenerator[ThreadStreamEvent, None],
            stream_widget(self.thread, widget, copy_text, generate_id=self.generate_id),
        )
        async with aclosing(events):
            async for event in events:
                await self._outbox.sync()
                self._emit(event)
                if isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, WidgetItem):
                    shown = event.item
        assert shown is not None, "stream_widget ends with the done item"
        return shown

    async def start_workflow(self, workflow: Workflow) -> WorkflowItem:
        """Open a workflow (closing the one open before, if any).

        A custom workflow without tasks is shown when its first task arrives.
        """
        await self._outbox.sync()
        return self._open_workflow(workflow)

    async def add_workflow_task(self, task: Task) -> int:
        """Add a task to the open workflow (opening a custom one if none is); returns its index."""
        await self._outbox.sync()
        return self._add_task(task)

    async def update_workflow_task(self, task: Task, task_index: int) -> None:
        """Replace the task at `task_index` of the open workflow."""
        await self._outbox.sync()
        self._update_task(task, task_index)

    async def end_workflow(
        self, summary: WorkflowSummary | None = None, expanded: bool = False
    ) -> None:
        """Close the open workflow (no-op without one); by default it shows its duration."""
        await self._outbox.sync()
        self._close_workflow(summary, expanded=expanded)

    async def show_task(self, task: Task) -> TaskItem:
        """Show one task on its own, as a task item."""
        await self._outbox.sync()
        item = TaskItem(
            id=self.generate_id("task"), thread_id=self.thread.id, created_at=self.now(), task=task
        )
        self._emit(ThreadItemDoneEvent(item=item))
        return item

    async def progress_update(self, text: str, *, icon: IconName | None = None) -> None:
        """Show a transient status line ("Searching the catalog...")."""
        await self.stream(ProgressUpdateEvent(text=text, icon=icon))

    async def client_effect(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Ask the client page to run a side effect by name (fire and forget)."""
        await self.stream(ClientEffectEvent(name=name, data=data or {}))

    # -- state changes, made by whichever side is in sync --------------------------
    #
    # Tools change the state after `_Outbox.sync()`, and their events go to the
    # outbox; `stream_agent_response` changes it while handling an SDK event, and
    # its events go straight to the reply. `sink` says which.

    def _to_outbox(self, event: ThreadStreamEvent) -> None:
        self._outbox.put(_FromContext(event))

    def _emit(self, event: ThreadStreamEvent, sink: _Sink | None = None) -> None:
        sink = sink or self._to_outbox
        if isinstance(event, ThreadItemAddedEvent | ThreadItemDoneEvent):
            item = event.item
            self._before_item(item, sink)
            if isinstance(item, WorkflowItem):
                self._deferred.discard(item.id)
                if isinstance(event, ThreadItemAddedEvent):
                    self.workflow_item = item
                elif self.workflow_item is not None and self.workflow_item.id == item.id:
                    self.workflow_item = None
        sink(event)

    def _before_item(self, item: ThreadItem, sink: _Sink) -> None:
        """Close the open workflow when a visible item follows it."""
        open_workflow = self.workflow_item
        if open_workflow is None or open_workflow.id == item.id or isinstance(item, _INVISIBLE):
            return
        self._close_workflow(sink=sink)

    def _close_workflow(
        self,
        summary: WorkflowSummary | None = None,
        *,
        expanded: bool = False,
        sink: _Sink | None = None,
    ) -> None:
        item = self.workflow_item
        if item is None:
            return
        self.workflow_item = None
        if summary is not None:
            item.workflow.summary = summary
        elif item.workflow.summary is None:
            # App code may have built the item with a naive local time, as
            # openai-chatkit's helpers do: measure on the same clock.
            now = self.now() if item.created_at.tzinfo is not None else datetime.now()
            elapsed = now - item.created_at
            item.workflow.summary = DurationSummary(duration=max(0, int(elapsed.total_seconds())))
        item.workflow.expanded = expanded
        if item.id in self._deferred:
            self._deferred.discard(item.id)
            return  # never shown: nothing to close
        (sink or self._to_outbox)(ThreadItemDoneEvent(item=item))

    def _open_workflow(self, workflow: Workflow, sink: _Sink | None = None) -> WorkflowItem:
        sink = sink or self._to_outbox
        self._close_workflow(sink=sink)
        item = WorkflowItem(
            id=self.generate_id("workflow"),
            thread_id=self.thread.id,
            created_at=self.now(),
            workflow=workflow,
        )
        self.workflow_item = item
        if workflow.type == "reasoning" or workflow.tasks:
            self._announce(item, sink)
        else:
            self._deferred.add(item.id)
        return item

    def _announce(self, item: WorkflowItem, sink: _Sink) -> None:
        self._deferred.discard(item.id)
        sink(ThreadItemAddedEvent(item=item))

    def _add_task(self, task: Task, sink: _Sink | None = None) -> int:
        sink = sink or self._to_outbox
        item = self.workflow_item or self._open_workflow(Workflow(type="custom", tasks=[]), sink)
        item.workflow.tasks.append(task)
        index = len(item.workflow.tasks) - 1
        if item.id in self._deferred:
            self._announce(item, sink)
        else:
            sink(
                ThreadItemUpdatedEvent(
                    item_id=item.id, update=WorkflowTaskAdded(task=task, task_index=index)
                )
            )
        return index

    def _update_task(self, task: Task, task_index: int, sink: _Sink | None = None) -> None:
        item = self.workflow_item
        if item is None:
            raise ValueError("there is no open workflow to update")
        item.workflow.tasks[task_index] = task
        (sink or self._to_outbox)(
            ThreadItemUpdatedEvent(
                item_id=item.id, update=WorkflowTaskUpdated(task=task, task_index=task_index)
            )
        )

    def _adopt_workflow(self, item: WorkflowItem) -> None:
        """Continue a workflow the client already shows (left open by an earlier reply)."""
        self.workflow_item = item
