"""The link between the protocol and the transport: what a prepared request hands over.

`protocol` builds these and `app`/`streaming` consume them; neither side imports
the other. A `JSONResult` is a complete answer; a `StreamPlan` is a validated
streaming request holding its thread's turn lease, run with an `Emit` callback
that the transport turns into frames. `ReplyStats` travel explicitly with
`StreamPlan.run`, from the transport (which counts bytes and events) to the reply
pipeline (which notes the first event, errors and answer text).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from .errors import ErrorCode
from .turn import new_run_id
from .types import AssistantMessageItem, ErrorEvent, ThreadItem, ThreadStreamEvent

if TYPE_CHECKING:
    from .admission import Refusal
    from .store import TurnLease

__all__ = ["Emit", "JSONResult", "ReplyStats", "StreamPlan", "emit_error", "release_lease"]

logger = logging.getLogger("chatkit_asgi")

Emit = Callable[[ThreadStreamEvent], Awaitable[None]]
"""Where a reply's events go: the transport's encoder, or a list in tests."""


@dataclass(frozen=True)
class JSONResult:
    """A complete JSON answer to a non-streaming request."""

    body: bytes


class ReplyStats:
    """Counters of one streaming reply, kept when someone listens.

    `stream_reply` counts `events` and `bytes` per batch of frames it writes and
    notes whether the client left; the reply pipeline reports the responder's first
    event, error events and finished items where it handles each event anyway. So
    listening costs nothing per streamed token. Times are `time.perf_counter()` values.
    """

    __slots__ = (
        "bytes",
        "cancelled",
        "client_gone",
        "error_code",
        "events",
        "first_event",
        "output",
        "ran",
        "started",
    )

    def __init__(self, started: float, *, collect_text: bool = False) -> None:
        self.started = started
        self.events = 0
        self.bytes = 0
        self.first_event: float | None = None
        self.error_code: str | None = None
        self.client_gone = False
        self.cancelled = False
        self.ran = False
        self.output: list[str] | None = [] if collect_text else None

    def responded(self) -> None:
        """The responder produced its first event."""
        if self.first_event is None:
            self.first_event = time.perf_counter()

    def error(self, code: str) -> None:
        """An error event with this code was sent."""
        self.error_code = code

    def done(self, item: ThreadItem) -> None:
        """An item was finished: an assistant message's text is kept when collecting."""
        if self.output is not None and isinstance(item, AssistantMessageItem):
            self.output.append("".join(part.text for part in item.content))

    @property
    def time_to_first_event(self) -> float | None:
        """Seconds from the request's arrival to the responder's first event."""
        return None if self.first_event is None else self.first_event - self.started

    def outcome(self, refused: bool) -> str:
        """How the reply ended (see the module docs)."""
        if refused:
            return "refused"
        if not self.ran:
            return "not_started"
        if self.cancelled:
            return "cancelled"
        if self.error_code is not None:
            return "error"
        if self.client_gone:
            return "detached"
        return "completed"


class StreamPlan:
    """A validated streaming request, ready to run.

    `allow_cancel` is what the reply's `stream_options` event will say; the
    transport uses it to decide what a client disconnect means. The plan holds
    the thread's turn lease until `run` finishes or `release` is called.
    `run_id` is the reply's id (`Turn.run_id`, the `X-ChatKit-Run-Id` header);
    `refusal` is set on the plan of a request the admission hook refused.

    `body` performs the request with an `Emit`; `StreamPlan.counted` takes a body
    that also receives the reply's `ReplyStats` (None when nobody listens).
    """

    def __init__(
        self,
        body: Callable[[Emit], Awaitable[None]],
        *,
        allow_cancel: bool,
        lease: TurnLease | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
        refusal: Refusal | None = None,
    ) -> None:
        self._body = _ignoring_stats(body)
        self.allow_cancel = allow_cancel
        self._lease = lease
        # -- production hooks
        self.run_id = run_id or new_run_id()
        self.thread_id = thread_id
        self.refusal = refusal

    @classmethod
    def counted(
        cls,
        body: Callable[[Emit, ReplyStats | None], Awaitable[None]],
        *,
        allow_cancel: bool,
        lease: TurnLease | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
    ) -> StreamPlan:
        """A plan whose body reports to the reply's statistics itself."""
        plan = cls(_NO_BODY, allow_cancel=allow_cancel, lease=lease, run_id=run_id)
        plan._body = body
        plan.thread_id = thread_id
        return plan

    async def run(self, emit: Emit, stats: ReplyStats | None = None) -> None:
        """Perform the request, passing every client-visible event to `emit`.

        With `stats`, the reply pipeline reports the responder's first event, error
        events and (when collecting) answer text there: where it looks at each event
        anyway, so a listener costs nothing per streamed token.

        The pipeline turns responder failures into error events itself; a failure of
        the engine or store around it is logged and told to the client the same way,
        so every transport gets a stream that ends with an `error` event, never a cut.
        """
        try:
            lease = self._lease
            if lease is not None and lease.renew_every:
                async with anyio.create_task_group() as keeper:
                    keeper.start_soon(_keep_renewed, lease, lease.renew_every)
                    await self._body(emit, stats)
                    keeper.cancel_scope.cancel()
            else:
                await self._body(emit, stats)
        except Exception:
            logger.exception("reply failed outside the responder")
            event = ErrorEvent(code=ErrorCode.STREAM_ERROR.value, allow_retry=True)
            await emit_error(emit, event, stats)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give up the turn lease (idempotent); for plans that will never run."""
        lease, self._lease = self._lease, None
        if lease is not None:
            await release_lease(lease)


async def emit_error(emit: Emit, event: ErrorEvent, stats: ReplyStats | None) -> None:
    """Send an error event of the server's own, and report its code when someone listens
    (the responder's error events are reported where the pipeline handles them)."""
    if stats is not None:
        stats.error(event.code)
    await emit(event)


async def release_lease(lease: TurnLease) -> None:
    """Give a lease back, even after a cancellation; an outage only delays the next turn.

    Runs shielded so the next reply does not wait for an expiry. A lease that cannot
    be released (its store is down) expires by itself, so that is logged, not raised:
    the reply it guarded is over either way.
    """
    with anyio.CancelScope(shield=True):
        try:
            await lease.release()
        except Exception:
            logger.warning("could not release a turn lease; it will expire", exc_info=True)


async def _keep_renewed(lease: TurnLease, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        try:
            await lease.renew()
        except Exception:
            logger.warning("could not renew a turn lease", exc_info=True)


def _ignoring_stats(
    body: Callable[[Emit], Awaitable[None]],
) -> Callable[[Emit, ReplyStats | None], Awaitable[None]]:
    def run(emit: Emit, stats: ReplyStats | None) -> Awaitable[None]:
        return body(emit)

    return run


async def _no_body(emit: Emit) -> None:  # pragma: no cover - replaced at once
    pass


_NO_BODY = _no_body
