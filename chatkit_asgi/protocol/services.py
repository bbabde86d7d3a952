"""What every request handler works with: the stores, the responder, the settings,
and the reads they share (threads, items, attachments, visible pages).

Handlers (`threads`, `followups`, `items`, `attachments`) are functions of a
`Services`, a request and its `Call`; `Engine` is a `Services` that dispatches.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, NamedTuple, NoReturn

from .._reply import Emit, ReplyStats
from ..admission import Admission
from ..errors import NotSupportedError, ResourceNotFoundError
from ..responder import BoundResponder, ResponderLike
from ..store import AttachmentStore, NotFoundError, Store
from ..turn import Turn
from ..types import (
    Attachment,
    Page,
    StreamOptions,
    Thread,
    ThreadItem,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageInput,
    UserMessageItem,
)
from .pipeline import ReplyPipeline, is_hidden
from .turns import Orphan, Orphans, TakenTurn, TurnTaker, Undo

__all__ = ["Call", "Services", "not_found"]

logger = logging.getLogger("chatkit_asgi")


class Call(NamedTuple):
    """What a request comes with besides its body."""

    context: Any
    """The request context (what the app's context factory built)."""
    http_request: Any = None
    """The Starlette `Request`, handed to the responder as `Turn.request`."""
    preloaded: ThreadMetadata | None = None
    """The thread admission loaded already, if any (one read per request)."""


def not_found(kind: Literal["thread", "item", "attachment"], ident: str) -> NoReturn:
    """Raise the protocol's 404 for a missing thread, item or attachment."""
    # Worded as the reference's stores word it ("Thread thr_x not found"): ported code
    # and tests match on that text.
    raise ResourceNotFoundError(f"{kind.capitalize()} {ident} not found", code=f"{kind}_not_found")


class Services:
    """Protocol semantics shared by every request type, over a `Store` and a responder."""

    def __init__(
        self,
        responder: ResponderLike,
        store: Store[Any],
        attachment_store: AttachmentStore[Any] | None = None,
        *,
        page_size: int = 20,
        max_page_size: int = 100,
        turn_wait: float = 15.0,
        cleanup_timeout: float = 5.0,
        checkpoint_interval: float | None = 1.0,
        admission: Admission | None = None,
    ) -> None:
        self.responder = BoundResponder(responder)
        self.store = store
        self.attachment_store = attachment_store
        self.page_size = page_size
        self.max_page_size = max_page_size
        self.checkpoint_interval = checkpoint_interval
        self.turns = TurnTaker(store, turn_wait, admission)
        self.orphans = Orphans(store, cleanup_timeout)

    # -- settings -------------------------------------------------------------------

    @property
    def admission(self) -> Admission | None:
        """The hook asked before every turn and JSON request (of the types it names)."""
        return self.turns.admission

    @admission.setter
    def admission(self, hook: Admission | None) -> None:
        self.turns.admission = hook

    @property
    def turn_wait(self) -> float:
        """Seconds a reply waits for the thread's turn before 409 `thread_busy`."""
        return self.turns.turn_wait

    @turn_wait.setter
    def turn_wait(self, seconds: float) -> None:
        self.turns.turn_wait = seconds

    @property
    def cleanup_timeout(self) -> float:
        """Seconds the writes of a failed request have to be taken back."""
        return self.orphans.cleanup_timeout

    @cleanup_timeout.setter
    def cleanup_timeout(self, seconds: float) -> None:
        self.orphans.cleanup_timeout = seconds

    def limit(self, limit: int | None) -> int:
        """A client's page size, defaulted and bounded."""
        return min(limit or self.page_size, self.max_page_size)

    def attachment_store_for(self, request_type: str) -> AttachmentStore[Any]:
        """The attachment store, or `NotSupportedError` naming the request that needs it."""
        if self.attachment_store is None:
            raise NotSupportedError(
                f"{request_type} needs an attachment store; none is configured",
                details=[{"missing": "attachment_store"}],
            )
        return self.attachment_store

    # -- turns and replies ----------------------------------------------------------

    def turn(
        self, thread: ThreadMetadata, user_message: UserMessageItem | None, call: Call, kind: str
    ) -> Turn[Any]:
        """What the responder receives for this request."""
        return Turn(
            thread=thread,
            input=user_message,
            context=call.context,
            store=self.store,
            request=call.http_request,
            request_type=kind,
            attachment_store=self.attachment_store,
        )

    def take_turn(
        self, request_type: str, thread: ThreadMetadata, context: Any, *, new: bool = False
    ) -> AbstractAsyncContextManager[TakenTurn]:
        """Admit the request and take the thread's turn (`TurnTaker.take`) for this
        engine's responder; the admission hook is told the thread unless it is `new`."""
        return self.turns.take(
            request_type, thread, context, self.responder, admitted=None if new else thread
        )

    def whole_or_nothing(self, what: str, subject: str, orphan: Orphan | None = None) -> Undo:
        """Around a request's writes before its reply: taken back if one fails (`Undo`)."""
        return Undo(self.orphans, what, subject, orphan)

    async def reply(
        self,
        turn: Turn[Any],
        source: AsyncIterator[ThreadStreamEvent],
        emit: Emit,
        options: StreamOptions,
        stats: ReplyStats | None,
    ) -> None:
        """Run a responder's events through the reply pipeline to `emit`."""
        pipeline = ReplyPipeline(
            self.store,
            turn,
            emit,
            thread_response,
            checkpoint_interval=self.checkpoint_interval,
            cleanup_timeout=self.cleanup_timeout,
            stats=stats,
        )
        await pipeline.run(source, options)

    # -- reads ----------------------------------------------------------------------

    async def load_thread(self, thread_id: str, context: Any) -> ThreadMetadata:
        """The thread, or 404."""
        try:
            return await self.store.load_thread(thread_id, context)
        except NotFoundError:
            not_found("thread", thread_id)

    async def known_thread(self, thread_id: str, call: Call) -> ThreadMetadata:
        """The thread, unless admission loaded it already (one read per request)."""
        if call.preloaded is not None and call.preloaded.id == thread_id:
            return call.preloaded
        return await self.load_thread(thread_id, call.context)

    async def load_item(self, thread_id: str, item_id: str, context: Any) -> ThreadItem:
        """A client-visible item, or 404 (hidden items do not exist for the client)."""
        try:
            item = await self.store.load_item(thread_id, item_id, context)
        except NotFoundError:
            not_found("item", item_id)
        if is_hidden(item):
            not_found("item", item_id)
        return item

    async def load_sender(
        self, thread_id: str, item_id: str | None, context: Any
    ) -> ThreadItem | None:
        """The item an action came from, when it names one."""
        if not item_id:
            return None
        return await self.load_item(thread_id, item_id, context)

    async def load_attachment(self, attachment_id: str, context: Any) -> Attachment:
        """The attachment's metadata, or 404."""
        try:
            return await self.store.load_attachment(attachment_id, context)
        except NotFoundError:
            not_found("attachment", attachment_id)

    async def load_attachments(self, message: UserMessageInput, context: Any) -> list[Attachment]:
        """The attachments a new message names, each checked to exist."""
        return [await self.load_attachment(a, context) for a in message.attachments]

    async def visible_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Page[ThreadItem]:
        """A full page of client-visible items: hidden ones are skipped, not counted.

        Reads one item past `limit` so `has_more` is exact.
        """
        visible: list[ThreadItem] = []
        cursor = after
        while len(visible) <= limit:
            try:
                page = await self.store.load_thread_items(
                    thread_id, cursor, limit + 1 - len(visible), order, context
                )
            except NotFoundError:
                not_found("item", cursor or thread_id)
            visible.extend(item for item in page.data if not is_hidden(item))
            if not page.has_more or not page.data:
                break
            cursor = page.data[-1].id
        data = visible[:limit]
        has_more = len(visible) > limit
        return Page[ThreadItem](
            data=data, has_more=has_more, after=data[-1].id if data and has_more else None
        )

    # -- attachment URLs ------------------------------------------------------------

    async def refresh_attachment_urls(self, page: Page[ThreadItem], context: Any) -> None:
        """Renew expired attachment URLs (image previews) in items about to be sent.

        Only the answer changes: rewriting stored items on a read could race with a
        retry deleting them, and the store renews URLs cheaply on every load.
        """
        if self.attachment_store is None:
            return
        for item in page.data:
            if isinstance(item, UserMessageItem) and item.attachments:
                item.attachments = [
                    await self.fresh_attachment(a, context) for a in item.attachments
                ]

    async def fresh_attachment(self, attachment: Attachment, context: Any) -> Attachment:
        """The attachment with its URLs renewed if they expired (as it was if that fails)."""
        if self.attachment_store is None:
            return attachment
        try:
            return await self.attachment_store.refresh_urls(attachment, context)
        except Exception:
            logger.warning(
                "could not renew the URLs of attachment %s", attachment.id, exc_info=True
            )
            return attachment


def thread_response(thread: ThreadMetadata, items: Page[ThreadItem] | None = None) -> Thread:
    """A thread as the client sees it."""
    # Thread metadata is integration-only, like attachment metadata: never sent.
    return Thread(
        id=thread.id,
        title=thread.title,
        created_at=thread.created_at,
        status=thread.status,
        allowed_image_domains=thread.allowed_image_domains,
        items=items if items is not None else Page[ThreadItem](),
    )
