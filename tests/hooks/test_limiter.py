"""`TokenBucketLimiter`: a token bucket per tenant, in memory or in MongoDB."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from chatkit_asgi import ChatKitApp, Refusal, StoreUnavailableError, TokenBucketLimiter
from chatkit_asgi.admission import (
    REQUEST_TYPES,
    TURN_REQUEST_TYPES,
    InMemoryBuckets,
    every_request,
)
from chatkit_asgi.ratelimit_mongodb import MongoBuckets
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse, user_input

from .conftest import Responder, by_user, user_context


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limited_app(limiter: TokenBucketLimiter, store: MemoryStore[Any] | None = None) -> ChatKitApp:
    return ChatKitApp(
        Responder(),
        store=store if store is not None else MemoryStore(tenant=by_user),
        context=user_context,
        admission=limiter,
    )


CREATE = {"type": "threads.create", "params": {"input": user_input("hi")}}
ALICE_CTX = {"user": "alice"}


def created(response: Any) -> bool:
    """Whether a threads.create response created a thread (else it was refused)."""
    assert response.status_code == 200, response.text
    return any(e["type"] == "thread.created" for e in parse_sse(response.content))


# -- the limiter ---------------------------------------------------------------------------


async def test_each_tenant_gets_its_burst_then_waits_for_the_refill() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(
        2, per=60, tenant=by_user, backend=InMemoryBuckets(clock=clock)
    )  # two turns a minute

    assert await limiter({"user": "alice"}, "threads.create", None) is None
    assert await limiter({"user": "alice"}, "threads.add_user_message", None) is None
    refusal = await limiter({"user": "alice"}, "threads.create", None)
    assert refusal is not None
    assert refusal.retry_after == pytest.approx(30.0)
    assert refusal == Refusal(limiter.message, retry_after=refusal.retry_after)
    assert await limiter({"user": "bob"}, "threads.create", None) is None  # Bob has his own

    clock.now += 29.0
    assert await limiter({"user": "alice"}, "threads.create", None) is not None
    clock.now += 1.0
    assert await limiter({"user": "alice"}, "threads.create", None) is None


async def test_only_turns_cost_by_default() -> None:
    limiter = TokenBucketLimiter(1, per=3600, tenant=by_user)
    assert await limiter(ALICE_CTX, "threads.create", None) is None
    for request_type in ("threads.list", "threads.get_by_id", "items.list", "input.transcribe"):
        assert await limiter(ALICE_CTX, request_type, None) is None
    assert await limiter(ALICE_CTX, "threads.custom_action", None) is not None


async def test_costs_can_be_per_request_type() -> None:
    limiter = TokenBucketLimiter(
        10, per=60, tenant=by_user, cost={"threads.create": 4, "threads.list": 1}
    )
    assert await limiter(ALICE_CTX, "threads.create", None) is None  # 6 left
    assert await limiter(ALICE_CTX, "threads.create", None) is None  # 2 left
    assert await limiter(ALICE_CTX, "threads.create", None) is not None
    assert await limiter(ALICE_CTX, "threads.list", None) is None  # 1 left
    assert await limiter(ALICE_CTX, "items.list", None) is None  # free


async def test_refused_turns_stream_the_message_and_other_users_go_on() -> None:
    limiter = TokenBucketLimiter(1, per=3600, tenant=by_user, message="Easy there!")
    async with ChatKitTestClient(limited_app(limiter)) as client:
        first = await client.post(CREATE)
        second = await client.post(CREATE)
        bob = await client.post(CREATE, headers={"x-user": "bob"})

    assert created(first)
    assert parse_sse(second.content) == [
        {"type": "error", "code": "custom", "message": "Easy there!", "allow_retry": False}
    ]
    assert created(bob)


async def test_limited_non_streaming_requests_answer_429_with_the_wait() -> None:
    limiter = TokenBucketLimiter(
        2,
        per=60,
        tenant=by_user,
        cost=every_request,
        backend=InMemoryBuckets(clock=FakeClock()),
    )
    async with ChatKitTestClient(limited_app(limiter)) as client:
        answers = [await client.post({"type": "threads.list", "params": {}}) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "30"
    assert answers[2].json()["error"]["code"] == "rate_limited"


async def test_in_memory_limits_hold_under_concurrent_requests() -> None:
    limiter = TokenBucketLimiter(3, per=3600, tenant=by_user)
    store: MemoryStore[Any] = MemoryStore(tenant=by_user)
    async with ChatKitTestClient(limited_app(limiter, store)) as client:
        responses = await asyncio.gather(*(client.post(CREATE) for _ in range(12)))

    assert sum(created(r) for r in responses) == 3
    assert len((await store.load_threads(100, None, "desc", ALICE_CTX)).data) == 3


async def test_the_limiter_validates_its_settings() -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(0, tenant=by_user)
    with pytest.raises(ValueError):
        TokenBucketLimiter(1, burst=0, tenant=by_user)


async def test_in_memory_buckets_forget_full_buckets_beyond_max_keys() -> None:
    clock = FakeClock()
    buckets = InMemoryBuckets(clock=clock, max_keys=10)
    for n in range(10):
        assert await buckets.take(f"user{n}", 1, rate=1.0, burst=1.0) == 0.0
    clock.now += 5.0  # every bucket is full again
    assert await buckets.take("newcomer", 1, rate=1.0, burst=1.0) == 0.0
    assert len(buckets._buckets) <= 10


# -- MongoDB ---------------------------------------------------------------------------------


async def test_mongodb_buckets_refill_on_the_given_clock(database: Any) -> None:
    clock = FakeClock()
    buckets = MongoBuckets(database, clock=clock)

    assert await buckets.take("k", 1, rate=0.5, burst=2) == 0.0
    assert await buckets.take("k", 1, rate=0.5, burst=2) == 0.0
    assert await buckets.take("k", 1, rate=0.5, burst=2) == pytest.approx(2.0)
    clock.now += 1.0
    assert await buckets.take("k", 1, rate=0.5, burst=2) == pytest.approx(1.0)
    clock.now += 1.0
    assert await buckets.take("k", 1, rate=0.5, burst=2) == 0.0
    assert await buckets.take("other", 2, rate=0.5, burst=2) == 0.0


async def test_mongodb_buckets_use_the_server_clock_by_default(database: Any) -> None:
    buckets = MongoBuckets(database)
    assert await buckets.take("k", 1, rate=1 / 60, burst=1) == 0.0
    wait = await buckets.take("k", 1, rate=1 / 60, burst=1)
    assert 50.0 < wait <= 60.0  # a minute per token, less the moments since the first take
    indexes = await buckets.collection.index_information()
    assert indexes["expires_at"]["expireAfterSeconds"] == 0  # idle buckets are deleted


async def test_mongodb_limits_hold_across_workers(
    mongo_uri: str, database: Any, database_name: str
) -> None:
    """Three "workers", each with its own client, take from one bucket at once."""
    clients: list[AsyncMongoClient[dict[str, Any]]] = [
        AsyncMongoClient(mongo_uri) for _ in range(3)
    ]
    try:
        workers = [MongoBuckets(client[database_name]) for client in clients]
        waits = await asyncio.gather(
            *(workers[n % 3].take("shared", 1, rate=1 / 3600, burst=5) for n in range(30))
        )
    finally:
        for client in clients:
            await client.close()

    assert sum(wait == 0.0 for wait in waits) == 5
    assert all(wait > 3000 for wait in waits if wait)


async def test_mongodb_limits_hold_across_apps(
    mongo_uri: str, database: Any, database_name: str
) -> None:
    """Two app workers over one MongoDB: together they grant Alice her burst, no more."""
    clients: list[AsyncMongoClient[dict[str, Any]]] = [
        AsyncMongoClient(mongo_uri) for _ in range(2)
    ]
    try:
        apps = [
            limited_app(
                TokenBucketLimiter(
                    4, per=3600, tenant=by_user, backend=MongoBuckets(client[database_name])
                )
            )
            for client in clients
        ]
        async with ChatKitTestClient(apps[0]) as one, ChatKitTestClient(apps[1]) as two:
            responses = await asyncio.gather(
                *((one if n % 2 else two).post(CREATE) for n in range(10))
            )
    finally:
        for client in clients:
            await client.close()

    assert sum(created(r) for r in responses) == 4


async def test_an_unreachable_mongodb_is_a_503_or_admits_when_failing_open() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )
    try:
        backend = MongoBuckets(client["chatkit"])
        with pytest.raises(StoreUnavailableError):
            await backend.take("k", 1, rate=1.0, burst=1.0)

        strict = TokenBucketLimiter(1, tenant=by_user, backend=backend)
        lenient = TokenBucketLimiter(1, tenant=by_user, backend=backend, fail_open=True)
        async with ChatKitTestClient(limited_app(strict)) as client_strict:
            refused = await client_strict.post(CREATE)
        async with ChatKitTestClient(limited_app(lenient)) as client_lenient:
            admitted = await client_lenient.post(CREATE)
    finally:
        await client.close()

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "store_unavailable"
    assert created(admitted)


async def test_mongodb_buckets_work_with_motor(mongo_uri: str, database_name: str) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    client: Any = AsyncIOMotorClient(mongo_uri)
    try:
        buckets = MongoBuckets(client[database_name], clock=FakeClock())
        assert await buckets.take("k", 1, rate=1.0, burst=1) == 0.0
        assert await buckets.take("k", 1, rate=1.0, burst=1) == pytest.approx(1.0)
    finally:
        await client.drop_database(database_name)
        client.close()


async def test_the_app_asks_the_limiter_only_about_request_types_that_cost() -> None:
    class CountingBuckets(InMemoryBuckets):
        def __init__(self) -> None:
            super().__init__()
            self.keys: list[str] = []

        async def take(self, key: str, tokens: float, rate: float, burst: float) -> float:
            self.keys.append(key)
            return await super().take(key, tokens, rate, burst)

    limiter = TokenBucketLimiter(
        1, per=3600, tenant=by_user, cost={"threads.list": 1}, backend=CountingBuckets()
    )
    assert limiter.request_types == {"threads.list"}
    assert TokenBucketLimiter(1, tenant=by_user).request_types == TURN_REQUEST_TYPES
    assert TokenBucketLimiter(1, tenant=by_user, cost=every_request).request_types == (
        REQUEST_TYPES
    )
    async with ChatKitTestClient(limited_app(limiter)) as client:
        first = await client.post({"type": "threads.list", "params": {}})
        second = await client.post({"type": "threads.list", "params": {}})
        response = await client.post(CREATE)  # free: the limiter is not asked

    assert first.status_code == 200
    assert second.status_code == 429
    assert created(response)
    assert limiter.backend.keys == ["chatkit:alice", "chatkit:alice"]  # type: ignore[attr-defined]
