"""Item requests: list a thread's items, and feedback on them."""

from __future__ import annotations

from .._reply import JSONResult
from ..types import ItemsFeedbackReq, ItemsListReq
from ..types._base import to_wire_json
from .registry import Handlers
from .services import Call, Services

__all__ = ["handlers"]

handlers = Handlers()


@handlers.on(ItemsListReq)
async def list_items(svc: Services, request: ItemsListReq, call: Call) -> JSONResult:
    """A page of the thread's visible items."""
    items = request.params
    await svc.known_thread(items.thread_id, call)
    page = await svc.visible_items(
        items.thread_id, items.after, svc.limit(items.limit), items.order, call.context
    )
    await svc.refresh_attachment_urls(page, call.context)
    return JSONResult(to_wire_json(page))


@handlers.on(ItemsFeedbackReq)
async def feedback(svc: Services, request: ItemsFeedbackReq, call: Call) -> JSONResult:
    """The user's thumbs up or down, given to the responder's `add_feedback`."""
    params = request.params
    thread = await svc.known_thread(params.thread_id, call)
    for item_id in params.item_ids:
        await svc.load_item(thread.id, item_id, call.context)
    turn = svc.turn(thread, None, call, request.type)
    await svc.responder.add_feedback(turn, params.item_ids, params.kind)
    return JSONResult(b"{}")
