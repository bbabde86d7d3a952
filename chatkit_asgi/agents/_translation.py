"""The mapping of an Agents SDK stream to ChatKit events, event by event.

Events are read by their `type`, not their class, and need not come in Responses
API order (see `_item_ids` for how items are told apart).
"""

from __future__ import annotations

from typing import Any

from agents import RunItemStreamEvent
from agents.items import ToolCallOutputItem

from ..types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartAnnotationAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ClientToolCallItem,
    GeneratedImage,
    GeneratedImageItem,
    GeneratedImageUpdated,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemRemovedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    Workflow,
    WorkflowItem,
)
from ._fields import field_of, index_of, text_of
from ._item_ids import ItemIds
from ._stream_converter import ResponseStreamConverter
from ._thoughts import Thoughts
from .context import AgentContext

__all__ = ["Translation"]


class Translation:
    """The state of one run's translation into ChatKit events: `handle` maps each
    event of the SDK's stream, `finish`, `refused` and `tripped` end the reply."""

    def __init__(self, context: AgentContext[Any], converter: ResponseStreamConverter) -> None:
        self.ctx = context
        self.converter = converter
        self.ids = ItemIds(context)
        self.thoughts = Thoughts(context)
        # streamed annotations, by (ChatKit message id, content index)
        self.annotations: dict[tuple[str, int], list[Annotation]] = {}
        self.images: dict[str, GeneratedImageItem] = {}
        self.tool_tasks: dict[str, tuple[str, int]] = {}
        self.call_items: dict[str, str | None] = {}  # call id -> the call's item id
        self.last_call_id: str | None = None
        self.last_message_text: str | None = None
        self.out: list[ThreadStreamEvent] = []

    # -- bookkeeping ----------------------------------------------------------------

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
        if isinstance(item, ToolCallOutputItem):
            self._tool_output(item)
            return
        if getattr(item, "type", None) != "tool_call_item":
            return
        call = getattr(item, "raw_item", None)  # a dict when the SDK replays input items
        if field_of(call, "type") != "function_call":
            return  # hosted tools (file search, code interpreter...) are not shown
        call_id = str(field_of(call, "call_id"))
        name, arguments = str(field_of(call, "name")), str(field_of(call, "arguments") or "")
        self.last_call_id = call_id
        raw_id = field_of(call, "id")
        self.call_items[call_id] = raw_id if isinstance(raw_id, str) else None
        task = self.converter.tool_call_to_task(name, arguments)
        if task is not None:
            index = self.ctx._add_task(task, self.out.append)
            workflow = self.ctx.workflow_item
            assert workflow is not None
            self.tool_tasks[call_id] = (workflow.id, index)

    def _tool_output(self, item: ToolCallOutputItem) -> None:
        place = self.tool_tasks.pop(str(field_of(item.raw_item, "call_id")), None)
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
            self.ids.response += 1
        elif kind == "response.output_item.added":
            await self._item_added(data)
        elif kind == "response.output_item.done":
            await self._item_done(data)
        elif kind == "response.content_part.added":
            await self._part_added(data)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            delta = text_of(getattr(data, "delta", ""))
            if delta:
                self._update(
                    self.ids.message_id(data),
                    AssistantMessageContentPartTextDelta(
                        content_index=index_of(data.content_index), delta=delta
                    ),
                )
        elif kind == "response.output_text.annotation.added":
            await self._annotation_added(data)
        elif kind in ("response.output_text.done", "response.refusal.done"):
            item_id = self.ids.message_id(data)
            index = index_of(data.content_index)
            text = getattr(data, "text" if kind == "response.output_text.done" else "refusal", "")
            annotations = self.annotations.get((item_id, index), [])
            self._update(
                item_id,
                AssistantMessageContentPartDone(
                    content_index=index,
                    content=AssistantMessageContent(text=text_of(text), annotations=annotations),
                ),
            )
        elif kind == "response.reasoning_summary_text.delta":
            self._thought(data, text_of(getattr(data, "delta", "")), final=False)
        elif kind == "response.reasoning_summary_text.done":
            self._thought(data, text_of(getattr(data, "text", "")), final=True)
        elif kind == "response.image_generation_call.partial_image":
            await self._partial_image(data)

    async def _part_added(self, data: Any) -> None:
        content = await self.converter._content(data.part)  # None: reasoning text, unknown
        if content is None:
            return
        item_id = self.ids.message_id(data)
        index = index_of(data.content_index)
        self.annotations[(item_id, index)] = list(content.annotations)
        self._update(
            item_id, AssistantMessageContentPartAdded(content_index=index, content=content)
        )

    async def _annotation_added(self, data: Any) -> None:
        annotation = await self.converter._annotation(data.annotation)
        if annotation is None:
            return
        item_id = self.ids.message_id(data)
        index = index_of(data.content_index)
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
        key = self.ids.key(getattr(item, "id", None), getattr(data, "output_index", None))
        if kind == "reasoning":
            if ctx.workflow_item is None:
                ctx._open_workflow(Workflow(type="reasoning", tasks=[]), self.out.append)
        elif kind == "message":
            item_id = self.ids.messages.get(key) or self.ids.new_id("message", item.id)
            self.ids.messages[key] = item_id
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
        key = self.ids.key(getattr(item, "id", None), getattr(data, "output_index", None))
        if kind == "message":
            item_id = self.ids.messages.pop(key, None) or self.ids.new_id("message", item.id)
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
        self.ids.produced.pop(image_item.id, None)

    async def _partial_image(self, data: Any) -> None:
        key = self.ids.key(getattr(data, "item_id", None), getattr(data, "output_index", None))
        image_item = self.images.get(key) or self.ctx.generated_image_item
        if image_item is None:
            return
        index = index_of(data.partial_image_index)
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
        key = self.ids.key(getattr(data, "item_id", None), getattr(data, "output_index", None))
        summary = index_of(getattr(data, "summary_index", 0))
        self.thoughts.part(key, summary, text, final=final, sink=self.out.append)

    # -- the end --------------------------------------------------------------------

    def refused(self, refusal: str) -> list[ThreadStreamEvent]:
        """Make sure the user sees the refusal the run ended with.

        The SDK drops the events it still holds when a run ends in an error, so
        the refusal message may be cut short or missing: finish it from the error.
        """
        if self.last_message_text == refusal or not refusal:
            return self.take()
        pending = list(self.ids.messages.values())
        self.ids.messages.clear()
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
            id=self.ids.new_id("tool_call", self.call_items.get(call_id) if call_id else None),
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
            ThreadItemRemovedEvent(item_id=item_id) for item_id in self.ids.produced
        ]
        self.ids.produced.clear()
        return events
