"""A scripted Agents SDK `Model` that replays Responses API stream events, offline.

Each call of the model plays the next `Response` of the script: a list of output
items (a message, a reasoning item, a function call, an image generation...), each
expanded into the stream events the Responses API sends for it, in wire order:
`response.created`, `output_item.added`, content parts, deltas, annotations,
`output_item.done`, and finally `response.completed` with the whole response.

Events are written as the API's JSON and validated into the openai types, so what
the runner sees is what it would see from the network.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from agents import Model, ModelResponse, Usage
from openai.types.responses import ResponseOutputItem, ResponseStreamEvent
from pydantic import TypeAdapter

_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
# One class per event type, so a bad script fails with one readable error, not 200.
_EVENT_CLASSES: dict[str, Any] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}
_ITEM: TypeAdapter[ResponseOutputItem] = TypeAdapter(ResponseOutputItem)
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):04d}"


@dataclass
class Output:
    """One output item: the events that stream it (without sequence numbers or
    output index yet) and its final JSON."""

    events: list[dict[str, Any]]
    final: dict[str, Any]


def text(
    content: str | Sequence[str],
    *,
    annotations: Sequence[dict[str, Any]] = (),
    item_id: str | None = None,
) -> Output:
    """An assistant message whose text streams in the given chunks (one per delta)."""
    chunks = [content] if isinstance(content, str) else list(content)
    full = "".join(chunks)
    item_id = item_id or _id("msg")
    part = {"type": "output_text", "text": full, "annotations": list(annotations)}
    final = {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "item": {**final, "status": "in_progress", "content": []},
        },
        {
            "type": "response.content_part.added",
            "item_id": item_id,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
    ]
    events += [
        {
            "type": "response.output_text.delta",
            "item_id": item_id,
            "content_index": 0,
            "delta": chunk,
            "logprobs": [],
        }
        for chunk in chunks
    ]
    events += [
        {
            "type": "response.output_text.annotation.added",
            "item_id": item_id,
            "content_index": 0,
            "annotation_index": index,
            "annotation": annotation,
        }
        for index, annotation in enumerate(annotations)
    ]
    events += [
        {
            "type": "response.output_text.done",
            "item_id": item_id,
            "content_index": 0,
            "text": full,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item_id,
            "content_index": 0,
            "part": part,
        },
        {"type": "response.output_item.done", "item": final},
    ]
    return Output(events, final)


def refusal(content: str, *, item_id: str | None = None) -> Output:
    """An assistant message that refuses."""
    item_id = item_id or _id("msg")
    part = {"type": "refusal", "refusal": content}
    final = {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "item": {**final, "status": "in_progress", "content": []},
        },
        {
            "type": "response.content_part.added",
            "item_id": item_id,
            "content_index": 0,
            "part": {"type": "refusal", "refusal": ""},
        },
        {
            "type": "response.refusal.delta",
            "item_id": item_id,
            "content_index": 0,
            "delta": content,
        },
        {
            "type": "response.refusal.done",
            "item_id": item_id,
            "content_index": 0,
            "refusal": content,
        },
        {
            "type": "response.content_part.done",
            "item_id": item_id,
            "content_index": 0,
            "part": part,
        },
        {"type": "response.output_item.done", "item": final},
    ]
    return Output(events, final)


def reasoning(*summaries: str | Sequence[str], item_id: str | None = None) -> Output:
    """A reasoning item with summary parts (each streamed in the given chunks)."""
    item_id = item_id or _id("rs")
    parts = [[s] if isinstance(s, str) else list(s) for s in summaries]
    final = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "".join(chunks)} for chunks in parts],
        "encrypted_content": "gAAAA-opaque",
    }
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "item": {**final, "summary": []}},
    ]
    for index, chunks in enumerate(parts):
        whole = "".join(chunks)
        events.append(
            {
                "type": "response.reasoning_summary_part.added",
                "item_id": item_id,
                "summary_index": index,
                "part": {"type": "summary_text", "text": ""},
            }
        )
        events += [
            {
                "type": "response.reasoning_summary_text.delta",
                "item_id": item_id,
                "summary_index": index,
                "delta": chunk,
            }
            for chunk in chunks
        ]
        events += [
            {
                "type": "response.reasoning_summary_text.done",
                "item_id": item_id,
                "summary_index": index,
                "text": whole,
            },
            {
                "type": "response.reasoning_summary_part.done",
                "item_id": item_id,
                "summary_index": index,
                "part": {"type": "summary_text", "text": whole},
            },
        ]
    events.append({"type": "response.output_item.done", "item": final})
    return Output(events, final)


def function_call(name: str, arguments: str, *, call_id: str | None = None) -> Output:
    """A function call whose arguments stream in one delta."""
    item_id = _id("fc")
    call_id = call_id or _id("call")
    final = {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "item": {**final, "arguments": "", "status": "in_progress"},
        },
        {"type": "response.function_call_arguments.delta", "item_id": item_id, "delta": arguments},
        {
            "type": "response.function_call_arguments.done",
            "item_id": item_id,
            "arguments": arguments,
            "name": name,
        },
        {"type": "response.output_item.done", "item": final},
    ]
    return Output(events, final)


def image_generation(result: str, *, partials: Sequence[str] = ()) -> Output:
    """An image generation call with partial images, then the final base64 image."""
    item_id = _id("ig")
    final = {
        "id": item_id,
        "type": "image_generation_call",
        "status": "completed",
        "result": result,
        "output_format": "png",
    }
    events: list[dict[str, Any]] = [
        {
            "type": "response.output_item.added",
            "item": {**final, "status": "in_progress", "result": None},
        },
        {"type": "response.image_generation_call.in_progress", "item_id": item_id},
        {"type": "response.image_generation_call.generating", "item_id": item_id},
    ]
    events += [
        {
            "type": "response.image_generation_call.partial_image",
            "item_id": item_id,
            "partial_image_index": index,
            "partial_image_b64": partial,
            "output_format": "png",
        }
        for index, partial in enumerate(partials)
    ]
    events += [
        {"type": "response.image_generation_call.completed", "item_id": item_id},
        {"type": "response.output_item.done", "item": final},
    ]
    return Output(events, final)


def url_citation(url: str, title: str, start: int, end: int) -> dict[str, Any]:
    """A web citation annotation."""
    return {
        "type": "url_citation",
        "url": url,
        "title": title,
        "start_index": start,
        "end_index": end,
    }


def file_citation(filename: str, index: int, *, file_id: str = "file-abc") -> dict[str, Any]:
    """A file search citation annotation."""
    return {"type": "file_citation", "file_id": file_id, "filename": filename, "index": index}


def container_file_citation(filename: str, start: int, end: int) -> dict[str, Any]:
    """A code interpreter (container) file citation annotation."""
    return {
        "type": "container_file_citation",
        "container_id": "cntr_1",
        "file_id": "cfile_1",
        "filename": filename,
        "start_index": start,
        "end_index": end,
    }


Hook = Callable[[], Awaitable[None]]


@dataclass
class Step:
    """One model call: its output items, and optionally a hook awaited before
    each item streams (to hold the model at a point while a test acts)."""

    outputs: list[Output]
    before_item: Hook | None = None


@dataclass
class ScriptedModel(Model):
    """Plays one `Step` per model call and records the input of every call."""

    steps: list[Step | list[Output]]
    inputs: list[Any] = field(default_factory=list)

    def _next(self, input: Any) -> Step:
        self.inputs.append(input)
        if not self.steps:
            raise AssertionError("the model was called more often than scripted")
        step = self.steps.pop(0)
        return step if isinstance(step, Step) else Step(step)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        step = self._next(args[1])
        items = [_ITEM.validate_python(output.final) for output in step.outputs]
        return ModelResponse(output=items, usage=Usage(), response_id=_id("resp"))

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        step = self._next(args[1])
        response_id = _id("resp")
        envelope = {
            "id": response_id,
            "object": "response",
            "created_at": 1_700_000_000,
            "model": "scripted",
            "output": [],
            "tool_choice": "auto",
            "tools": [],
            "parallel_tool_calls": True,
            "status": "in_progress",
        }
        sequence = itertools.count()

        def event(payload: dict[str, Any], **extra: Any) -> ResponseStreamEvent:
            data = {**payload, **extra, "sequence_number": next(sequence)}
            event: ResponseStreamEvent = _EVENT_CLASSES[data["type"]].model_validate(data)
            return event

        # Each event is a read from the network: the runner's task yields between them.
        await self._pause()
        yield event({"type": "response.created", "response": envelope})
        yield event({"type": "response.in_progress", "response": envelope})
        for index, output in enumerate(step.outputs):
            if step.before_item is not None:
                await step.before_item()
            for payload in output.events:
                await self._pause()
                yield event(payload, output_index=index)
        completed = {
            **envelope,
            "status": "completed",
            "output": [output.final for output in step.outputs],
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 30,
            },
        }
        await self._pause()
        yield event({"type": "response.completed", "response": completed})

    async def _pause(self) -> None:
        await asyncio.sleep(0)
