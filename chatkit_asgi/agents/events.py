"""`stream_agent_response`: an Agents SDK streamed run, as ChatKit events.

What the model streams becomes what the ChatKit UI draws:

- output messages: assistant message items, with text deltas, content parts and
  citations (file, URL and container-file citations become sources);
- reasoning summaries: a reasoning workflow with one thought task per summary
  part (the first thought of a workflow streams, the others appear whole),
  closed with its duration when a visible item follows it;
- function calls: workflow tasks, when the converter says so (`show_tool_calls`);
- image generation: a generated image item, updated with each partial image;
- a tool that sets `AgentContext.client_tool_call`: a pending client tool call
  item that ends the reply;
- a guardrail tripwire: the items of the reply are removed and the tripwire is
  raised again (`run_agent` turns it into an error the user sees).

Events are read by their `type`, not their class, and need not come in Responses
API order: Chat Completions models (the SDK's own handler, LiteLLM...) may send
deltas, content parts and annotations of an item that was never announced, and
give every item the same placeholder id. Items keep the model's ids, as in
openai-chatkit, except placeholder or repeated ones, which get the store's.

Events that tools emit through the `AgentContext` are merged in, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from agents import (
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    RunItemStreamEvent,
    RunResultStreaming,
)
from agents import exceptions as sdk_exceptions
from agents.items import ToolCallOutputItem
from openai.types.responses.response_output_text import (
    Annotation as ResponsesAnnotation,
)
from openai.types.responses.response_output_text import (
    AnnotationContainerFileCitation,
    AnnotationFileCitation,
    AnnotationURLCitation,
)
from pydantic import BaseModel, TypeAdapter

from ..store import StoreItemType
from ..types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartAnnotationAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ClientToolCallItem,
    CustomTask,
    ErrorEvent,
    FileSource,
    GeneratedImage,
    GeneratedImageItem,
    GeneratedImageUpdated,
    Task,
    ThoughtTask,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    URLSource,
    Workflow,
    WorkflowItem,
)
from .context import AgentContext, _Barrier, _End, _FromContext, _FromSDK, _Outbox

try:  # where the SDK keeps it; the value has not changed since it was introduced
    from agents.models.fake_id import FAKE_RESPONSES_ID
except ImportError:  # pragma: no cover - older SDKs
    FAKE_RESPONSES_ID = "__fake_id__"

__all__ = ["ResponseStreamConverter", "StreamingThoughtTracker", "stream_agent_response"]

_RESPONSES_ANNOTATION: TypeAdapter[ResponsesAnnotation] = TypeAdapter(ResponsesAnnotation)

# Tool guardrails arrived in later SDK releases; trip them the same way when present.
_TRIPWIRES: tuple[type[Exception], ...] = (
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    *(
        error
        for name in ("ToolInputGuardrailTripwireTriggered", "ToolOutputGuardrailTripwireTriggered")
        if isinstance(error := getattr(sdk_exceptions, name, None), type)
        and issubclass(error, Exception)
    ),
)

# Recent SDKs raise this after a refusal the user has already been shown: the
# reply is complete, not failed.
_REFUSAL: tuple[type[Exception], ...] = tuple(
    error
    for error in [getattr(sdk_exceptions, "ModelRefusalError", None)]
    if isinstance(error, type) and issubclass(error, Exception)
)

_IMAGE_SIGNATURES = {"iVBOR": "image/png", "/9j/": "image/jpeg", "UklGR": "image/webp"}


class ResponseStreamConverter:
    """How model output becomes ChatKit items; subclass and override any method.

    The method names and signatures are openai-chatkit's, so its converters
    port unchanged. `partial_images` is the number of partial images requested
    from the image tool (for progress); `show_tool_calls` shows each function
    call as a task of the open workflow.
    """

    # Class defaults too: a subclass whose `__init__` skips ours still works.
    partial_images: int | None = None
    """Partial images expected per generated image, for progress (None: unknown)."""
    show_tool_calls: bool = False
    """Show each function call as a task of the open workflow."""

    def __init__(self, *, partial_images: int | None = None, show_tool_calls: bool = False):
        self.partial_images = partial_images
        self.show_tool_calls = show_tool_calls

    # -- images ---------------------------------------------------------------------

    async def base64_image_to_url(
        self, image_id: str, base64_image: str, partial_image_index: int | None = None
    ) -> str:
        """The URL stored for a generated image; a data URL by default.

        Override to upload the image somewhere and return its URL (thread items
        then stay small). `image_id` is stable across the partial images;
        `partial_image_index` is None for the final image.
        """
        mime = next(
            (m for prefix, m in _IMAGE_SIGNATURES.items() if base64_image.startswith(prefix)),
            "image/png",
        )
        return f"data:{mime};base64,{base64_image}"

    def partial_image_index_to_progress(self, partial_image_index: int) -> float:
        """Progress 0..1 of a partial image (0 when `partial_images` is unknown)."""
        if not self.partial_images or self.partial_images <= 0:
            return 0.0
        return min(1.0, partial_image_index / self.partial_images)

    # -- citations ------------------------------------------------------------------

    async def file_citation_to_annotation(
        self, file_citation: AnnotationFileCitation
    ) -> Annotation | None:
        """A file search citation as a file source (None drops it)."""
        if not file_citation.filename:
            return None
        return Annotation(
            source=FileSource(filename=file_citation.filename, title=file_citation.filename),
            index=file_citation.index,
        )

    async def url_citation_to_annotation(
        self, url_citation: AnnotationURLCitation
    ) -> Annotation | None:
        """A web citation as a URL source placed at the end of the cited text."""
        return Annotation(
            source=URLSource(url=url_citation.url, title=url_citation.title or url_citation.url),
            index=url_citation.end_index,
        )

    async def container_file_citation_to_annotation(
        self, container_file_citation: AnnotationContainerFileCitation
    ) -> Annotation | None:
        """A code interpreter file citation as a file source (None drops it)."""
        filename = container_file_citation.filename
        if not filename:
            return None
        return Annotation(
            source=FileSource(filename=filename, title=filename),
            index=container_file_citation.end_index,
        )

    # -- tools and guardrails -------------------------------------------------------

    def tool_call_to_task(self, name: str, arguments: str) -> Task | None:
        """The task shown while a function tool runs, or None to show nothing."""
        if not self.show_tool_calls:
            return None
        return CustomTask(title=name, status_indicator="loading")

    def tool_output_to_task(self, task: Task, output: Any) -> Task:
        """The task shown once the tool has answered."""
        return task.model_copy(update={"status_indicator": "complete"})

    def guardrail_error(self, error: Exception) -> ThreadStreamEvent | None:
        """What the user sees when a guardrail stops the run (None: nothing).

        `run_agent` and `AgentResponder` send it; `stream_agent_response` itself
        raises the tripwire, as openai-chatkit's does.
        """
        if isinstance(error, InputGuardrailTripwireTriggered):
            return ErrorEvent(
                code="custom",
                message="Sorry, I can't help with that request.",
                allow_retry=False,
            )
        return ErrorEvent(
            code="custom",
            message="Sorry, I couldn't give an answer that passed the safety checks.",
            allow_retry=True,
        )

    # -- internal -------------------------------------------------------------------

    async def _annotation(self, raw: object) -> Annotation | None:
        # The event's annotation may be a look-alike class or a plain dict (the
        # openai client does not always parse it): read it again as the
        # output-text annotation type. One that does not read is dropped.
        data = raw.model_dump() if isinstance(raw, BaseModel) else raw
        try:
            annotation = _RESPONSES_ANNOTATION.validate_python(data)
        except ValueError:
            return None
        if isinstance(annotation, AnnotationFileCitation):
            return await self.file_citation_to_annotation(annotation)
        if isinstance(annotation, AnnotationURLCitation):
            return await self.url_citation_to_annotation(annotation)
        if isinstance(annotation, AnnotationContainerFileCitation):
            return await self.container_file_citation_to_annotation(annotation)
        return None

    async def _content(self, part: object) -> AssistantMessageContent | None:
        kind = getattr(part, "type", None)
        if kind == "output_text":
            converted = [await self._annotation(a) for a in getattr(part, "annotations", ())]
            return AssistantMessageContent(
                text=_text(getattr(part, "text", "")),
                annotations=[a for a in converted if a is not None],
            )
        if kind == "refusal":
            return AssistantMessageContent(text=_text(getattr(part, "refusal", "")))
        return None


_DEFAULT_CONVERTER = ResponseStreamConverter()


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _index(value: object) -> int:
    return value if isinstance(value, int) else 0


def _field(obj: object, name: str) -> Any:
    """A field of a model object or of its dict form."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _model_id(value: object) -> str | None:
    """The model's id of an item, if it is a real one (not the SDK's placeholder)."""
    if isinstance(value, str) and value and value != FAKE_RESPONSES_ID:
        return value
    return None


class StreamingThoughtTracker(BaseModel):
    """The thought that is streaming: the first one of a reasoning workflow.

    `stream_agent_response` keeps one while such a thought streams (the name
    and fields are openai-chatkit's): `item_id` names the model's reasoning
    item, `index` its summary part, and `task` is the thought on the client's
    screen.
    """

    item_id: str
    index: int
    task: ThoughtTask


class _Translation:
    """The state of one run's translation into ChatKit events.

    Items of the model are told apart by their id when they have a real one,
    else (Chat Completions: one placeholder id for everything) by model call and
    output index: their key. Nothing assumes an item was announced before its
    parts.
    """

    def __init__(self, context: AgentContext[Any], converter: ResponseStreamConverter) -> None:
        self.ctx = context
        self.converter = converter
        self.response = 0
        # model item key -> ChatKit id, from its first event to its `output_item.done`
        self.messages: dict[str, str] = {}
        # streamed annotations, by (ChatKit message id, content index)
        self.annotations: dict[tuple[str, int], list[Annotation]] = {}
        self.thought: StreamingThoughtTracker | None = None
        self.images: dict[str, GeneratedImageItem] = {}
        self.tool_tasks: dict[str, tuple[str, int]] = {}
        self.call_items: dict[str, str | None] = {}  # call id -> the call's item id
        self.last_call_id: str | None = None
        self.last_message_text: str | None = None
        self.produced: dict[str, None] = {}
        self.out: list[ThreadStreamEvent] = []

    # -- bookkeeping ----------------------------------------------------------------

    def track(self, event: ThreadStreamEvent) -> None:
        if isinstance(event, ThreadItemAddedEvent | ThreadItemDoneEvent):
            self.produced[event.item.id] = None

    def take(self) -> list[ThreadStreamEvent]:
        out, self.out = self.out, []
        return out

    def _update(self, item_id: str, update: Any) -> None:
        self.out.append(ThreadItemUpdatedEvent(item_id=item_id, update=update))

    def _now(self) -> Any:
        return self.ctx.now()

    def _key(self, model_id: object, output_index: object) -> str:
        placeholder = f"{FAKE_RESPONSES_ID}@{self.response}/{_index(output_index)}"
        return _model_id(model_id) or placeholder

    def _new_id(self, kind: StoreItemType, model_id: object) -> str:
        """The ChatKit id of a new item: the model's, as openai-chatkit does, unless
        the model gave a placeholder or an id this reply already used."""
        ident = _model_id(model_id)
        if ident is None or ident in self.produced or ident in self.messages.values():
            return self.ctx.generate_id(kind)
        return ident

    def _message_id(self, data: Any) -> str:
        """The ChatKit id of the message an event is about, announced or not."""
        model_id = getattr(data, "item_id", None)
        key = self._key(model_id, getattr(data, "output_index", None))
        item_id = self.messages.get(key)
        if item_id is None:
            item_id = self.messages[key] = self._new_id("message", model_id)
        return item_id

    async def adopt_open_workflow(self) -> None:
        """Continue a workflow left open by the previous reply (before a client tool call)."""
        ctx = self.ctx
        page = await ctx.store.load_thread_items(
            ctx.thread.id, None, 2, "desc", ctx.request_context
        )
        recent = page.data
        candidate = None
        if recent and isinstance(recent[0], WorkflowItem):
            candidate = recent[0]
        elif (
            len(recent) == 2
            and isinstance(recent[0], ClientToolCallItem)
            and recent[0].status == "completed"
            and isinstance(recent[1], WorkflowItem)
        ):
            candidate = recent[1]
        if candidate is not None and candidate.workflow.summary is None:
            ctx._adopt_workflow(candidate)

    # -- SDK events -----------------------------------------------------------------

    async def handle(self, event: object) -> list[ThreadStreamEvent]:
        if isinstance(event, RunItemStreamEvent):
            self._run_item(event)
        elif getattr(event, "type", None) == "raw_response_event":
            await self._raw(getattr(event, "data", None))
        return self.take()

    def _run_item(self, event: RunItemStreamEvent) -> None:
        item = event.item
        if isinstance(item, ToolCallOutputItem):
            self._tool_output(item)
            return
        if getattr(item, "type", None) != "tool_call_item":
            return
        call = getattr(item, "raw_item", None)  # a dict when the SDK replays input items
        if _field(call, "type") != "function_call":
            return  # hosted tools (file search, code interpreter...) are not shown
        call_id = str(_field(call, "call_id"))
        name, arguments = str(_field(call, "name")), str(_field(call, "arguments") or "")
        self.last_call_id = call_id
        raw_id = _field(call, "id")
        self.call_items[call_id] = raw_id if isinstance(raw_id, str) else None
        task = self.converter.tool_call_to_task(name, arguments)
        if task is not None:
            index = self.ctx._add_task(task, self.out.append)
            workflow = self.ctx.workflow_item
            assert workflow is not None
            self.tool_tasks[call_id] = (workflow.id, index)

    def _tool_output(self, item: ToolCallOutputItem) -> None:
        place = self.tool_tasks.pop(str(_field(item.raw_item, "call_id")), None)
        workflow = self.ctx.workflow_item
        if place is None or workflow is None or workflow.id != place[0]:
            return
        task = self.converter.tool_output_to_task(workflow.workflow.tasks[place[1]], item.output)
        self.ctx._update_task(task, place[1], self.out.append)

    async def _raw(self, data: Any) -> None:
        # By `type`: the SDK's Chat Completions handler, LiteLLM and tests send
        # look-alike objects, not always the openai classes.
        kind = getattr(data, "type", None)
        if kind in ("response.created", "response.completed"):
            self.response += 1
        elif kind == "response.output_item.added":
            await self._item_added(data)
        elif kind == "response.output_item.done":
            await self._item_done(data)
        elif kind == "response.content_part.added":
            await self._part_added(data)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            delta = _text(getattr(data, "delta", ""))
            if delta:
                self._update(
                    self._message_id(data),
                    AssistantMessageContentPartTextDelta(
                        content_index=_index(data.content_index), delta=delta
                    ),
                )
        elif kind == "response.output_text.annotation.added":
            await self._annotation_added(data)
        elif kind in ("response.output_text.done", "response.refusal.done"):
            item_id = self._message_id(data)
            index = _index(data.content_index)
            text = getattr(data, "text" if kind == "response.output_text.done" else "refusal", "")
            annotations = self.annotations.get((item_id, index), [])
            self._update(
                item_id,
                AssistantMessageContentPartDone(
                    content_index=index,
                    content=AssistantMessageContent(text=_text(text), annotations=annotations),
                ),
            )
        elif kind == "response.reasoning_summary_text.delta":
            self._thought(data, _text(getattr(data, "delta", "")), final=False)
        elif kind == "response.reasoning_summary_text.done":
            self._thought(data, _text(getattr(data, "text", "")), final=True)
        elif kind == "response.image_generation_call.partial_image":
            await self._partial_image(data)

    async def _part_added(self, data: Any) -> None:
        content = await self.converter._content(data.part)  # None: reasoning text, unknown
        if content is None:
            return
        item_id = self._message_id(data)
        index = _index(data.content_index)
        self.annotations[(item_id, index)] = list(content.annotations)
        self._update(
            item_id, AssistantMessageContentPartAdded(content_index=index, content=content)
        )

    async def _annotation_added(self, data: Any) -> None:
        annotation = await self.converter._annotation(data.annotation)
        if annotation is None:
            return
        item_id = self._message_id(data)
        index = _index(data.content_index)
        # Our own count: annotations the converter drops leave no gaps.
        kept = self.annotations.setdefault((item_id, index), [])
        kept.append(annotation)
        self._update(
            item_id,
            AssistantMessageContentPartAnnotationAdded(
                content_index=index, annotation_index=len(kept) - 1, annotation=annotation
            ),
        )

    async def _item_added(self, data: Any) -> None:
        ctx = self.ctx
        item = data.item
        kind = getattr(item, "type", None)
        key = self._key(getattr(item, "id", None), getattr(data, "output_index", None))
        if kind == "reasoning":
            if ctx.workflow_item is None:
                ctx._open_workflow(Workflow(type="reasoning", tasks=[]), self.out.append)
        elif kind == "message":
            item_id = self.messages.get(key) or self._new_id("message", item.id)
            self.messages[key] = item_id
            content = [c for c in [await self.converter._content(p) for p in item.content] if c]
            message = AssistantMessageItem(
                id=item_id, thread_id=ctx.thread.id, created_at=self._now(), content=content
            )
            ctx._emit(ThreadItemAddedEvent(item=message), self.out.append)
        elif kind == "image_generation_call":
            image_item = self._image_item()
            self.images[key] = image_item
            ctx._emit(ThreadItemAddedEvent(item=image_item), self.out.append)

    def _image_item(self) -> GeneratedImageItem:
        ctx = self.ctx
        image_item = GeneratedImageItem(
            id=ctx.generate_id("message"), thread_id=ctx.thread.id, created_at=self._now()
        )
        ctx.generated_image_item = image_item
        return image_item

    async def _item_done(self, data: Any) -> None:
        ctx = self.ctx
        item = data.item
        kind = getattr(item, "type", None)
        key = self._key(getattr(item, "id", None), getattr(data, "output_index", None))
        if kind == "message":
            item_id = self.messages.pop(key, None) or self._new_id("message", item.id)
            content: list[AssistantMessageContent] = []
            for index, part in enumerate(item.content):
                converted = await self.converter._content(part)
                streamed = self.annotations.pop((item_id, index), None)
                if converted is None:
                    continue
                # The final message is the reference (Chat Completions models put
                # their citations only there); what streamed stands in when a
                # model leaves them out of it.
                if not converted.annotations and streamed:
                    converted.annotations = streamed
                content.append(converted)
            for leftover in [k for k in self.annotations if k[0] == item_id]:
                del self.annotations[leftover]
            message = AssistantMessageItem(
                id=item_id, thread_id=ctx.thread.id, created_at=self._now(), content=content
            )
            self.last_message_text = "".join(part.text for part in content)
            ctx._emit(ThreadItemDoneEvent(item=message), self.out.append)
        elif kind == "image_generation_call":
            image_item = self.images.pop(key, None) or ctx.generated_image_item
            result = getattr(item, "result", None)
            if not result:
                if image_item is not None:
                    # The generation failed: take the empty image away.
                    self._drop_image(image_item)
                return
            if image_item is None:  # never announced: shown whole
                image_item = self._image_item()
            if ctx.generated_image_item is image_item:
                ctx.generated_image_item = None
            url = await self.converter.base64_image_to_url(image_id=item.id, base64_image=result)
            image_item.image = GeneratedImage(id=item.id, url=url)
            ctx._emit(ThreadItemDoneEvent(item=image_item), self.out.append)

    def _drop_image(self, image_item: GeneratedImageItem) -> None:
        if self.ctx.generated_image_item is image_item:
            self.ctx.generated_image_item = None
        self.out.append(ThreadItemRemovedEvent(item_id=image_item.id))
        self.produced.pop(image_item.id, None)

    async def _partial_image(self, data: Any) -> None:
        key = self._key(getattr(data, "item_id", None), getattr(data, "output_index", None))
        image_item = self.images.get(key) or self.ctx.generated_image_item
        if image_item is None:
            return
        index = _index(data.partial_image_index)
        url = await self.converter.base64_image_to_url(
            image_id=data.item_id,
            base64_image=data.partial_image_b64,
            partial_image_index=index,
        )
        image_item.image = GeneratedImage(id=data.item_id, url=url)
        self._update(
            image_item.id,
            GeneratedImageUpdated(
                image=image_item.image,
                progress=self.converter.partial_image_index_to_progress(index),
            ),
        )

    def _thought(self, data: Any, text: str, *, final: bool) -> None:
        """A reasoning summary part. The first thought of a reasoning workflow
        streams; the others are shown whole when done (openai-chatkit's rule:
        one moving line at a time)."""
        ctx = self.ctx
        key = self._key(getattr(data, "item_id", None), getattr(data, "output_index", None))
        summary = _index(getattr(data, "summary_index", 0))
        workflow = ctx.workflow_item
        if workflow is None:
            if not text:
                return
            # A summary whose reasoning item was never announced.
            workflow = ctx._open_workflow(Workflow(type="reasoning", tasks=[]), self.out.append)
        tasks = workflow.workflow.tasks
        tracker = self.thought
        # Where the streaming thought is now, if it is this one and still shown
        # (by identity: app code may have replaced it, or closed its workflow).
        position = (
            next((i for i, task in enumerate(tasks) if task is tracker.task), None)
            if tracker is not None and (tracker.item_id, tracker.index) == (key, summary)
            else None
        )
        if tracker is not None and position is not None:
            if final:
                self.thought = None
            elif not text:
                return
            content = text if final else tracker.task.content + text
            tracker.task = tracker.task.model_copy(update={"content": content})
            # Sent even when the final text adds nothing, as openai-chatkit does.
            ctx._update_task(tracker.task, position, self.out.append)
        elif not text:
            return
        elif final:
            ctx._add_task(ThoughtTask(content=text), self.out.append)
        elif workflow.workflow.type == "reasoning" and not tasks:
            task = ThoughtTask(content=text)
            ctx._add_task(task, self.out.append)
            self.thought = StreamingThoughtTracker(item_id=key, index=summary, task=task)

    # -- the end --------------------------------------------------------------------

    def refused(self, refusal: str) -> list[ThreadStreamEvent]:
        """Make sure the user sees the refusal the run ended with.

        The SDK drops the events it still holds when a run ends in an error, so
        the refusal message may be cut short or missing: finish it from the error.
        """
        if self.last_message_text == refusal or not refusal:
            return self.take()
        pending = list(self.messages.values())
        self.messages.clear()
        item = AssistantMessageItem(
            id=pending[-1] if pending else self.ctx.generate_id("message"),
            thread_id=self.ctx.thread.id,
            created_at=self._now(),
            content=[AssistantMessageContent(text=refusal)],
        )
        self.last_message_text = refusal
        self.ctx._emit(ThreadItemDoneEvent(item=item), self.out.append)
        return self.take()

    async def finish(self) -> list[ThreadStreamEvent]:
        """Close the reply: the pending client tool call, or the open workflow."""
        ctx = self.ctx
        call = ctx.client_tool_call
        if call is None:
            ctx._close_workflow(sink=self.out.append)
            return self.take()
        ctx.client_tool_call = None
        workflow = ctx.workflow_item
        if workflow is not None:
            # Left open for the next reply, which starts when the client sends the
            # tool's output; saved as the client shows it so that reply finds it.
            ctx.workflow_item = None
            await ctx.store.add_thread_item(ctx.thread.id, workflow, ctx.request_context)
        call_id = call.call_id or self.last_call_id
        tool_call = ClientToolCallItem(
            # The function call's own item id, as openai-chatkit does.
            id=self._new_id("tool_call", self.call_items.get(call_id) if call_id else None),
            thread_id=ctx.thread.id,
            created_at=self._now(),
            call_id=call_id or ctx.generate_id("tool_call"),
            name=call.name,
            arguments=call.arguments,
        )
        ctx._emit(ThreadItemDoneEvent(item=tool_call), self.out.append)
        return self.take()

    def tripped(self) -> list[ThreadStreamEvent]:
        """Undo the reply's items."""
        ctx = self.ctx
        ctx.client_tool_call = None
        ctx.workflow_item = None
        ctx.generated_image_item = None
        events: list[ThreadStreamEvent] = [
            ThreadItemRemovedEvent(item_id=item_id) for item_id in self.produced
        ]
        self.produced.clear()
        return events


async def _pump(result: RunResultStreaming, outbox: _Outbox) -> None:
    """Move the SDK's events into the outbox as soon as they exist."""
    try:
        async for event in result.stream_events():
            outbox.put(_FromSDK(event))
    except Exception as error:
        outbox.put(_End(error))
    else:
        outbox.put(_End(None))


async def stream_agent_response(
    context: AgentContext[Any],
    result: RunResultStreaming,
    *,
    converter: ResponseStreamConverter | None = None,
) -> AsyncGenerator[ThreadStreamEvent, None]:
    """The ChatKit events of a streamed Agents SDK run, with what tools emitted.

    ::

        ctx = AgentContext.from_turn(turn)
        result = Runner.run_streamed(agent, input_items, context=ctx)
        async for event in stream_agent_response(ctx, result):
            yield event

    A guardrail tripwire removes the items this reply produced, then is raised
    again, as openai-chatkit does (`run_agent` shows the converter's
    `guardrail_error` instead); any other run error propagates too. Closing the
    iterator early cancels the run.
    """
    translation = _Translation(context, converter or _DEFAULT_CONVERTER)
    outbox = context._outbox
    # Consume the SDK's stream before anything else: when a run fails, the SDK
    # drops the events it still holds. A plain task rather than a task group: a
    # task group's scope cannot stay open across the `yield`s of an async
    # generator that its consumer may abandon.
    pump = asyncio.ensure_future(_pump(result, outbox))
    outbox.attach()
    error: BaseException | None = None
    try:
        if context.workflow_item is None:
            await translation.adopt_open_workflow()
        while True:
            entry = await outbox.get()
            if isinstance(entry, _Barrier):
                entry.reached.set()
            elif isinstance(entry, _FromContext):
                translation.track(entry.event)
                yield entry.event
            elif isinstance(entry, _FromSDK):
                for event in await translation.handle(entry.event):
                    translation.track(event)
                    yield event
            else:
                error = entry.error
                break
        # What tools emitted after the SDK's last event (nothing waits for it now).
        late: list[ThreadStreamEvent] = []
        for entry in outbox.drain():
            if isinstance(entry, _Barrier):
                entry.reached.set()
            elif isinstance(entry, _FromContext):
                late.append(entry.event)
        outbox.detach()
        if isinstance(error, _TRIPWIRES):
            for event in translation.tripped():
                yield event
            raise error
        if isinstance(error, _REFUSAL):
            late += translation.refused(str(getattr(error, "refusal", "")))
        elif error is not None:
            raise error
        for event in [*late, *await translation.finish()]:
            translation.track(event)
            yield event
    finally:
        if not pump.done():
            # Stopped early (cancelled, or closed by the consumer): stop the run too.
            result.cancel()
            pump.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await asyncio.wait([pump])
        outbox.detach()
