"""Turn-lease behaviour shared by the stores whose leases live in the database.

Subclass `LeaseContract` and provide a `make_store(**options)` fixture whose stores
share one database (each like a separate worker) and accept `lease_ttl=`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from chatkit_asgi.store import Store, TurnBusyError
from chatkit_asgi.testing.store_contract import ALICE, BOB

# Generous bounds: they only keep a broken lease from hanging the suite.
PATIENCE = 10.0

MakeStore = Callable[..., Store[Any]]


class LeaseContract:
    """One reply per thread across every worker sharing the database."""

    lost_error: type[Exception] = RuntimeError

    async def test_a_held_turn_is_busy_until_released(self, make_store: MakeStore) -> None:
        store = make_store()
        lease = await store.acquire_turn("thr_1", ALICE, wait=0)
        assert lease is not None
        with pytest.raises(TurnBusyError):
            await store.acquire_turn("thr_1", ALICE, wait=0.3)
        await lease.release()
        await lease.release()  # idempotent
        again = await store.acquire_turn("thr_1", ALICE, wait=0)
        assert again is not None
        await again.release()

    async def test_a_waiting_turn_proceeds_when_the_holder_releases(
        self, make_store: MakeStore
    ) -> None:
        worker_a, worker_b = make_store(), make_store()
        lease = await worker_a.acquire_turn("thr_1", ALICE, wait=0)
        assert lease is not None
        acquired = anyio.Event()

        async def wait_for_turn() -> None:
            second = await worker_b.acquire_turn("thr_1", ALICE, wait=PATIENCE)
            assert second is not None
            acquired.set()
            await second.release()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_turn)
            await anyio.sleep(0.3)
            assert not acquired.is_set()
            await lease.release()
            with anyio.fail_after(PATIENCE):
                await acquired.wait()

    async def test_turns_are_per_thread_and_per_tenant(self, make_store: MakeStore) -> None:
        store = make_store()
        leases = [
            await store.acquire_turn("thr_1", ALICE, wait=0),
            await store.acquire_turn("thr_2", ALICE, wait=0),
            await store.acquire_turn("thr_1", BOB, wait=0),
        ]
        for lease in leases:
            assert lease is not None
            await lease.release()

    async def test_renew_every_is_a_third_of_the_ttl(self, make_store: MakeStore) -> None:
        lease = await make_store(lease_ttl=12.0).acquire_turn("thr_1", ALICE, wait=0)
        assert lease is not None
        assert lease.renew_every == 4.0
        await lease.release()

    async def test_renewing_keeps_the_lease(self, make_store: MakeStore) -> None:
        worker_a, worker_b = make_store(lease_ttl=1.0), make_store(lease_ttl=1.0)
        lease = await worker_a.acquire_turn("thr_1", ALICE, wait=0)
        assert lease is not None
        for _ in range(8):  # 2.4 s, over twice the ttl
            await anyio.sleep(0.3)
            await lease.renew()
            with pytest.raises(TurnBusyError):
                await worker_b.acquire_turn("thr_1", ALICE, wait=0)
        await lease.release()

    async def test_an_expired_lease_is_taken_over(self, make_store: MakeStore) -> None:
        crashed, survivor = make_store(lease_ttl=0.8), make_store(lease_ttl=0.8)
        stale = await crashed.acquire_turn("thr_1", ALICE, wait=0)  # never renewed
        assert stale is not None
        with pytest.raises(TurnBusyError):
            await survivor.acquire_turn("thr_1", ALICE, wait=0)
        with anyio.fail_after(PATIENCE):
            lease = await survivor.acquire_turn("thr_1", ALICE, wait=PATIENCE)
        assert lease is not None
        # The crashed holder learns it lost the turn, and cannot free the new holder's.
        with pytest.raises(self.lost_error):
            await stale.renew()
        await stale.release()
        with pytest.raises(TurnBusyError):
            await crashed.acquire_turn("thr_1", ALICE, wait=0)
        await lease.release()

    async def test_a_cancelled_wait_leaves_no_lease(self, make_store: MakeStore) -> None:
        store = make_store()
        lease = await store.acquire_turn("thr_1", ALICE, wait=0)
        assert lease is not None
        with anyio.move_on_after(0.3):
            await store.acquire_turn("thr_1", ALICE, wait=PATIENCE)
        await lease.release()
        again = await store.acquire_turn("thr_1", ALICE, wait=0)
        assert again is not None
        await again.release()

    async def test_many_contenders_never_hold_the_turn_together(
        self, make_store: MakeStore
    ) -> None:
        workers = [make_store() for _ in range(4)]
        holding = 0
        overlaps = 0
        turns = 0

        async def contend(store: Store[Any]) -> None:
            nonlocal holding, overlaps, turns
            for _ in range(5):
                lease = await store.acquire_turn("thr_1", ALICE, wait=PATIENCE)
                assert lease is not None
                holding += 1
                overlaps += holding > 1
                await anyio.sleep(0.01)
                holding -= 1
                turns += 1
                await lease.release()

        with anyio.fail_after(PATIENCE * 3):
            async with anyio.create_task_group() as tg:
                for store in workers:
                    tg.start_soon(contend, store)
        assert (turns, overlaps) == (20, 0)
