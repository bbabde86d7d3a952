"""Taking a thread's turn: admission, the turn lease, and taking back a failed request.

A streaming request that writes to a thread first takes that thread's turn, so two
replies never interleave their items. `TurnTaker.take` is the one way to do that:
ask the admission hook, acquire the lease (the store's, or a lock in this process
for stores without leases), and give the lease back if anything refuses the
request before its plan exists.

The writes a request makes before its reply are taken back when one of them fails
(`Undo`); a new thread that could not be taken back while the store was down is
deleted before the next request (`Orphans`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from .._reply import Emit, ReplyStats, StreamPlan, release_lease
from ..admission import Admission, Refusal, asked_types
from ..errors import ConflictError
from ..store import NotFoundError, Store, TurnBusyError, TurnLease
from ..types import Attachment, StreamOptions, ThreadMetadata

if TYPE_CHECKING:
    from ..responder import BoundResponder
    from ..turn import Turn

__all__ = ["Orphan", "Orphans", "Refused", "TakenTurn", "TurnTaker", "Undo", "refusal_plan"]

logger = logging.getLogger("chatkit_asgi")

# New threads left to delete at most (each is one failed threads.create in an outage).
_MAX_ORPHANS = 1000


class Refused(Exception):
    """The admission hook refused the request (caught in `Engine.prepare`)."""

    def __init__(self, refusal: Refusal, thread: ThreadMetadata | None) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.thread = thread


def refusal_plan(refusal: Refusal, thread: ThreadMetadata | None) -> StreamPlan:
    """A reply that only says no: the refusal's event, nothing stored."""
    event = refusal.event()

    async def run(emit: Emit) -> None:
        await emit(event)

    return StreamPlan(
        run, allow_cancel=True, thread_id=thread.id if thread else None, refusal=refusal
    )


class TakenTurn:
    """A thread's turn, held while a request is validated (see `TurnTaker.take`)."""

    __slots__ = ("lease", "responder")

    def __init__(self, lease: TurnLease, responder: BoundResponder) -> None:
        self.lease = lease
        self.responder = responder

    async def plan(
        self,
        turn: Turn[Any],
        body: Callable[[Emit, StreamOptions, ReplyStats | None], Awaitable[None]],
    ) -> StreamPlan:
        """The request's plan, holding the lease; `body(emit, options, stats)` is the reply.

        Asks the responder's `stream_options` now: still inside `take`, so the lease
        goes back if it fails.
        """
        options = await self.responder.stream_options(turn)

        async def run(emit: Emit, stats: ReplyStats | None) -> None:
            await body(emit, options, stats)

        return StreamPlan.counted(
            run,
            allow_cancel=options.allow_cancel,
            lease=self.lease,
            run_id=turn.run_id,
            thread_id=turn.thread.id,
        )


class TurnTaker:
    """Admission and turn leases for one engine."""

    def __init__(self, store: Store[Any], turn_wait: float, admission: Admission | None) -> None:
        self.store = store
        self.turn_wait = turn_wait
        self._locks = _TurnLocks()
        self.admission = admission

    @property
    def admission(self) -> Admission | None:
        """The hook asked before every turn and JSON request (of the types it names)."""
        return self._admission

    @admission.setter
    def admission(self, hook: Admission | None) -> None:
        self._admission = hook
        self.admission_types = asked_types(hook)

    async def admit(self, request_type: str, context: Any, thread: ThreadMetadata | None) -> None:
        """Ask the admission hook; a refusal (`Refused`) stops the request before its turn."""
        if self._admission is None or request_type not in self.admission_types:
            return
        refusal = await self._admission(context, request_type, thread)
        if refusal is not None:
            raise Refused(refusal, thread)

    @asynccontextmanager
    async def take(
        self,
        request_type: str,
        thread: ThreadMetadata,
        context: Any,
        responder: BoundResponder,
        *,
        admitted: ThreadMetadata | None,
    ) -> AsyncIterator[TakenTurn]:
        """Admit the request (asking about `admitted`, None for a new thread), take the
        thread's turn, and give it back if the block raises: the block validates the
        request and returns `taken.plan(...)`, which then holds the lease."""
        await self.admit(request_type, context, admitted)
        lease = await self._acquire(thread.id, context)
        try:
            yield TakenTurn(lease, responder)
        except BaseException:
            await release_lease(lease)
            raise

    async def _acquire(self, thread_id: str, context: Any) -> TurnLease:
        try:
            lease = await self.store.acquire_turn(thread_id, context, self.turn_wait)
            if lease is None:
                lease = await self._locks.acquire(thread_id, self.turn_wait)
        except TurnBusyError:
            raise ConflictError(
                "Another reply is still running on this thread; try again when it has finished",
                code="thread_busy",
                headers={"Retry-After": "1"},
            ) from None
        return lease


class _LocalLease:
    """An in-process turn lock, for stores without leases of their own."""

    renew_every: float | None = None

    def __init__(self, locks: _TurnLocks, thread_id: str, semaphore: anyio.Semaphore) -> None:
        self._locks = locks
        self._thread_id = thread_id
        self._semaphore: anyio.Semaphore | None = semaphore

    async def renew(self) -> None:
        """Nothing to do: a local lock does not expire."""

    async def release(self) -> None:
        """Let the next reply on the thread go."""
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None
            self._locks.forget(self._thread_id)


class _TurnLocks:
    """One lock per thread so two replies in this process never interleave their items.

    Semaphores rather than locks: a plan acquires in the request task and
    releases in the task that streams the reply.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[anyio.Semaphore, int]] = {}

    async def acquire(self, thread_id: str, wait: float) -> _LocalLease:
        if thread_id not in self._held:
            # Nobody holds or waits for this thread (every new thread, most replies):
            # no timer, no cancel scope.
            semaphore = anyio.Semaphore(1)
            semaphore.acquire_nowait()
            self._held[thread_id] = (semaphore, 1)
            return _LocalLease(self, thread_id, semaphore)
        semaphore, waiters = self._held[thread_id]
        self._held[thread_id] = (semaphore, waiters + 1)
        acquired = False
        try:
            with anyio.move_on_after(wait):
                await semaphore.acquire()
                acquired = True
        finally:
            if not acquired:
                self.forget(thread_id)
        if not acquired:
            raise TurnBusyError(thread_id)
        return _LocalLease(self, thread_id, semaphore)

    def forget(self, thread_id: str) -> None:
        semaphore, waiters = self._held[thread_id]
        if waiters <= 1:
            del self._held[thread_id]
        else:
            self._held[thread_id] = (semaphore, waiters - 1)


class Orphan(NamedTuple):
    """A new thread whose creation failed, left to delete once the store answers."""

    thread_id: str
    context: Any
    attachments: list[Attachment]
    """The message's attachments as they were before the request bound them."""


class Orphans:
    """New threads whose creation failed while the store was down, deleted later."""

    def __init__(self, store: Store[Any], cleanup_timeout: float) -> None:
        self.store = store
        self.cleanup_timeout = cleanup_timeout
        self._orphans: list[Orphan] = []

    def __bool__(self) -> bool:
        return bool(self._orphans)

    def keep(self, orphan: Orphan) -> None:
        """Remember a thread to delete before the next request."""
        if len(self._orphans) >= _MAX_ORPHANS:
            logger.warning("too many new threads left to delete; forgetting one")
            del self._orphans[0]
        self._orphans.append(orphan)

    async def delete(self) -> None:
        """Delete the new threads whose creation had failed, while the store answers."""
        orphans, self._orphans = self._orphans, []
        try:
            while orphans:
                with anyio.fail_after(self.cleanup_timeout):
                    await self._delete(orphans[0])
                orphans.pop(0)
        except Exception:
            logger.debug("the store is still down; new threads left to delete later")
        finally:
            self._orphans.extend(orphans)

    async def _delete(self, orphan: Orphan) -> None:
        for original in orphan.attachments:
            with contextlib.suppress(NotFoundError):
                current = await self.store.load_attachment(original.id, orphan.context)
                # Still bound to the dead thread, not sent again in another one since.
                if current.thread_id == orphan.thread_id:
                    await self.store.save_attachment(original, orphan.context)
        with contextlib.suppress(NotFoundError):
            await self.store.delete_thread(orphan.thread_id, orphan.context)
        logger.info("deleted thread %s, whose creation had failed", orphan.thread_id)


class Undo:
    """Around a request's writes before its reply (`async with`): if one fails (or
    the request is cancelled meanwhile), what was written is taken back, so that
    sending the request again (what the ChatKit client does) stores it once.

    Stores have no transactions across calls (none written to openai-chatkit's
    contract do), so the writes are undone with ordinary store calls instead.
    When the store is down for those too, a new thread (`orphan`) is deleted
    before the engine's next request: nobody was told of it, so nothing else
    can have used it meanwhile.

    A plain class rather than an `asynccontextmanager`: it wraps every new message.
    """

    __slots__ = ("_orphan", "_orphans", "_steps", "_subject", "_what")

    def __init__(
        self, orphans: Orphans, what: str, subject: str, orphan: Orphan | None = None
    ) -> None:
        self._orphans = orphans
        self._what = what
        self._subject = subject
        self._orphan = orphan
        self._steps: list[Callable[[], Awaitable[None]]] = []

    def add(self, step: Callable[[], Awaitable[None]]) -> None:
        """Note how to undo the write about to be made."""
        self._steps.append(step)

    async def __aenter__(self) -> Undo:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            return
        what = f"{self._what} {self._subject}"
        if not await self.run(what, self._orphans.cleanup_timeout) and self._orphan is not None:
            self._orphans.keep(self._orphan)

    async def run(self, what: str, within: float) -> bool:
        """Undo, newest write first, shielded and within `within` seconds; whether
        every step was done.

        Stops at the first step the store refuses: an attachment that could not be
        given back its old binding must not go with the thread deleted after it.
        """
        with anyio.move_on_after(within, shield=True):
            for step in reversed(self._steps):
                try:
                    await step()
                except NotFoundError:
                    pass  # the write never landed: nothing to take back
                except Exception:
                    logger.warning("could not take back %s", what, exc_info=True)
                    return False
            return True
        logger.warning("could not take back %s within %s s", what, within)  # timed out
        return False
