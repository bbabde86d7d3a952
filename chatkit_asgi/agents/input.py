"""Thread history as Agents SDK input: `ThreadItemConverter` and `simple_to_agent_input`.

Every kind of stored item has a method that turns it into Responses API input
items (override one to change how that kind reads to the model):

- user messages: their text (tags as `@name`), quoted text and tag context,
  and attachments (images and files as model inputs, from the attachment
  store's bytes when it has them, else from their URL);
- assistant messages: their text;
- completed client tool calls: the function call and its output;
- widgets, workflows, tasks, structured input and generated images: compact
  context saying what the user was shown;
- hidden context (the app's and the library's own): notes for the model only.

Pending client tool calls produce nothing, so the model never sees a call
without its output; a cancelled reply is followed by the library's hidden
note, so the model does not carry on with it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agents import TResponseInputItem
from openai.types.responses import (
    EasyInputMessageParam,
    ResponseFunctionToolCallParam,
    ResponseInputContentParam,
    ResponseInputFileParam,
    ResponseInputImageParam,
    ResponseInputTextParam,
)
from openai.types.responses.response_input_item_param import FunctionCallOutput
from typing_extensions import Self

from ..store import AttachmentStore, NotFoundError
from ..types import (
    AssistantMessageItem,
    Attachment,
    ClientToolCallItem,
    CustomTask,
    EndOfTurnItem,
    FileTask,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    ImageTask,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputItem,
    Task,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    WorkflowItem,
)

if TYPE_CHECKING:
    from ..turn import Turn

__all__ = ["ThreadItemConverter", "simple_to_agent_input"]

InputItems = TResponseInputItem | list[TResponseInputItem] | None
"""What a per-kind method returns: one input item, several, or nothing."""

_TEXT_TYPES = ("application/json", "application/xml", "application/x-yaml", "application/csv")


def _text(text: str) -> ResponseInputTextParam:
    return ResponseInputTextParam(type="input_text", text=text)


def _note(text: str) -> EasyInputMessageParam:
    """Context for the model, given as a user message (the only role every model takes)."""
    return EasyInputMessageParam(type="message", role="user", content=[_text(text)])


def _data_url(mime_type: str, data: bytes) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def _task_line(task: Task) -> str | None:
    """One line for a task the user saw; None for tasks that say nothing to the model."""
    if isinstance(task, ThoughtTask):
        return None  # the model's own reasoning summary: not context
    if isinstance(task, CustomTask):
        parts = [p for p in (task.title, task.content) if p]
        return ": ".join(parts) or None
    if isinstance(task, SearchTask):
        queries = ", ".join(task.queries or ([task.title_query] if task.title_query else []))
        sources = "; ".join(f"{s.title} <{s.url}>" for s in task.sources)
        line = f"searched the web for {queries or task.title or 'information'}"
        return f"{line} (found: {sources})" if sources else line
    if isinstance(task, FileTask):
        files = ", ".join(s.filename for s in task.sources)
        return f"{task.title or 'read files'}" + (f" ({files})" if files else "")
    if isinstance(task, ImageTask):
        return task.title or None
    return None


class ThreadItemConverter:
    """Turns stored thread items into Agents SDK input items.

    Give it the attachment store (and the request context it needs) to send
    attachment bytes to the model; `ThreadItemConverter.for_turn(turn)` does.
    Attachments larger than `max_attachment_bytes` are sent by URL when they
    have one, else described.
    """

    def __init__(
        self,
        *,
        attachment_store: AttachmentStore[Any] | None = None,
        context: Any = None,
        max_attachment_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self.attachment_store = attachment_store
        self.context = context
        self.max_attachment_bytes = max_attachment_bytes

    @classmethod
    def for_turn(cls, turn: Turn[Any], **options: Any) -> Self:
        """A converter that reads attachments through the turn's attachment store."""
        return cls(attachment_store=turn.attachment_store, context=turn.context, **options)

    # -- the whole history ------------------------------------------------------------

    async def to_agent_input(
        self, thread_items: Sequence[ThreadItem] | ThreadItem
    ) -> list[TResponseInputItem]:
        """The input items for `thread_items` (oldest first), ready for the Runner."""
        items = list(thread_items) if isinstance(thread_items, Sequence) else [thread_items]
        out: list[TResponseInputItem] = []
        for position, item in enumerate(items):
            converted = await self.item_to_input(item, is_last_message=position == len(items) - 1)
            if converted is None:
                continue
            out.extend(converted if isinstance(converted, list) else [converted])
        return out

    async def item_to_input(self, item: ThreadItem, *, is_last_message: bool = True) -> InputItems:
        """The input for one item, by kind."""
        if isinstance(item, UserMessageItem):
            return await self.user_message_to_input(item, is_last_message)
        if isinstance(item, AssistantMessageItem):
            return await self.assistant_message_to_input(item)
        if isinstance(item, ClientToolCallItem):
            return await self.client_tool_call_to_input(item)
        if isinstance(item, WidgetItem):
            return await self.widget_to_input(item)
        if isinstance(item, WorkflowItem):
            return await self.workflow_to_input(item)
        if isinstance(item, TaskItem):
            return await self.task_to_input(item)
        if isinstance(item, StructuredInputItem):
            return await self.structured_input_to_input(item)
        if isinstance(item, GeneratedImageItem):
            return await self.generated_image_to_input(item)
        if isinstance(item, HiddenContextItem):
            return await self.hidden_context_to_input(item)
        if isinstance(item, SDKHiddenContextItem):
            return await self.sdk_hidden_context_to_input(item)
        if isinstance(item, EndOfTurnItem):
            return await self.end_of_turn_to_input(item)
        raise TypeError(f"no conversion for thread item of type {type(item).__name__}")

    # -- user messages ----------------------------------------------------------------

    async def user_message_to_input(
        self, item: UserMessageItem, is_last_message: bool = True
    ) -> InputItems:
        """The user's message: quoted text, text with `@tags`, tag context, attachments."""
        content: list[ResponseInputContentParam] = []
        if item.quoted_text:
            content.append(
                _text(
                    "The user is referring to this text in particular:\n"
                    f"<quoted_text>\n{item.quoted_text}\n</quoted_text>"
                )
            )
        words: list[str] = []
        tags: dict[str, UserMessageTagContent] = {}
        for part in item.content:
            if isinstance(part, UserMessageTextContent):
                words.append(part.text)
            else:
                words.append(f"@{part.text}")
                tags.setdefault(part.text, part)
        content.append(_text("".join(words)))
        for tag in tags.values():
            tag_content = await self.tag_to_message_content(tag)
            if tag_content is not None:
                content.append(tag_content)
        for attachment in item.attachments:
            attached = await self.attachment_to_input(attachment)
            if attached is not None:
                content.append(attached)
        return EasyInputMessageParam(type="message", role="user", content=content)

    async def tag_to_message_content(
        self, tag: UserMessageTagContent
    ) -> ResponseInputContentParam | None:
        """What the model learns about an `@tag`: its id, group and data, by default."""
        details = {"id": tag.id, "group": tag.group, "data": tag.data}
        described = json.dumps({k: v for k, v in details.items() if v is not None}, default=str)
        return _text(f"@{tag.text} refers to: {described}")

    async def attachment_to_input(self, attachment: Attachment) -> ResponseInputContentParam | None:
        """An attachment as model input: images as images, text files as text, other
        files as files; from the stored bytes, else the attachment's URL."""
        data = await self.attachment_bytes(attachment)
        mime = attachment.mime_type
        if isinstance(attachment, ImageAttachment):
            url = _data_url(mime, data) if data is not None else str(attachment.preview_url)
            return ResponseInputImageParam(type="input_image", detail="auto", image_url=url)
        if data is not None and (mime.startswith("text/") or mime in _TEXT_TYPES):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                return _text(f'<file name="{attachment.name}">\n{text}\n</file>')
        if data is not None:
            return ResponseInputFileParam(
                type="input_file", filename=attachment.name, file_data=_data_url(mime, data)
            )
        return _text(
            f"[The user attached the file {attachment.name!r} ({mime}); "
            "its content is not available.]"
        )

    async def attachment_bytes(self, attachment: Attachment) -> bytes | None:
        """The attachment's bytes from the attachment store, or None when there are
        none to read (no store, gone, or larger than `max_attachment_bytes`)."""
        store = self.attachment_store
        if store is None:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in store.open(attachment.id, self.context):
                size += len(chunk)
                if size > self.max_attachment_bytes:
                    return None
                chunks.append(chunk)
        except (NotFoundError, NotImplementedError):
            return None
        return b"".join(chunks)

    # -- what the assistant said and did ----------------------------------------------

    async def assistant_message_to_input(self, item: AssistantMessageItem) -> InputItems:
        """The assistant's text."""
        text = "\n\n".join(part.text for part in item.content if part.text)
        if not text:
            return None
        return EasyInputMessageParam(type="message", role="assistant", content=text)

    async def client_tool_call_to_input(self, item: ClientToolCallItem) -> InputItems:
        """A completed client tool call as the function call and its output; a pending
        one as nothing (a call without its output is refused by the model)."""
        if item.status != "completed":
            return None
        return [
            ResponseFunctionToolCallParam(
                type="function_call",
                call_id=item.call_id,
                name=item.name,
                arguments=json.dumps(item.arguments),
            ),
            FunctionCallOutput(
                type="function_call_output",
                call_id=item.call_id,
                output=json.dumps(item.output, default=str),
            ),
        ]

    async def widget_to_input(self, item: WidgetItem) -> InputItems:
        """A note that the widget was shown: its copy text, else its JSON."""
        shown = item.copy_text or item.widget.model_dump_json(exclude_none=True)
        return _note(f"The user was shown a widget (id {item.id}):\n{shown}")

    async def workflow_to_input(self, item: WorkflowItem) -> InputItems:
        """A note listing the workflow's tasks the user saw (reasoning is left out)."""
        lines = [line for line in map(_task_line, item.workflow.tasks) if line]
        if not lines:
            return None
        listed = "\n".join(f"- {line}" for line in lines)
        return _note(f"The user was shown that these steps were performed:\n{listed}")

    async def task_to_input(self, item: TaskItem) -> InputItems:
        """A note about a task the user saw."""
        line = _task_line(item.task)
        return _note(f"The user was shown that this step was performed: {line}") if line else None

    async def structured_input_to_input(self, item: StructuredInputItem) -> InputItems:
        """The questions asked and the user's answers."""
        lines = []
        for question in item.inputs:
            answer = question.answer
            if answer is None:
                state = "not answered"
            elif answer.skipped:
                state = "skipped"
            else:
                state = ", ".join(answer.values) or "(empty)"
            lines.append(f"- {question.question}: {state}")
        listed = "\n".join(lines)
        return _note(f"The user was asked these questions ({item.status}):\n{listed}")

    async def generated_image_to_input(self, item: GeneratedImageItem) -> InputItems:
        """The image the assistant generated, so it can talk about it."""
        if item.image is None:
            return None
        return EasyInputMessageParam(
            type="message",
            role="user",
            content=[
                _text("The assistant generated this image and the user was shown it:"),
                ResponseInputImageParam(
                    type="input_image", detail="auto", image_url=item.image.url
                ),
            ],
        )

    # -- context the user never sees --------------------------------------------------

    async def hidden_context_to_input(self, item: HiddenContextItem) -> InputItems:
        """The app's hidden context (text as is, anything else as JSON)."""
        content = item.content
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        return _note(f"Context for you, not shown to the user:\n<context>\n{text}\n</context>")

    async def sdk_hidden_context_to_input(self, item: SDKHiddenContextItem) -> InputItems:
        """The library's own notes, e.g. that the user stopped the previous reply."""
        return _note(
            f"Context for you, not shown to the user:\n<context>\n{item.content}\n</context>"
        )

    async def end_of_turn_to_input(self, item: EndOfTurnItem) -> InputItems:
        """Nothing: the end of a turn is a hint for the UI."""
        return None


_DEFAULT = ThreadItemConverter()


async def simple_to_agent_input(
    thread_items: Sequence[ThreadItem] | ThreadItem,
) -> list[TResponseInputItem]:
    """`ThreadItemConverter().to_agent_input(thread_items)`: attachments by URL only."""
    return await _DEFAULT.to_agent_input(thread_items)
