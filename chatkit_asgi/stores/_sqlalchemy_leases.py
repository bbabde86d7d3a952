"""Turn leases of `SQLAlchemyStore`: one row per thread in the turns table.

A row with an expiry rather than PostgreSQL advisory locks: an advisory lock belongs
to one connection, so a reply would hold a pooled connection for its whole length, a
dropped connection would free the lock without its holder noticing, and PgBouncer in
transaction mode breaks them. A row works through any pool or proxy, on SQLite too,
and a crashed worker's lease simply expires. Expiry is judged by the database's clock.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, ParamSpec, Protocol, TypeVar

import anyio
from sqlalchemy import and_, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._common import TurnLeaseLostError
from ._sqlalchemy_schema import Tables


class _LeaseHost(Protocol):
    """What the leases use of `SQLAlchemyStore` (importing it would be a cycle)."""

    lease_ttl: float
    tables: Tables
    _insert: Any
    _now: Any

    def _bounded(self) -> AbstractAsyncContextManager[None]: ...

    def _autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


__all__ = ["SQLTurnLease", "TurnLeaseLostError", "outages", "try_lease"]

R = TypeVar("R")
P = ParamSpec("P")

# How long work that must outlive a cancellation (freeing a lease) may take.
_CLEANUP_SECONDS: Final = 5.0


def outages(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Bound the call by the store's `timeout`; an unreachable database raises
    `StoreUnavailableError` (the app answers 503)."""

    @functools.wraps(method)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
        store: _LeaseHost = args[0]._store  # type: ignore[attr-defined]
        async with store._bounded():
            return await method(*args, **kwargs)

    return bounded


class SQLTurnLease:
    """A turn lease held in the turns table; see `SQLAlchemyStore.acquire_turn`.

    It expires `lease_ttl` seconds after it was taken or last renewed, so a worker
    that dies while holding it blocks the thread for at most that long.
    """

    def __init__(self, store: _LeaseHost, owner: str, thread_id: str, holder: str):
        self._store = store
        self._owner = owner
        self._holder = holder
        self._released = False
        self.thread_id = thread_id
        self.renew_every: float | None = store.lease_ttl / 3

    @outages
    async def renew(self) -> None:
        """Push the expiry `lease_ttl` seconds past now (database time).

        Raises `TurnLeaseLostError` when the lease expired and was taken over.
        """
        if self._released:
            raise TurnLeaseLostError(f"the turn lease on thread {self.thread_id} was released")
        if not await renew_lease(self._store, self._owner, self.thread_id, self._holder):
            raise TurnLeaseLostError(
                f"the turn lease on thread {self.thread_id} expired and was taken over"
            )

    @outages
    async def release(self) -> None:
        """Free the turn (idempotent); a lease that was taken over is left to its new holder."""
        if not self._released:
            self._released = True
            await release_lease(self._store, self._owner, self.thread_id, self._holder)


async def try_lease(store: _LeaseHost, owner: str, thread_id: str, holder: str) -> bool:
    turns = store.tables.turns
    expires = store._now + round(store.lease_ttl * 1000)
    insert = store._insert(turns).values(
        owner=owner, thread_id=thread_id, holder=holder, expires_at=expires
    )
    # Taken when free, expired (its holder crashed) or already ours (an earlier
    # attempt whose answer was lost); the row comes back only then.
    statement = insert.on_conflict_do_update(
        index_elements=[turns.c.owner, turns.c.thread_id],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
        where=or_(turns.c.expires_at <= store._now, turns.c.holder == holder),
    ).returning(turns.c.holder)
    try:
        async with store._autocommit() as conn:
            row = (await conn.execute(statement)).one_or_none()
    except BaseException:
        # Cancelled (or failed) mid-flight: the database may have granted the
        # lease anyway; free it rather than block the thread until it expires.
        with (
            anyio.move_on_after(_CLEANUP_SECONDS, shield=True),
            contextlib.suppress(Exception),  # the original error is what matters
        ):
            await release_lease(store, owner, thread_id, holder)
        raise
    return row is not None


async def renew_lease(store: _LeaseHost, owner: str, thread_id: str, holder: str) -> bool:
    turns = store.tables.turns
    async with store._autocommit() as conn:
        result = await conn.execute(
            update(turns)
            .where(_lease_key(turns, owner, thread_id, holder))
            .values(expires_at=store._now + round(store.lease_ttl * 1000))
        )
    return bool(result.rowcount)


async def release_lease(store: _LeaseHost, owner: str, thread_id: str, holder: str) -> None:
    turns = store.tables.turns
    async with store._autocommit() as conn:
        await conn.execute(delete(turns).where(_lease_key(turns, owner, thread_id, holder)))


def _lease_key(turns: Any, owner: str, thread_id: str, holder: str) -> Any:
    return and_(turns.c.owner == owner, turns.c.thread_id == thread_id, turns.c.holder == holder)
