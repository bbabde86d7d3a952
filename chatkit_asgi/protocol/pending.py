"""Items a reply has added but not finished, kept current as their deltas stream.

The reply pipeline saves them at checkpoints and when a reply is cancelled; the
compatibility layer (`chatkit_asgi.server`) folds streamed events the same way.
"""

from __future__ import annotations

from ..types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartAnnotationAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItem,
    ThreadItemUpdatedEvent,
    WorkflowItem,
    WorkflowTaskAdded,
    WorkflowTaskUpdated,
)
from ..types._base import copy_model

__all__ = ["PendingItems"]


class PendingItems:
    """Items added but not done yet, kept current so they can be saved before `done`.

    Text deltas are collected as chunks and joined only when the item is needed:
    appending to a string field would copy the whole text at every delta.
    """

    def __init__(self) -> None:
        self._items: dict[str, ThreadItem] = {}
        self._chunks: dict[tuple[str, int], list[str]] = {}

    def has(self, item_id: str) -> bool:
        return item_id in self._items

    def add(self, item: ThreadItem) -> None:
        self.discard(item.id)
        self._items[item.id] = copy_model(item)

    def discard(self, item_id: str) -> None:
        if self._items.pop(item_id, None) is not None and self._chunks:
            for key in [key for key in self._chunks if key[0] == item_id]:
                del self._chunks[key]

    def update(self, event: ThreadItemUpdatedEvent) -> bool:
        """Apply an update; return whether an assistant message's content changed."""
        item = self._items.get(event.item_id)
        update = event.update
        if isinstance(item, AssistantMessageItem):
            if isinstance(update, AssistantMessageContentPartTextDelta):
                self._part(item, update.content_index)
                self._chunks.setdefault((item.id, update.content_index), []).append(update.delta)
                return True
            if isinstance(update, AssistantMessageContentPartAnnotationAdded):
                self._part(item, update.content_index).annotations.insert(
                    update.annotation_index, update.annotation
                )
                return True
            if isinstance(
                update, AssistantMessageContentPartAdded | AssistantMessageContentPartDone
            ):
                self._part(item, update.content_index)
                self._chunks.pop((item.id, update.content_index), None)
                item.content[update.content_index] = copy_model(update.content)
                return True
        elif isinstance(item, WorkflowItem):
            tasks = item.workflow.tasks
            if isinstance(update, WorkflowTaskAdded):
                tasks.append(update.task)
            elif isinstance(update, WorkflowTaskUpdated) and 0 <= update.task_index < len(tasks):
                tasks[update.task_index] = update.task
        return False

    def finished(self) -> list[ThreadItem]:
        """The pending items with all their text so far."""
        for (item_id, index), chunks in self._chunks.items():
            item = self._items[item_id]
            assert isinstance(item, AssistantMessageItem)
            item.content[index].text += "".join(chunks)
        self._chunks.clear()
        return list(self._items.values())

    @staticmethod
    def _part(item: AssistantMessageItem, index: int) -> AssistantMessageContent:
        # Updates may name a part that was never announced; the reference pads too.
        while len(item.content) <= index:
            item.content.append(AssistantMessageContent(text=""))
        return item.content[index]
