"""What a responder receives: one `Turn` per reply."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic

from typing_extensions import TypeVar

from .store import Store, StoreItemType
from .types import (
    Action,
    HiddenContextItem,
    SDKHiddenContextItem,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
)

__all__ = ["Turn"]

TContext = TypeVar("TContext", default=Any)

_HISTORY_PAGE = 100


@dataclass
class Turn(Generic[TContext]):
    """One reply in the making.

    Change `thread` (e.g. its `title`) and the app saves it and tells the client
    with a `thread.updated` event.
    """

    thread: ThreadMetadata
    """The thread being answered; mutable."""
    input: UserMessageItem | None
    """The user message to answer, or None (tool output, structured input, actions)."""
    context: TContext
    """Whatever the app's context factory returned for this request."""
    store: Store[TContext]
    """The app's store."""
    request: Any = None
    """The Starlette `Request` that started the turn (None outside HTTP)."""
    action: Action[str, Any] | None = None
    """For `threads.custom_action` / `sync_custom_action`: the action sent."""
    sender: WidgetItem | None = None
    """For actions: the widget item the action came from, if any."""
    request_type: str = ""
    """The request envelope's `type`, e.g. `threads.create`."""
    _history: list[ThreadItem] | None = field(default=None, repr=False)

    def new_id(self, kind: StoreItemType) -> str:
        """A new id for an item of this thread, from the store's id scheme."""
        if kind == "thread":
            return self.store.generate_thread_id(self.context)
        return self.store.generate_item_id(kind, self.thread, self.context)

    @staticmethod
    def now() -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(timezone.utc)

    def input_text(self) -> str:
        """The text of the user's message (tags as their text), "" when there is none."""
        if self.input is None:
            return ""
        return "".join(
            part.text
            for part in self.input.content
            if isinstance(part, UserMessageTextContent | UserMessageTagContent)
        )

    async def history(self, *, include_hidden: bool = True) -> list[ThreadItem]:
        """Every stored item of the thread, oldest first (loaded once per turn).

        Hidden context items are included by default because they exist for the
        model; pass `include_hidden=False` for what the user sees.
        """
        if self._history is None:
            items: list[ThreadItem] = []
            after: str | None = None
            while True:
                page = await self.store.load_thread_items(
                    self.thread.id, after, _HISTORY_PAGE, "asc", self.context
                )
                items.extend(page.data)
                if not page.has_more or page.after is None:
                    break
                after = page.after
            self._history = items
        if include_hidden:
            return list(self._history)
        return [
            item
            for item in self._history
            if not isinstance(item, HiddenContextItem | SDKHiddenContextItem)
        ]
