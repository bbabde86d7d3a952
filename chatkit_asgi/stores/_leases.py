"""Turn leases kept in the database as a holder and an expiry, one per thread.

What the stores that share turns across processes (SQLite, SQLAlchemy, MongoDB)
have in common: the lease object the engine renews and releases, waiting for a
busy turn, and freeing an attempt whose answer was lost. Each store supplies the
three statements (`LeaseRows`); a worker that dies holding a lease blocks the
thread until the lease expires, `lease_ttl` seconds after its last renewal.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Final, Protocol

import anyio

from ..store import TurnBusyError

__all__ = [
    "ExpiringTurnLease",
    "LeaseRows",
    "TurnLeaseLostError",
    "free_quietly",
    "wait_for_lease",
]

# How long freeing a lease may take after its holder was cancelled or failed.
_CLEANUP_SECONDS: Final = 5.0


class TurnLeaseLostError(RuntimeError):
    """The lease expired and another worker took the turn before it was renewed."""


class LeaseRows(Protocol):
    """A store's lease statements. Each call bounds itself by the store's timeout
    and reports an unreachable database as `StoreUnavailableError`."""

    lease_ttl: float

    async def _try_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        """Take the lease if it is free, expired or already `holder`'s."""

    async def _renew_lease(self, owner: str, thread_id: str, holder: str) -> bool:
        """Push the expiry `lease_ttl` past now if `holder` still holds it."""

    async def _release_lease(self, owner: str, thread_id: str, holder: str) -> None:
        """Free the lease if `holder` still holds it."""


class ExpiringTurnLease:
    """A turn lease held in the store's database; see the store's `acquire_turn`.

    It expires `lease_ttl` seconds after it was taken or last renewed, so a worker
    that dies while holding it blocks the thread for at most that long.
    """

    def __init__(self, store: LeaseRows, owner: str, thread_id: str, holder: str) -> None:
        self._store = store
        self._owner = owner
        self._holder = holder
        self._released = False
        self.thread_id = thread_id
        self.renew_every: float | None = store.lease_ttl / 3

    async def renew(self) -> None:
        """Push the expiry `lease_ttl` seconds past now.

        Raises `TurnLeaseLostError` when the lease expired and was taken over.
        """
        if self._released:
            raise TurnLeaseLostError(f"the turn lease on thread {self.thread_id} was released")
        if not await self._store._renew_lease(self._owner, self.thread_id, self._holder):
            raise TurnLeaseLostError(
                f"the turn lease on thread {self.thread_id} expired and was taken over"
            )

    async def release(self) -> None:
        """Free the turn (idempotent); a lease that was taken over is left to its new holder."""
        if not self._released:
            self._released = True
            await self._store._release_lease(self._owner, self.thread_id, self._holder)


async def wait_for_lease(
    store: LeaseRows,
    owner: str,
    thread_id: str,
    wait: float,
    *,
    first_poll: float,
    last_poll: float,
) -> ExpiringTurnLease:
    """Take the thread's lease, polling with a growing delay for up to `wait`
    seconds, then raise `TurnBusyError`. Each attempt has the store's whole
    timeout, so `wait` may be longer than it."""
    holder = secrets.token_hex(16)
    deadline = anyio.current_time() + max(wait, 0.0)
    delay = first_poll
    while True:
        if await store._try_lease(owner, thread_id, holder):
            return ExpiringTurnLease(store, owner, thread_id, holder)
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            raise TurnBusyError(thread_id)
        await anyio.sleep(min(delay, remaining))
        delay = min(delay * 2, last_poll, store.lease_ttl / 4)


async def free_quietly(store: LeaseRows, owner: str, thread_id: str, holder: str) -> None:
    """Free what an attempt that was cancelled or failed mid-flight may have been
    granted, rather than block the thread until the lease expires. Shielded and
    time-bounded; its own failure is dropped (the attempt's error is what matters)."""
    with (
        anyio.move_on_after(_CLEANUP_SECONDS, shield=True),
        contextlib.suppress(Exception),
    ):
        await store._release_lease(owner, thread_id, holder)
