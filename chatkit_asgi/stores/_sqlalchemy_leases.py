"""Turn lease statements of `SQLAlchemyStore`: one row per thread in the turns table.

A row with an expiry rather than PostgreSQL advisory locks: an advisory lock belongs
to one connection, so a reply would hold a pooled connection for its whole length, a
dropped connection would free the lock without its holder noticing, and PgBouncer in
transaction mode breaks them. A row works through any pool or proxy, on SQLite too,
and a crashed worker's lease simply expires. Expiry is judged by the database's clock.
The lease object and the waiting are the stores' shared ones (`_leases.py`).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import and_, delete, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ._sqlalchemy_schema import Tables

__all__ = ["release_lease", "renew_lease", "try_lease"]


class _LeaseHost(Protocol):
    """What the statements use of `SQLAlchemyStore` (importing it would be a cycle)."""

    lease_ttl: float
    tables: Tables
    _insert: Any
    _now: Any

    def _autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]: ...


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
    async with store._autocommit() as conn:
        row = (await conn.execute(statement)).one_or_none()
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
