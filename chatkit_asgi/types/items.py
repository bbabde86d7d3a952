"""Threads and the items they hold: messages, tool calls, widgets, workflows..."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ._base import Page, UtcDatetime
from .attachments import Attachment
from .components import WidgetRoot
from .sources import Annotation, Task, Workflow

__all__ = [
    "ActiveStatus",
    "AssistantMessageContent",
    "AssistantMessageItem",
    "ClientToolCallItem",
    "ClosedStatus",
    "EndOfTurnItem",
    "GeneratedImage",
    "GeneratedImageItem",
    "HiddenContextItem",
    "InferenceOptions",
    "LockedStatus",
    "SDKHiddenContextItem",
    "StructuredInput",
    "StructuredInputAnswer",
    "StructuredInputBase",
    "StructuredInputFreeform",
    "StructuredInputItem",
    "StructuredInputMultipleChoice",
    "StructuredInputMultipleChoiceOption",
    "TaskItem",
    "Thread",
    "ThreadItem",
    "ThreadItemBase",
    "ThreadMetadata",
    "ThreadStatus",
    "ToolChoice",
    "UserMessageContent",
    "UserMessageItem",
    "UserMessageTagContent",
    "UserMessageTextContent",
    "WidgetItem",
    "WorkflowItem",
]


class ActiveStatus(BaseModel):
    """The thread accepts new messages."""

    type: Literal["active"] = Field(default="active", frozen=True)


class LockedStatus(BaseModel):
    """The thread is read-only for now, with an optional reason shown to the user."""

    type: Literal["locked"] = Field(default="locked", frozen=True)
    reason: str | None = None


class ClosedStatus(BaseModel):
    """The thread is finished, with an optional reason shown to the user."""

    type: Literal["closed"] = Field(default="closed", frozen=True)
    reason: str | None = None


ThreadStatus = Annotated[ActiveStatus | LockedStatus | ClosedStatus, Field(discriminator="type")]
"""Where a thread is in its life."""


class ThreadMetadata(BaseModel):
    """A thread without its items: what stores save and lists show."""

    title: str | None = None
    id: str
    created_at: UtcDatetime
    status: ThreadStatus = Field(default_factory=ActiveStatus)
    allowed_image_domains: list[str] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Thread(ThreadMetadata):
    """A thread with a page of its items, as `threads.get_by_id` returns it."""

    items: Page[ThreadItem]


class ToolChoice(BaseModel):
    """A tool the user asked the assistant to use."""

    id: str


class InferenceOptions(BaseModel):
    """Model and tool choices the composer sent with a message."""

    tool_choice: ToolChoice | None = None
    model: str | None = None


class UserMessageTextContent(BaseModel):
    """Plain text the user typed."""

    type: Literal["input_text"] = "input_text"
    text: str


class UserMessageTagContent(BaseModel):
    """An @-mention style tag in the user's message."""

    type: Literal["input_tag"] = "input_tag"
    id: str
    text: str
    data: dict[str, Any]
    group: str | None = None
    interactive: bool = False


UserMessageContent = Annotated[
    UserMessageTextContent | UserMessageTagContent, Field(discriminator="type")
]
"""A part of a user message."""


class AssistantMessageContent(BaseModel):
    """A part of an assistant message: text with its citations."""

    annotations: list[Annotation] = Field(default_factory=list)
    text: str
    type: Literal["output_text"] = "output_text"


class ThreadItemBase(BaseModel):
    """Fields every item has."""

    id: str
    thread_id: str
    created_at: UtcDatetime


class UserMessageItem(ThreadItemBase):
    """A message from the user."""

    type: Literal["user_message"] = "user_message"
    content: list[UserMessageContent]
    attachments: list[Attachment] = Field(default_factory=list)
    quoted_text: str | None = None
    inference_options: InferenceOptions


class AssistantMessageItem(ThreadItemBase):
    """A message from the assistant."""

    type: Literal["assistant_message"] = "assistant_message"
    content: list[AssistantMessageContent]


class ClientToolCallItem(ThreadItemBase):
    """A tool the client page runs; `pending` until it sends the output back."""

    type: Literal["client_tool_call"] = "client_tool_call"
    status: Literal["pending", "completed"] = "pending"
    call_id: str
    name: str
    arguments: dict[str, Any]
    output: Any | None = None


class WidgetItem(ThreadItemBase):
    """An interactive widget tree."""

    type: Literal["widget"] = "widget"
    widget: WidgetRoot
    copy_text: str | None = None


class GeneratedImage(BaseModel):
    """An image the assistant generated."""

    id: str
    url: str


class GeneratedImageItem(ThreadItemBase):
    """A generated image, empty while it is still being made."""

    type: Literal["generated_image"] = "generated_image"
    image: GeneratedImage | None = None


class StructuredInputAnswer(BaseModel):
    """The answer recorded for one question."""

    values: list[str] = Field(default_factory=list)
    skipped: bool = False


class StructuredInputBase(BaseModel):
    """Fields every structured-input question has."""

    id: str
    question: str
    answer: StructuredInputAnswer | None = None


class StructuredInputMultipleChoiceOption(BaseModel):
    """One choice of a multiple-choice question."""

    value: str


class StructuredInputMultipleChoice(StructuredInputBase):
    """A question answered by picking one (or, with `multiple`, several) options."""

    type: Literal["multiple_choice"] = "multiple_choice"
    options: list[StructuredInputMultipleChoiceOption]
    multiple: bool = False


class StructuredInputFreeform(StructuredInputBase):
    """A question answered with free text."""

    type: Literal["freeform"] = "freeform"
    description: str | None = None


StructuredInput = Annotated[
    StructuredInputMultipleChoice | StructuredInputFreeform, Field(discriminator="type")
]
"""Either kind of structured-input question."""


class StructuredInputItem(ThreadItemBase):
    """Questions the assistant asks; `pending` until the user answers or skips."""

    type: Literal["structured_input"] = "structured_input"
    status: Literal["pending", "answered", "skipped"] = "pending"
    inputs: list[StructuredInput]


class TaskItem(ThreadItemBase):
    """A single task shown on its own."""

    type: Literal["task"] = "task"
    task: Task


class WorkflowItem(ThreadItemBase):
    """A workflow: tasks grouped under a summary."""

    type: Literal["workflow"] = "workflow"
    workflow: Workflow


class EndOfTurnItem(ThreadItemBase):
    """Marks the end of the assistant's turn."""

    type: Literal["end_of_turn"] = "end_of_turn"


class HiddenContextItem(ThreadItemBase):
    """Context stored in the thread for the model but never sent to the client."""

    type: Literal["hidden_context_item"] = "hidden_context_item"
    content: Any


class SDKHiddenContextItem(ThreadItemBase):
    """Hidden context written by the library itself (e.g. "the user cancelled")."""

    type: Literal["sdk_hidden_context"] = "sdk_hidden_context"
    content: str


ThreadItem = Annotated[
    UserMessageItem
    | AssistantMessageItem
    | ClientToolCallItem
    | WidgetItem
    | GeneratedImageItem
    | StructuredInputItem
    | WorkflowItem
    | TaskItem
    | HiddenContextItem
    | SDKHiddenContextItem
    | EndOfTurnItem,
    Field(discriminator="type"),
]
"""Any kind of thread item."""

Thread.model_rebuild()
