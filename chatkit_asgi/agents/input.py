"""Thread history as Agents SDK input: `ThreadItemConverter` and `simple_to_agent_input`.

Every kind of stored item has a method that turns it into Responses API input
items, under openai-chatkit's names and with its defaults, so a converter
subclass written for `chatkit.agents` works unchanged and the model reads the
same input:

- user messages: their text (tags as `@name`), then, for the last message, the
  text it quotes, then the context of its tags (`tag_to_message_content`, which
  the app must define when tags are used);
- attachments (`attachment_to_message_content`): read from the attachment
  store when the converter has one (`ThreadItemConverter.for_turn(turn)`), as
  images, text or files; without one the app must define it, as in the reference;
- assistant messages: their text;
- completed client tool calls: the function call and its output;
- widgets, custom tasks and workflows' custom tasks, structured input and
  generated images: context saying what the user was shown;
- hidden context (the app's, when it is text, and the library's own): notes
  for the model only; other hidden content needs `hidden_context_to_input`.

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
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    SDKHiddenContextItem,
    StructuredInputItem,
    Task,
    TaskItem,
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


_HIDDEN_CONTEXT = (
    "Hidden context for the agent (not shown to the user):\n<HiddenContext>\n{}\n</HiddenContext>"
)
_TASK_SHOWN = (
    "A message was displayed to the user that the following task was performed:\n"
    "<Task>\n{}\n</Task>"
)
_TAGS_PREAMBLE = (
    "# User-provided context for @-mentions\n"
    "- When referencing resolved entities, use their canonical names **without** '@'.\n"
    "- The '@' form appears only in user text and should not be echoed."
)


def _custom_task_note(task: Task) -> EasyInputMessageParam | None:
    """What the model reads about a custom task the user saw; None for other tasks."""
    if not isinstance(task, CustomTask) or not (task.title or task.content):
        return None  # search, file, image and thought tasks show the model's own work
    shown = ": ".join(part for part in (task.title, task.content) if part)
    return _note(_TASK_SHOWN.format(shown))


def _type_first(node: Any) -> Any:
    """The widget JSON with each component's `type` first, as the model best reads it
    (and as openai-chatkit writes it)."""
    if isinstance(node, dict):
        ordered = {"type": node["type"]} if "type" in node else {}
        ordered.update((key, _type_first(value)) for key, value in node.items())
        return ordered
    if isinstance(node, list):
        return [_type_first(value) for value in node]
    return node


class ThreadItemConverter:
    """Turns stored thread items into Agents SDK input items.

    Give it the attachment store (and the request context it needs) to send
    attachment bytes to the model; `ThreadItemConverter.for_turn(turn)` does.
    Attachments larger than `max_attachment_bytes` are sent by URL when they
    have one, else described.

    A subclass may skip `__init__` (openai-chatkit's converter has none): the
    options then keep their defaults.
    """

    # Class-level defaults, for subclasses whose `__init__` does not call ours.
    attachment_store: AttachmentStore[Any] | None = None
    context: Any = None
    max_attachment_bytes: int = 20 * 1024 * 1024

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
        # (A copy: the caller may change its list while this awaits.)
        items = list(thread_items) if isinstance(thread_items, Sequence) else [thread_items]
        out: list[TResponseInputItem] = []
        for position, item in enumerate(items):
            last = position == len(items) - 1
            out.extend(await self._thread_item_to_input_item(item, is_last_message=last))
        return out

    async def _thread_item_to_input_item(
        self, item: ThreadItem, is_last_message: bool = True
    ) -> list[TResponseInputItem]:
        # (openai-chatkit's name for this step, which some subclasses override.)
        converted = await self.item_to_input(item, is_last_message=is_last_message)
        if converted is None:
            return []
        return converted if isinstance(converted, list) else [converted]

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
        """The user's message (text with `@tags`, then attachments); for the last
        message the text it quotes; then what its tags refer to."""
        words: list[str] = []
        tags: dict[str, UserMessageTagContent] = {}
        for part in item.content:
            if isinstance(part, UserMessageTextContent):
                words.append(part.text)
            else:
                words.append(f"@{part.text}")
                tags.setdefault(part.text, part)
        content: list[ResponseInputContentParam] = [_text("".join(words))]
        for attachment in item.attachments:
            attached = await self.attachment_to_message_content(attachment)
            if attached is not None:
                content.append(attached)
        out: list[TResponseInputItem] = [
            EasyInputMessageParam(type="message", role="user", content=content)
        ]
        if item.quoted_text and is_last_message:
            # (Earlier quotes were answered already: only the question at hand gets one.)
            out.append(_note(f"The user is referring to this in particular: \n{item.quoted_text}"))
        described: list[ResponseInputContentParam] = []
        for tag in tags.values():
            tag_content = await self.tag_to_message_content(tag)
            if tag_content is not None:
                described.append(tag_content)
        if described:
            out.append(
                EasyInputMessageParam(
                    type="message", role="user", content=[_text(_TAGS_PREAMBLE), *described]
                )
            )
        return out

    async def tag_to_message_content(
        self, tag: UserMessageTagContent
    ) -> ResponseInputContentParam | None:
        """What the model learns about an `@tag` (from its `id`, `group` and `data`).

        Required when the UI offers tags: what a tag means is the app's to say. ::

            async def tag_to_message_content(self, tag):
                customer = await load_customer(tag.id)
                return {"type": "input_text", "text": f"@{tag.text} is {customer.summary}"}
        """
        raise NotImplementedError(
            f"the user message mentions @{tag.text}, but {type(self).__name__} does not "
            "define tag_to_message_content (what the model should learn about a tag)"
        )

    async def attachment_to_message_content(
        self, attachment: Attachment
    ) -> ResponseInputContentParam | None:
        """An attachment of a user message as message content (openai-chatkit's name).

        By default `attachment_to_input`: the bytes from the attachment store.
        """
        return await self.attachment_to_input(attachment)

    async def attachment_to_input(self, attachment: Attachment) -> ResponseInputContentParam | None:
        """An attachment as model input: images as images, text files as text, other
        files as files; from the stored bytes, else the attachment's URL.

        Needs the attachment store (`ThreadItemConverter.for_turn(turn)`); without
        one, raises `NotImplementedError` as openai-chatkit's converter does.
        (`attachment_to_message_content` under chatkit-asgi's earlier name.)
        """
        if self.attachment_store is None:
            raise NotImplementedError(
                f"the user message has an attachment ({attachment.name!r}), but "
                f"{type(self).__name__} has no attachment store to read it from: build it "
                "with ThreadItemConverter.for_turn(turn) or attachment_store=..., or define "
                "attachment_to_message_content"
            )
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
        """The assistant's text, as the message's text content (nothing when empty).

        openai-chatkit sends `output_text` parts here instead; the Agents SDK's
        Chat Completions converter (OpenAIChatCompletionsModel, LiteLLM) refuses
        those in an input message, so every reply after the first would fail on
        such models. Text content reads the same to every model.
        """
        text = "\n\n".join(part.text for part in item.content if part.text)
        if not text:
            return None
        return EasyInputMessageParam(type="message", role="assistant", content=text)

    async def client_tool_call_to_input(self, item: ClientToolCallItem) -> InputItems:
        """A completed client tool call as the function call and its output; a pending
        one as nothing (a call without its output is refused by the model)."""
        if item.status == "pending":
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
        """A note that the widget was shown, with its JSON."""
        tree = item.widget.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        shown = json.dumps(_type_first(tree), separators=(",", ":"), ensure_ascii=False)
        return _note(
            f"The following graphical UI widget (id: {item.id}) was displayed to the user:{shown}"
        )

    async def workflow_to_input(self, item: WorkflowItem) -> InputItems:
        """A note for each custom task of the workflow (others show the model's own work)."""
        return [note for note in map(_custom_task_note, item.workflow.tasks) if note is not None]

    async def task_to_input(self, item: TaskItem) -> InputItems:
        """A note about a custom task the user saw."""
        return _custom_task_note(item.task)

    async def structured_input_to_input(self, item: StructuredInputItem) -> InputItems:
        """The questions asked, the user's answers and the request's status."""
        lines = []
        for question in item.inputs:
            answer = question.answer
            if answer is None:
                state = "unanswered"
            elif answer.skipped:
                state = "skipped"
            else:
                state = ", ".join(answer.values)
            lines.append(f"- {question.question}: {state}")
        listed = "\n".join(lines)
        return _note(
            "A structured input request was displayed to the user with the following "
            f"status: {item.status}\n<StructuredInput>\n{listed}\n</StructuredInput>"
        )

    async def generated_image_to_input(self, item: GeneratedImageItem) -> InputItems:
        """The image the assistant generated, by URL, so it can talk about it.

        Override when the URL is not one the model can reach.
        """
        if item.image is None:
            return None
        return EasyInputMessageParam(
            type="message",
            role="user",
            content=[
                _text("The following image was generated by the agent."),
                ResponseInputImageParam(
                    type="input_image", detail="auto", image_url=item.image.url
                ),
            ],
        )

    # -- context the user never sees --------------------------------------------------

    async def hidden_context_to_input(self, item: HiddenContextItem) -> InputItems:
        """The app's hidden context, when it is text.

        Other content is the app's to describe: define this method for it.
        """
        if not isinstance(item.content, str):
            raise NotImplementedError(
                f"hidden context item {item.id} holds {type(item.content).__name__}, not text: "
                f"define {type(self).__name__}.hidden_context_to_input to say what the model "
                "should read for it"
            )
        return _note(_HIDDEN_CONTEXT.format(item.content))

    async def sdk_hidden_context_to_input(self, item: SDKHiddenContextItem) -> InputItems:
        """The library's own notes, e.g. that the user stopped the previous reply."""
        return _note(_HIDDEN_CONTEXT.format(item.content))

    async def end_of_turn_to_input(self, item: EndOfTurnItem) -> InputItems:
        """Nothing: the end of a turn is a hint for the UI."""
        return None


_DEFAULT = ThreadItemConverter()


async def simple_to_agent_input(
    thread_items: Sequence[ThreadItem] | ThreadItem,
) -> list[TResponseInputItem]:
    """`ThreadItemConverter().to_agent_input(thread_items)`: the reference's defaults
    (no attachment store: attachments and tags need a converter of your own)."""
    return await _DEFAULT.to_agent_input(thread_items)
