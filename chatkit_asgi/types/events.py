"""Stream events: what a streaming response is made of, and item updates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .components import WidgetComponent, WidgetRoot
from .icons import IconName
from .items import AssistantMessageContent, GeneratedImage, Thread, ThreadItem
from .sources import Annotation, Task

__all__ = [
    "AssistantMessageContentPartAdded",
    "AssistantMessageContentPartAnnotationAdded",
    "AssistantMessageContentPartDone",
    "AssistantMessageContentPartTextDelta",
    "ClientEffectEvent",
    "ErrorEvent",
    "GeneratedImageUpdated",
    "NoticeEvent",
    "ProgressUpdateEvent",
    "StreamOptions",
    "StreamOptionsEvent",
    "ThreadCreatedEvent",
    "ThreadItemAddedEvent",
    "ThreadItemDoneEvent",
    "ThreadItemRemovedEvent",
    "ThreadItemReplacedEvent",
    "ThreadItemUpdate",
    "ThreadItemUpdated",
    "ThreadItemUpdatedEvent",
    "ThreadStreamEvent",
    "ThreadUpdatedEvent",
    "WidgetComponentUpdated",
    "WidgetRootUpdated",
    "WidgetStreamingTextValueDelta",
    "WorkflowTaskAdded",
    "WorkflowTaskUpdated",
]


class AssistantMessageContentPartAdded(BaseModel):
    """A new content part starts at `content_index`."""

    type: Literal["assistant_message.content_part.added"] = "assistant_message.content_part.added"
    content_index: int
    content: AssistantMessageContent


class AssistantMessageContentPartTextDelta(BaseModel):
    """Text appended to the content part at `content_index`."""

    type: Literal["assistant_message.content_part.text_delta"] = (
        "assistant_message.content_part.text_delta"
    )
    content_index: int
    delta: str


class AssistantMessageContentPartAnnotationAdded(BaseModel):
    """A citation inserted into the content part at `content_index`."""

    type: Literal["assistant_message.content_part.annotation_added"] = (
        "assistant_message.content_part.annotation_added"
    )
    content_index: int
    annotation_index: int
    annotation: Annotation


class AssistantMessageContentPartDone(BaseModel):
    """The content part at `content_index` is final."""

    type: Literal["assistant_message.content_part.done"] = "assistant_message.content_part.done"
    content_index: int
    content: AssistantMessageContent


class WidgetStreamingTextValueDelta(BaseModel):
    """Text appended to the Text/Markdown component `component_id`."""

    type: Literal["widget.streaming_text.value_delta"] = "widget.streaming_text.value_delta"
    component_id: str
    delta: str
    done: bool


class WidgetRootUpdated(BaseModel):
    """The whole widget tree replaced."""

    type: Literal["widget.root.updated"] = "widget.root.updated"
    widget: WidgetRoot


class WidgetComponentUpdated(BaseModel):
    """One component of the widget tree replaced."""

    type: Literal["widget.component.updated"] = "widget.component.updated"
    component_id: str
    component: WidgetComponent


class WorkflowTaskAdded(BaseModel):
    """A task appended to a workflow."""

    type: Literal["workflow.task.added"] = "workflow.task.added"
    task_index: int
    task: Task


class WorkflowTaskUpdated(BaseModel):
    """The workflow task at `task_index` replaced."""

    type: Literal["workflow.task.updated"] = "workflow.task.updated"
    task_index: int
    task: Task


class GeneratedImageUpdated(BaseModel):
    """A generated image changed (e.g. a sharper partial), with optional progress 0..1."""

    type: Literal["generated_image.updated"] = "generated_image.updated"
    image: GeneratedImage
    progress: float | None = None


# A plain (smart-mode) union like the reference's, so an update without `type`
# validates the same way on both.
ThreadItemUpdate = (
    AssistantMessageContentPartAdded
    | AssistantMessageContentPartTextDelta
    | AssistantMessageContentPartAnnotationAdded
    | AssistantMessageContentPartDone
    | WidgetStreamingTextValueDelta
    | WidgetComponentUpdated
    | WidgetRootUpdated
    | WorkflowTaskAdded
    | WorkflowTaskUpdated
    | GeneratedImageUpdated
)
"""Any incremental change to an item that is still streaming."""


class ThreadCreatedEvent(BaseModel):
    """A new thread exists."""

    type: Literal["thread.created"] = "thread.created"
    thread: Thread


class ThreadUpdatedEvent(BaseModel):
    """The thread's metadata (title, status...) changed."""

    type: Literal["thread.updated"] = "thread.updated"
    thread: Thread


class ThreadItemAddedEvent(BaseModel):
    """An item starts streaming; updates and a done event follow."""

    type: Literal["thread.item.added"] = "thread.item.added"
    item: ThreadItem


class ThreadItemUpdatedEvent(BaseModel):
    """An incremental change to a streaming item."""

    type: Literal["thread.item.updated"] = "thread.item.updated"
    item_id: str
    update: ThreadItemUpdate


ThreadItemUpdated = ThreadItemUpdatedEvent
"""Alias kept for code written against older openai-chatkit releases."""


class ThreadItemDoneEvent(BaseModel):
    """An item is complete; it is saved to the store."""

    type: Literal["thread.item.done"] = "thread.item.done"
    item: ThreadItem


class ThreadItemRemovedEvent(BaseModel):
    """An item is gone; it is deleted from the store."""

    type: Literal["thread.item.removed"] = "thread.item.removed"
    item_id: str


class ThreadItemReplacedEvent(BaseModel):
    """An item replaced in place; the new version is saved."""

    type: Literal["thread.item.replaced"] = "thread.item.replaced"
    item: ThreadItem


class StreamOptions(BaseModel):
    """Options of one streaming response."""

    allow_cancel: bool
    """Whether the UI shows a stop button (which aborts the request)."""


class StreamOptionsEvent(BaseModel):
    """The first event of every reply: its stream options."""

    type: Literal["stream_options"] = "stream_options"
    stream_options: StreamOptions


class ProgressUpdateEvent(BaseModel):
    """A transient status line ("Searching...")."""

    type: Literal["progress_update"] = "progress_update"
    icon: IconName | None = None
    text: str


class ClientEffectEvent(BaseModel):
    """Asks the client page to run a side effect by name."""

    type: Literal["client_effect"] = "client_effect"
    name: str
    data: dict[str, Any] = Field(default_factory=dict)


class ErrorEvent(BaseModel):
    """The reply failed; the UI shows a message and maybe a retry button."""

    type: Literal["error"] = "error"
    code: str = "custom"
    message: str | None = None
    allow_retry: bool = False


class NoticeEvent(BaseModel):
    """A user-facing notice (markdown allowed in `message`)."""

    type: Literal["notice"] = "notice"
    level: Literal["info", "warning", "danger"]
    message: str
    title: str | None = None


ThreadStreamEvent = Annotated[
    ThreadCreatedEvent
    | ThreadUpdatedEvent
    | ThreadItemDoneEvent
    | ThreadItemAddedEvent
    | ThreadItemUpdatedEvent
    | ThreadItemRemovedEvent
    | ThreadItemReplacedEvent
    | StreamOptionsEvent
    | ProgressUpdateEvent
    | ClientEffectEvent
    | ErrorEvent
    | NoticeEvent,
    Field(discriminator="type"),
]
"""Any event of a streaming response."""
