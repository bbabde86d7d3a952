"""What a responder receives: one `Turn` per reply."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic

from typing_extensions import TypeVar

from .store import AttachmentStore, Store, StoreItemType
from .types import (
    Action,
    Attachment,
    ClientToolCallItem,
    HiddenContextItem,
    SDKHiddenContextItem,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    WidgetRoot,
)

__all__ = ["Turn", "new_run_id"]

TContext = TypeVar("TContext", default=Any)

_HISTORY_PAGE = 100


def new_run_id() -> str:
    """A new run id: `run_` and 96 random bits."""
    return f"run_{secrets.token_hex(12)}"


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
    attachment_store: AttachmentStore[TContext] | None = None
    """The app's attachment store, if it has one (see `read_attachment`)."""
    run_id: str = field(default_factory=new_run_id)
    """This reply's id: the `X-ChatKit-Run-Id` header of its response, and the
    `run_id` of its log records and spans."""
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

    def stream_widget(
        self, widget: WidgetRoot | AsyncIterable[WidgetRoot], copy_text: str | None = None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The events showing a widget, or successive states of one, as a new item.

        See `chatkit_asgi.widgets.stream_widget`: a finished tree is one
        `thread.item.done`; states are sent as minimal updates.
        """
        from .widgets.streaming import stream_widget

        return stream_widget(self, widget, copy_text)

    def client_tool_call(
        self, name: str, arguments: dict[str, Any] | None = None, *, call_id: str | None = None
    ) -> ThreadItemDoneEvent:
        """The event asking the client page to run its tool `name`; end the reply with it.

        The call is saved as pending. The client answers with
        `threads.add_client_tool_output`, which completes it (output and status)
        and runs the responder again: the completed call is then the newest item
        of `history()`.
        """
        item_id = self.new_id("tool_call")
        return ThreadItemDoneEvent(
            item=ClientToolCallItem(
                id=item_id,
                thread_id=self.thread.id,
                created_at=self.now(),
                call_id=call_id or item_id,
                name=name,
                arguments=arguments or {},
            )
        )

    async def read_attachment(self, attachment: Attachment | str) -> bytes:
        """The bytes of an attachment of this user (an `Attachment` or its id).

        For feeding files to a model. Another user's attachment, or one whose
        bytes are gone, raises `NotFoundError`; large files are better streamed
        with `open_attachment`.
        """
        return b"".join([chunk async for chunk in self.open_attachment(attachment)])

    async def open_attachment(self, attachment: Attachment | str) -> AsyncIterator[bytes]:
        """The bytes of an attachment of this user, streamed in chunks."""
        if self.attachment_store is None:
            raise RuntimeError("The app has no attachment store to read attachments from")
        attachment_id = attachment if isinstance(attachment, str) else attachment.id
        # Ownership: the metadata must load in this request's context.
        await self.store.load_attachment(attachment_id, self.context)
        async for chunk in self.attachment_store.open(attachment_id, self.context):
            yield chunk

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
