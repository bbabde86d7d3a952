"""Which ChatKit item a model's stream event is about.

Items of the model are told apart by their id when they have a real one, else
(Chat Completions: one placeholder id for everything) by model call and output
index: their key. Items keep the model's ids, as in openai-chatkit, except
placeholder or repeated ones, which get the store's. Nothing assumes an item was
announced before its parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..types import ThreadItemAddedEvent, ThreadItemDoneEvent, ThreadStreamEvent
from ._fields import index_of

if TYPE_CHECKING:
    from ..store import StoreItemType
    from .context import AgentContext

try:  # where the SDK keeps it; the value has not changed since it was introduced
    from agents.models.fake_id import FAKE_RESPONSES_ID
except ImportError:  # pragma: no cover - older SDKs
    FAKE_RESPONSES_ID = "__fake_id__"

__all__ = ["ItemIds"]


class ItemIds:
    """The ids of one reply's items: by model item key while a message streams, and
    every id the reply produced."""

    def __init__(self, context: AgentContext[Any]) -> None:
        self.ctx = context
        self.response = 0  # model calls seen: part of a placeholder item's key
        # model item key -> ChatKit id, from its first event to its `output_item.done`
        self.messages: dict[str, str] = {}
        self.produced: dict[str, None] = {}  # ids added or done in this reply, in order

    def track(self, event: ThreadStreamEvent) -> None:
        """Note the item of an event the reply sends."""
        if isinstance(event, ThreadItemAddedEvent | ThreadItemDoneEvent):
            self.produced[event.item.id] = None

    def key(self, model_id: object, output_index: object) -> str:
        """The key of a model item: its real id, else its model call and output index."""
        placeholder = f"{FAKE_RESPONSES_ID}@{self.response}/{index_of(output_index)}"
        return _model_id(model_id) or placeholder

    def new_id(self, kind: StoreItemType, model_id: object) -> str:
        """The ChatKit id of a new item: the model's, as openai-chatkit does, unless
        the model gave a placeholder or an id this reply already used."""
        ident = _model_id(model_id)
        if ident is None or ident in self.produced or ident in self.messages.values():
            return self.ctx.generate_id(kind)
        return ident

    def message_id(self, data: Any) -> str:
        """The ChatKit id of the message an event is about, announced or not."""
        model_id = getattr(data, "item_id", None)
        key = self.key(model_id, getattr(data, "output_index", None))
        item_id = self.messages.get(key)
        if item_id is None:
            item_id = self.messages[key] = self.new_id("message", model_id)
        return item_id


def _model_id(value: object) -> str | None:
    """The model's id of an item, if it is a real one (not the SDK's placeholder)."""
    if isinstance(value, str) and value and value != FAKE_RESPONSES_ID:
        return value
    return None
