"""`stream_agent_response`: an Agents SDK streamed run, as ChatKit events.

What the model streams becomes what the ChatKit UI draws:

- output messages: assistant message items, with text deltas, content parts and
  citations (file, URL and container-file citations become sources);
- reasoning summaries: a reasoning workflow with one thought task per summary
  part, closed with its duration when a visible item follows it;
- function calls: workflow tasks, when the converter says so (`show_tool_calls`);
- image generation: a generated image item, updated with each partial image;
- a tool that sets `AgentContext.client_tool_call`: a pending client tool call
  item that ends the reply;
- a guardrail tripwire: the items of the reply are removed and the reply ends
  with an error the user sees.

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
from agents.items import ToolCallItem, ToolCallOutputItem
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseImageGenCallPartialImageEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseOutputTextAnnotationAddedEvent,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from openai.types.responses.response_output_item import ImageGenerationCall
from openai.types.responses.response_output_text import (
    Annotation as ResponsesAnnotation,
)
from openai.types.responses.response_output_text import (
    AnnotationContainerFileCitation,
    AnnotationFileCitation,
    AnnotationURLCitation,
)
from pydantic import BaseModel, TypeAdapter

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

__all__ = ["ResponseStreamConverter", "stream_agent_response"]

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

    `partial_images` is the number of partial images requested from the image
    tool (for progress); `show_tool_calls` shows each function call as a task of
    the open workflow.
    """

    def __init__(self, *, partial_images: int | None = None, show_tool_calls: bool = False):
        self.partial_images = partial_images
        self.show_tool_calls = show_tool_calls

    # -- images ---------------------------------------------------------------------

    async def base64_image_to_url(
        self, image_id: str, base64_image: str, partial_image_index: int | None = None
    ) -> str:
        """The URL stored for a generated image; a data URL by default.

        Override to upload the image somewhere and return its URL (thread items
        then stay small). `image_id` is stable across the partial images.
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
        self, citation: AnnotationFileCitation
    ) -> Annotation | None:
        """A file search citation as a file source (None drops it)."""
        if not citation.filename:
            return None
        return Annotation(
            source=FileSource(filename=citation.filename, title=citation.filename),
            index=citation.index,
        )

    async def url_citation_to_annotation(
        self, citation: AnnotationURLCitation
    ) -> Annotation | None:
        """A web citation as a URL source placed at the end of the cited text."""
        return Annotation(
            source=URLSource(url=citation.url, title=citation.title or citation.url),
            index=citation.end_index,
        )

    async def container_file_citation_to_annotation(
        self, citation: AnnotationContainerFileCitation
    ) -> Annotation | None:
        """A code interpreter file citation as a file source."""
        if not citation.filename:
            return None
        return Annotation(
            source=FileSource(filename=citation.filename, title=citation.filename),
            index=citation.end_index,
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
        """What the user sees when a guardrail stops the run (None: nothing)."""
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
        # The event's annotation may be a look-alike class or a plain dict: read it
        # again as the output-text annotation type.
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
        if isinstance(part, ResponseOutputText):
            annotations = [await self._annotation(a) for a in part.annotations]
            return AssistantMessageContent(
                text=part.text, annotations=[a for a in annotations if a is not None]
            )
        if isinstance(part, ResponseOutputRefusal):
            return AssistantMessageContent(text=part.refusal)
        return None


_DEFAULT_CONVERTER = ResponseStreamConverter()

_Key = tuple[int, int]
"""(response number, output index): one output item of one model call."""


class _Translation:
    """The state of one run's translation into ChatKit events."""

    def __init__(self, context: AgentContext[Any], converter: ResponseStreamConverter) -> None:
        self.ctx = context
        self.converter = converter
        self.response = 0
        self.messages: dict[_Key, str] = {}
        self.annotations: dict[tuple[_Key, int], list[Annotation]] = {}
        self.thoughts: dict[tuple[_Key, int], tuple[str, int]] = {}
        self.images: dict[_Key, GeneratedImageItem] = {}
        self.tool_tasks: dict[str, tuple[str, int]] = {}
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
        if isinstance(item, ToolCallItem):
            call = item.raw_item
            if isinstance(call, ResponseFunctionToolCall):
                name, call_id, arguments = call.name, call.call_id, call.arguments
            elif isinstance(call, dict) and call.get("type") == "function_call":
                name, call_id = str(call.get("name")), str(call.get("call_id"))
                arguments = str(call.get("arguments", ""))
            else:
                return
            self.last_call_id = call_id
            task = self.converter.tool_call_to_task(name, arguments)
            if task is not None:
                index = self.ctx._add_task(task, self.out.append)
                workflow = self.ctx.workflow_item
                assert workflow is not None
                self.tool_tasks[call_id] = (workflow.id, index)
        elif isinstance(item, ToolCallOutputItem):
            raw = item.raw_item
            answered = (
                raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
            )
            place = self.tool_tasks.pop(str(answered), None)
            workflow = self.ctx.workflow_item
            if place is None or workflow is None or workflow.id != place[0]:
                return
            task = self.converter.tool_output_to_task(
                workflow.workflow.tasks[place[1]], item.output
            )
            self.ctx._update_task(task, place[1], self.out.append)

    async def _raw(self, data: object) -> None:
        converter = self.converter
        if isinstance(data, ResponseCreatedEvent | ResponseCompletedEvent):
            self.response += 1
            return
        output_index = getattr(data, "output_index", None)
        if not isinstance(output_index, int):
            return
        key = (self.response, output_index)

        if isinstance(data, ResponseOutputItemAddedEvent):
            await self._item_added(key, data.item)
        elif isinstance(data, ResponseOutputItemDoneEvent):
            await self._item_done(key, data.item)

        elif isinstance(data, ResponseContentPartAddedEvent):
            item_id = self.messages.get(key)
            content = await converter._content(data.part)
            if item_id is not None and content is not None:
                self.annotations[(key, data.content_index)] = list(content.annotations)
                self._update(
                    item_id,
                    AssistantMessageContentPartAdded(
                        content_index=data.content_index, content=content
                    ),
                )
        elif isinstance(data, ResponseTextDeltaEvent | ResponseRefusalDeltaEvent):
            item_id = self.messages.get(key)
            if item_id is not None and data.delta:
                self._update(
                    item_id,
                    AssistantMessageContentPartTextDelta(
                        content_index=data.content_index, delta=data.delta
                    ),
                )
        elif isinstance(data, ResponseOutputTextAnnotationAddedEvent):
            item_id = self.messages.get(key)
            annotation = await converter._annotation(data.annotation)
            if item_id is not None and annotation is not None:
                # Our own count: annotations the converter drops leave no gaps.
                kept = self.annotations.setdefault((key, data.content_index), [])
                kept.append(annotation)
                self._update(
                    item_id,
                    AssistantMessageContentPartAnnotationAdded(
                        content_index=data.content_index,
                        annotation_index=len(kept) - 1,
                        annotation=annotation,
                    ),
                )
        elif isinstance(data, ResponseTextDoneEvent | ResponseRefusalDoneEvent):
            item_id = self.messages.get(key)
            if item_id is not None:
                text = data.text if isinstance(data, ResponseTextDoneEvent) else data.refusal
                annotations = self.annotations.get((key, data.content_index), [])
                self._update(
                    item_id,
                    AssistantMessageContentPartDone(
                        content_index=data.content_index,
                        content=AssistantMessageContent(text=text, annotations=list(annotations)),
                    ),
                )

        elif isinstance(data, ResponseReasoningSummaryTextDeltaEvent):
            self._thought(key, data.summary_index, data.delta, final=False)
        elif isinstance(data, ResponseReasoningSummaryTextDoneEvent):
            self._thought(key, data.summary_index, data.text, final=True)

        elif isinstance(data, ResponseImageGenCallPartialImageEvent):
            image_item = self.images.get(key)
            if image_item is not None:
                url = await converter.base64_image_to_url(
                    data.item_id, data.partial_image_b64, data.partial_image_index
                )
                image_item.image = GeneratedImage(id=data.item_id, url=url)
                self._update(
                    image_item.id,
                    GeneratedImageUpdated(
                        image=image_item.image,
                        progress=converter.partial_image_index_to_progress(
                            data.partial_image_index
                        ),
                    ),
                )

    async def _item_added(self, key: _Key, item: object) -> None:
        ctx = self.ctx
        if isinstance(item, ResponseReasoningItem):
            if ctx.workflow_item is None:
                ctx._open_workflow(Workflow(type="reasoning", tasks=[]), self.out.append)
        elif isinstance(item, ResponseOutputMessage):
            item_id = ctx.generate_id("message")
            self.messages[key] = item_id
            content = [c for c in [await self.converter._content(p) for p in item.content] if c]
            message = AssistantMessageItem(
                id=item_id, thread_id=ctx.thread.id, created_at=self._now(), content=content
            )
            ctx._emit(ThreadItemAddedEvent(item=message), self.out.append)
        elif isinstance(item, ImageGenerationCall):
            image_item = GeneratedImageItem(
                id=ctx.generate_id("message"), thread_id=ctx.thread.id, created_at=self._now()
            )
            self.images[key] = image_item
            ctx.generated_image_item = image_item
            ctx._emit(ThreadItemAddedEvent(item=image_item), self.out.append)

    async def _item_done(self, key: _Key, item: object) -> None:
        ctx = self.ctx
        if isinstance(item, ResponseOutputMessage):
            item_id = self.messages.pop(key, None) or ctx.generate_id("message")
            content: list[AssistantMessageContent] = []
            for index, part in enumerate(item.content):
                converted = await self.converter._content(part)
                if converted is None:
                    continue
                kept = self.annotations.pop((key, index), None)
                if kept is not None:
                    converted.annotations = kept
                content.append(converted)
            message = AssistantMessageItem(
                id=item_id, thread_id=ctx.thread.id, created_at=self._now(), content=content
            )
            self.last_message_text = "".join(part.text for part in content)
            ctx._emit(ThreadItemDoneEvent(item=message), self.out.append)
        elif isinstance(item, ImageGenerationCall):
            image_item = self.images.pop(key, None)
            if image_item is None:
                return
            if ctx.generated_image_item is image_item:
                ctx.generated_image_item = None
            if not item.result:
                # The generation failed: take the empty image away.
                self.out.append(ThreadItemRemovedEvent(item_id=image_item.id))
                self.produced.pop(image_item.id, None)
                return
            url = await self.converter.base64_image_to_url(item.id, item.result)
            image_item.image = GeneratedImage(id=item.id, url=url)
            ctx._emit(ThreadItemDoneEvent(item=image_item), self.out.append)

    def _thought(self, key: _Key, summary_index: int, text: str, *, final: bool) -> None:
        ctx = self.ctx
        workflow = ctx.workflow_item
        if workflow is None:
            if not text:
                return
            workflow = ctx._open_workflow(Workflow(type="reasoning", tasks=[]), self.out.append)
        place = self.thoughts.get((key, summary_index))
        if place is None or place[0] != workflow.id:
            if not text:
                return
            index = ctx._add_task(ThoughtTask(content=text), self.out.append)
            self.thoughts[(key, summary_index)] = (workflow.id, index)
            return
        task = workflow.workflow.tasks[place[1]]
        assert isinstance(task, ThoughtTask)
        content = text if final else task.content + text
        if content != task.content:
            ctx._update_task(
                task.model_copy(update={"content": content}), place[1], self.out.append
            )

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
        tool_call = ClientToolCallItem(
            id=ctx.generate_id("tool_call"),
            thread_id=ctx.thread.id,
            created_at=self._now(),
            call_id=call.call_id or self.last_call_id or ctx.generate_id("tool_call"),
            name=call.name,
            arguments=call.arguments,
        )
        ctx._emit(ThreadItemDoneEvent(item=tool_call), self.out.append)
        return self.take()

    def tripped(self, error: Exception) -> list[ThreadStreamEvent]:
        """Undo the reply's items and say why."""
        ctx = self.ctx
        ctx.client_tool_call = None
        ctx.workflow_item = None
        ctx.generated_image_item = None
        events: list[ThreadStreamEvent] = [
            ThreadItemRemovedEvent(item_id=item_id) for item_id in self.produced
        ]
        self.produced.clear()
        notice = self.converter.guardrail_error(error)
        if notice is not None:
            events.append(notice)
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

    A guardrail tripwire removes the items this reply produced and ends it with
    the converter's `guardrail_error`; any other run error propagates. Closing
    the iterator early cancels the run.
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
            for event in translation.tripped(error):
                yield event
            return
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
