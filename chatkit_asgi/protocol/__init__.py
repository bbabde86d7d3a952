"""The protocol: what each request type means, independent of HTTP.

`Engine.parse` turns a body into a typed request; `Engine.prepare` validates it
against the store (loads the thread, checks ids and state, takes the thread's
turn) and returns what answers it: a `JSONResult` or a `StreamPlan`
(`chatkit_asgi._reply`, the link to the transport). Everything that can refuse a
request happens in `prepare`, before any response byte is sent; `StreamPlan.run`
then performs the writes and feeds events to an `emit` callback, persisting them
as they pass (`pipeline`).

One function answers each request type, registered in its family's module
(`threads`, `followups`, `items`, `attachments`); the table is checked against
the request union (`chatkit_asgi.types.ChatKitReq`) when this package is
imported. A new request type is one model in the union and one function.
"""

from __future__ import annotations

from typing import Any

from .._reply import JSONResult, StreamPlan
from ..types import ChatKitReq, ThreadMetadata, is_streaming_req
from . import attachments, followups, items, threads
from .parse import REQUEST_MODELS, parse_request
from .registry import Handler, merge
from .services import Call, Services
from .turns import Refused, refusal_plan

__all__ = ["HANDLERS", "Engine"]

HANDLERS: dict[type[Any], Handler] = merge(
    (threads.handlers, followups.handlers, items.handlers, attachments.handlers), REQUEST_MODELS
)
"""The function that answers each request model."""


class Engine(Services):
    """Protocol semantics of every request type, over a `Store` and a responder."""

    @staticmethod
    def parse(body: bytes) -> ChatKitReq:
        """Validate a request body; `InvalidRequestError` says precisely what is wrong."""
        return parse_request(body)

    async def prepare(
        self, request: ChatKitReq, context: Any, http_request: Any = None
    ) -> JSONResult | StreamPlan:
        """Validate `request` against the store and return what answers it."""
        if self.orphans:
            await self.orphans.delete()
        handler = HANDLERS[type(request)]
        try:
            if is_streaming_req(request):
                # Streaming handlers ask admission themselves, when they take the turn.
                return await handler(self, request, Call(context, http_request))
            thread = None
            if request.type in self.turns.admission_types:
                thread = await self._admission_thread(request, context)
                await self.turns.admit(request.type, context, thread)
            return await handler(self, request, Call(context, http_request, thread))
        except Refused as refused:
            # -- admission refusals: an event on streams, 429 otherwise
            if not is_streaming_req(request):
                raise refused.refusal.error() from None
            return refusal_plan(refused.refusal, refused.thread)

    async def _admission_thread(self, request: ChatKitReq, context: Any) -> ThreadMetadata | None:
        """The thread a non-streaming request names, loaded (404 if it does not exist)."""
        thread_id = getattr(request.params, "thread_id", None)
        return await self.load_thread(thread_id, context) if isinstance(thread_id, str) else None
