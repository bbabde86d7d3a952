"""Streaming widgets: a finished tree, or successive states sent as minimal updates.

In a responder::

    async def respond(turn: Turn):
        async for event in stream_widget(turn, weather_card(city)):
            yield event

`stream_widget` takes a finished widget (one `thread.item.done`) or an async
iterator of successive states of one widget: `thread.item.added` with the first
state, the updates `diff_widget` finds between each state and the next as
`thread.item.updated`, then `thread.item.done` with the last state (which the
app saves).

`accumulate_text` turns a model's text stream into such states, growing one
`Text` / `Markdown` node of a tree, so the UI receives text deltas only.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import aclosing
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from ..store import StoreItemType, default_generate_id
from ..types import (
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    WidgetItem,
    WidgetRootUpdated,
)
from ..types.components import WidgetComponentBase, WidgetRoot
from .diff import diff_widget

__all__ = ["accumulate_text", "replace_widget", "stream_widget", "text_deltas"]


class _TurnLike(Protocol):
    """What `stream_widget` uses of a `chatkit_asgi.Turn`.

    Described here rather than imported: `turn.py` calls into this module
    (`Turn.stream_widget`), so importing it back would close an import circle.
    """

    @property
    def thread(self) -> ThreadMetadata: ...

    def new_id(self, kind: StoreItemType, /) -> str: ...

    def now(self) -> datetime: ...


TWidget = TypeVar("TWidget", bound=WidgetComponentBase)

_STREAMING_TEXT_TYPES = frozenset({"Text", "Markdown"})


async def stream_widget(
    turn_or_thread: _TurnLike | ThreadMetadata,
    widget: WidgetRoot | AsyncIterable[WidgetRoot],
    copy_text: str | None = None,
    generate_id: Callable[[StoreItemType], str] | None = None,
) -> AsyncIterator[ThreadStreamEvent]:
    """The events that show `widget` (a tree, or successive states of one) as a new item.

    The item id comes from the turn's store (`turn.new_id("message")`, like the
    reference's `msg_` ids); given a bare thread, from `generate_id` or the default
    scheme. `copy_text` is what the UI's copy button copies.

    Yield a new tree for each state (`model_copy(update=...)` of the parts that
    change): nodes that are the same objects in two states are taken as unchanged.
    A state that is the very object yielded before is sent whole.
    """
    if isinstance(turn_or_thread, ThreadMetadata):
        thread = turn_or_thread
        item_id = (generate_id or default_generate_id)("message")
        created_at = datetime.now(timezone.utc)
    else:
        thread = turn_or_thread.thread
        item_id = turn_or_thread.new_id("message")
        created_at = turn_or_thread.now()

    if isinstance(widget, BaseModel):
        yield ThreadItemDoneEvent(
            item=WidgetItem(
                id=item_id,
                thread_id=thread.id,
                created_at=created_at,
                widget=widget,
                copy_text=copy_text,
            )
        )
        return

    async with _closing(widget) as states:
        last: WidgetRoot | None = None
        item: WidgetItem | None = None
        async for state in states:
            if item is None:
                item = WidgetItem(
                    id=item_id,
                    thread_id=thread.id,
                    created_at=created_at,
                    widget=state,
                    copy_text=copy_text,
                )
                yield ThreadItemAddedEvent(item=item)
            else:
                # The same object again may have been changed in place: send it whole.
                updates = (
                    diff_widget(last, state)
                    if last is not None and state is not last
                    else [WidgetRootUpdated(widget=state)]
                )
                for update in updates:
                    yield ThreadItemUpdatedEvent(item_id=item_id, update=update)
            last = state
    if item is None or last is None:
        raise ValueError("stream_widget() was given a widget stream that yielded no widget")
    yield ThreadItemDoneEvent(item=item.model_copy(update={"widget": last}))


def replace_widget(
    item: WidgetItem, widget: WidgetRoot, copy_text: str | None = None
) -> ThreadItemReplacedEvent:
    """The event that replaces a widget item's tree in place (saved, and redrawn by the UI).

    The usual answer to an action sent by `item`; `copy_text` is kept unless given.
    """
    update: dict[str, Any] = {"widget": widget}
    if copy_text is not None:
        update["copy_text"] = copy_text
    return ThreadItemReplacedEvent(item=item.model_copy(update=update))


async def text_deltas(events: AsyncIterable[Any]) -> AsyncIterator[str]:
    """The text pieces of a model's stream; other events are skipped.

    Understands plain strings, the OpenAI Responses API's
    `response.output_text.delta` events and the Agents SDK's raw response
    events wrapping them.
    """
    async for event in events:
        if isinstance(event, str):
            if event:
                yield event
            continue
        kind = getattr(event, "type", None)
        if kind == "raw_response_event":
            event = getattr(event, "data", None)
            kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            delta = getattr(event, "delta", "")
            if isinstance(delta, str) and delta:
                yield delta


async def accumulate_text(
    events: AsyncIterable[Any],
    widget: TWidget,
    *,
    component_id: str | None = None,
) -> AsyncIterator[TWidget]:
    """Successive states of `widget` with a model's text appended to one text node.

    The node is `widget` itself when it is a `Text` or `Markdown`; otherwise the
    `Text` / `Markdown` node with id `component_id`, or, when not given, the only
    one in the tree that has an id. The text goes after the node's current value.
    States come first as given but marked `streaming`, then one per text piece
    (see `text_deltas` for what `events` may hold), then the full text with
    `streaming` false. Each state shares every untouched node with the previous
    one, so `stream_widget` sends text deltas only, then the node once more for
    the end of streaming.
    """
    path = _path_to_text(widget, component_id)
    node = path[-1][0]
    text = node.value if isinstance(getattr(node, "value", None), str) else ""
    yield _with_text(path, text, streaming=True)
    async with _closing(text_deltas(events)) as pieces:
        async for piece in pieces:
            text += piece
            yield _with_text(path, text, streaming=True)
    yield _with_text(path, text, streaming=False)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

_Path = list[tuple[Any, int | None]]
"""From the root down to a node: each node with its slot in its parent's children."""


def _path_to_text(widget: Any, component_id: str | None) -> _Path:
    if component_id is None and widget.type in _STREAMING_TEXT_TYPES:
        return [(widget, None)]
    found: list[_Path] = []

    def walk(node: Any, path: _Path) -> None:
        node_id = node.id
        if node.type in _STREAMING_TEXT_TYPES and (
            node_id == component_id if component_id is not None else node_id is not None
        ):
            found.append(path)
        children = node.__dict__.get("children")
        if isinstance(children, list):
            for index, child in enumerate(children):
                if isinstance(child, WidgetComponentBase):
                    walk(child, [*path, (child, index)])
        elif isinstance(children, WidgetComponentBase):
            walk(children, [*path, (children, None)])

    walk(widget, [(widget, None)])
    if len(found) != 1:
        wanted = (
            f"Text/Markdown component with id {component_id!r}"
            if component_id is not None
            else "Text/Markdown component with an id (pass component_id=)"
        )
        raise ValueError(f"accumulate_text() needs exactly one {wanted}; found {len(found)}")
    return found[0]


def _with_text(path: _Path, text: str, *, streaming: bool) -> Any:
    """A copy of the tree in which only the nodes on `path` are new."""
    node = path[-1][0].model_copy(update={"value": text, "streaming": streaming})
    for depth in range(len(path) - 1, 0, -1):
        slot = path[depth][1]
        parent = path[depth - 1][0]
        if slot is None:
            children: Any = node
        else:
            children = list(parent.children)
            children[slot] = node
        node = parent.model_copy(update={"children": children})
    return node


def _closing(source: AsyncIterable[Any]) -> Any:
    """`aclosing` for sources that can be closed: a stopped stream closes its source."""
    iterator = aiter(source)
    if inspect.isasyncgen(iterator) or hasattr(iterator, "aclose"):
        return aclosing(iterator)
    return _NotClosing(iterator)


class _NotClosing:
    def __init__(self, iterator: AsyncIterator[Any]) -> None:
        self.iterator = iterator

    async def __aenter__(self) -> AsyncIterator[Any]:
        return self.iterator

    async def __aexit__(self, *exc: object) -> None:
        return None
