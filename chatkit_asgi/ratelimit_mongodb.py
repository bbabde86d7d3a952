"""Token buckets in MongoDB: rate limits that hold across every app worker.

::

    from pymongo import AsyncMongoClient
    from chatkit_asgi.admission import TokenBucketLimiter
    from chatkit_asgi.ratelimit_mongodb import MongoBuckets

    database = AsyncMongoClient(uri)["chatkit"]
    limiter = TokenBucketLimiter(
        20, per=60, tenant=lambda ctx: ctx["user_id"], backend=MongoBuckets(database)
    )

One document per bucket (`_id` is the bucket key). A take is one
`find_one_and_update` whose update is an aggregation pipeline: the refill, the
check and the take happen in a single atomic document update on the server, so
concurrent workers never over-grant and no retry loop is needed. Time is the
server's clock (`$$NOW`), so workers with skewed clocks agree. Idle buckets are
deleted by a TTL index once they would be full again.

Needs the `mongodb` extra (PyMongo); works with PyMongo's `AsyncMongoClient` and
with motor databases.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, ParamSpec, TypeVar

import anyio
from pymongo import ReturnDocument
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from .store import StoreUnavailableError

__all__ = ["MongoBuckets"]

P = ParamSpec("P")
R = TypeVar("R")

# Seconds a full bucket's document is kept after it would have refilled, before
# the TTL index may delete it.
_TTL_MARGIN = 60.0


def _outages(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """An unreachable server becomes `StoreUnavailableError` (the app answers 503)."""

    @functools.wraps(method)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:  # covers AutoReconnect, timeouts, server selection
            raise StoreUnavailableError(f"MongoDB is unavailable: {exc}") from exc

    return translated


class MongoBuckets:
    """A `BucketBackend` in a MongoDB collection, shared by all workers.

    Args:
        database: an async database handle (`AsyncMongoClient(uri)[name]` or motor's).
        collection: the collection of buckets.
        clock: seconds since the epoch, for tests; by default the server's clock.
        auto_index: create the TTL index that deletes idle buckets on first use
            (or call `ensure_indexes` at deploy time).
    """

    def __init__(
        self,
        database: Any,
        *,
        collection: str = "chatkit_rate_limits",
        clock: Callable[[], float] | None = None,
        auto_index: bool = True,
    ) -> None:
        self.collection: Any = database[collection]
        self._clock = clock
        self._indexed = not auto_index
        self._index_lock = anyio.Lock()

    @_outages
    async def ensure_indexes(self) -> None:
        """Create the TTL index that deletes buckets nobody used for a while."""
        await self.collection.create_index("expires_at", name="expires_at", expireAfterSeconds=0)
        self._indexed = True

    @_outages
    async def take(self, key: str, tokens: float, rate: float, burst: float) -> float:
        """Take `tokens` from bucket `key` if it holds them; else the seconds to wait."""
        if not self._indexed:
            async with self._index_lock:
                if not self._indexed:
                    await self.ensure_indexes()
        update = self._pipeline(tokens, rate, burst)
        for _ in range(3):
            bucket = await self.collection.find_one_and_update(
                {"_id": key}, update, return_document=ReturnDocument.AFTER
            )
            if bucket is not None:
                if bucket["granted"]:
                    return 0.0
                return max(0.0, (tokens - float(bucket["tokens"])) / rate)
            # First use (or deleted when idle): create it full, then take as usual.
            # Not an upsert: concurrent upserts of one new key may answer without
            # the document on some servers, and then nobody knows if tokens were taken.
            with contextlib.suppress(DuplicateKeyError):  # another worker was first: as good
                await self.collection.insert_one({"_id": key, "tokens": burst})
        raise RuntimeError(f"rate limit bucket {key!r} keeps disappearing")

    def _pipeline(self, tokens: float, rate: float, burst: float) -> list[dict[str, Any]]:
        ttl_ms = (burst / rate + _TTL_MARGIN) * 1000
        if self._clock is None:
            # Milliseconds as numbers: date arithmetic is not offered by every
            # MongoDB-wire server, $toLong of a date is.
            now: Any = {"$toLong": "$$NOW"}
            expires: Any = {"$add": ["$$NOW", ttl_ms]}
        else:
            seconds = self._clock()
            now = int(seconds * 1000)
            expires = datetime.fromtimestamp(seconds, timezone.utc) + timedelta(milliseconds=ttl_ms)
        elapsed = {"$max": [0, {"$subtract": ["$_now", {"$ifNull": ["$at", "$_now"]}]}]}
        gained = {"$multiply": [elapsed, rate / 1000]}
        refilled = {"$add": [{"$ifNull": ["$tokens", burst]}, gained]}
        return [
            {"$set": {"_now": now}},
            {"$set": {"_held": {"$min": [burst, refilled]}}},
            {"$set": {"granted": {"$gte": ["$_held", tokens]}}},
            {
                "$set": {
                    "tokens": {"$cond": ["$granted", {"$subtract": ["$_held", tokens]}, "$_held"]},
                    "at": "$_now",
                    "expires_at": expires,
                }
            },
            {"$unset": ["_now", "_held"]},
        ]
