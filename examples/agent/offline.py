"""A scripted stand-in for an OpenAI model, so the demo runs with no API key.

It streams Responses API events the way the real API does (reasoning summary,
function calls, text deltas) and picks what to do from the last input item:
after a tool's output it sums it up; asked about the weather it calls
`show_weather`; asked for a dark or light theme it calls the page's
`switch_theme`; otherwise it answers with a short reply.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from agents import Model, ModelResponse, TResponseInputItem, Usage
from openai.types.responses import ResponseOutputItem, ResponseStreamEvent
from pydantic import TypeAdapter

_EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
_ITEM: TypeAdapter[ResponseOutputItem] = TypeAdapter(ResponseOutputItem)
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_offline{next(_ids):06d}"


class OfflineModel(Model):
    """Answers from a small script; never touches the network."""

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay  # between words, so the UI visibly streams

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        outputs = [final for _, final in self._plan(args[1])]
        return ModelResponse(
            output=[_ITEM.validate_python(o) for o in outputs],
            usage=Usage(),
            response_id=_id("resp"),
        )

    async def stream_response(
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[ResponseStreamEvent]:
        plan = self._plan(args[1])
        envelope: dict[str, Any] = {
            "id": _id("resp"),
            "object": "response",
            "created_at": 0,
            "model": "offline",
            "output": [],
            "tool_choice": "auto",
            "tools": [],
            "parallel_tool_calls": True,
            "status": "in_progress",
        }
        sequence = itertools.count()

        def event(payload: dict[str, Any]) -> ResponseStreamEvent:
            return _EVENT.validate_python({**payload, "sequence_number": next(sequence)})

        yield event({"type": "response.created", "response": envelope})
        for index, (events, _) in enumerate(plan):
            for payload in events:
                await asyncio.sleep(self.delay if payload["type"].endswith(".delta") else 0)
                yield event({**payload, "output_index": index})
        finals = [final for _, final in plan]
        completed = {**envelope, "status": "completed", "output": finals}
        yield event({"type": "response.completed", "response": completed})

    # -- what to say --------------------------------------------------------------------

    def _plan(self, input: str | list[TResponseInputItem]) -> list[tuple[list[Any], Any]]:
        items: list[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else input
        last = items[-1] if items else {}
        if last.get("type") == "function_call_output":
            return [_text(_after_tool(items, last))]
        said = _user_text(last)
        lowered = said.lower()
        if "weather" in lowered:
            city = _city(said)
            return [
                _reasoning(f"The user wants the weather in {city}, so I will show the forecast."),
                _call("show_weather", {"city": city}),
            ]
        theme = "dark" if "dark" in lowered else "light" if "light" in lowered else None
        if theme is not None:
            return [_call("switch_theme", {"theme": theme})]
        return [
            _reasoning("A plain message: reply briefly and say what I can do."),
            _text(
                f'You said: "{said}". I am the offline demo model. Ask me about the '
                "weather in a city, or to switch to a dark or light theme."
            ),
        ]


def _user_text(item: Any) -> str:
    content = item.get("content", "")
    if isinstance(content, str):
        return content
    return " ".join(
        part.get("text", "") for part in content if part.get("type") == "input_text"
    ).strip()


def _city(text: str) -> str:
    match = re.search(r"\bin ([A-Z][\w' -]*)", text)
    return match.group(1).strip(" ?!.") if match else "Paris"


def _after_tool(items: list[Any], output: Any) -> str:
    call: Any = next(
        (
            i
            for i in reversed(items)
            if i.get("type") == "function_call" and i.get("call_id") == output.get("call_id")
        ),
        {},
    )
    if call.get("name") == "switch_theme":
        try:
            theme = json.loads(output["output"]).get("theme", "new")
        except (ValueError, AttributeError):
            theme = "new"
        return f"Done: the page now uses the {theme} theme."
    return f"Here is the forecast. {output.get('output', '')}"


# -- Responses API output items and their stream events ---------------------------------


def _text(content: str) -> tuple[list[Any], Any]:
    item_id = _id("msg")
    part = {"type": "output_text", "text": content, "annotations": []}
    final = {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    words = re.findall(r"\S+\s*", content)
    events: list[Any] = [
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
        *(
            {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "content_index": 0,
                "delta": word,
                "logprobs": [],
            }
            for word in words
        ),
        {
            "type": "response.output_text.done",
            "item_id": item_id,
            "content_index": 0,
            "text": content,
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
    return events, final


def _reasoning(summary: str) -> tuple[list[Any], Any]:
    item_id = _id("rs")
    final = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}],
    }
    events: list[Any] = [
        {"type": "response.output_item.added", "item": {**final, "summary": []}},
        {
            "type": "response.reasoning_summary_part.added",
            "item_id": item_id,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": ""},
        },
        *(
            {
                "type": "response.reasoning_summary_text.delta",
                "item_id": item_id,
                "summary_index": 0,
                "delta": word,
            }
            for word in re.findall(r"\S+\s*", summary)
        ),
        {
            "type": "response.reasoning_summary_text.done",
            "item_id": item_id,
            "summary_index": 0,
            "text": summary,
        },
        {
            "type": "response.reasoning_summary_part.done",
            "item_id": item_id,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": summary},
        },
        {"type": "response.output_item.done", "item": final},
    ]
    return events, final


def _call(name: str, arguments: dict[str, Any]) -> tuple[list[Any], Any]:
    item_id = _id("fc")
    args = json.dumps(arguments)
    final = {
        "id": item_id,
        "type": "function_call",
        "call_id": _id("call"),
        "name": name,
        "arguments": args,
        "status": "completed",
    }
    events: list[Any] = [
        {
            "type": "response.output_item.added",
            "item": {**final, "arguments": "", "status": "in_progress"},
        },
        {"type": "response.function_call_arguments.delta", "item_id": item_id, "delta": args},
        {
            "type": "response.function_call_arguments.done",
            "item_id": item_id,
            "arguments": args,
            "name": name,
        },
        {"type": "response.output_item.done", "item": final},
    ]
    return events, final
