"""Two uvicorn worker processes over one database: replies on a thread never interleave.

Shared by tests/stores/test_sqlite_workers.py and tests/postgres/test_workers.py;
`start_worker(**settings)` starts `tests.stores._worker_app` over the test's store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from chatkit_asgi.testing import ProtocolHTTPError
from tests.reliability._apps import words
from tests.reliability.conftest import PATIENCE, UvicornProcess
from tests.reliability.test_turns import answering, answers, as_alice, texts

StartWorker = Callable[..., UvicornProcess]


def worker(start: Callable[..., UvicornProcess], store: str, **settings: str) -> UvicornProcess:
    """A uvicorn process serving `tests.stores._worker_app` over `store`."""
    env = {
        "CHATKIT_TEST_STORE": store,
        "CHATKIT_TEST_PACE": "0.02",
        "CHATKIT_TEST_CHECKPOINT": "0.05",
        **{f"CHATKIT_TEST_{key.upper()}": value for key, value in settings.items()},
    }
    return start("tests.stores._worker_app:make_app", env=env, factory=True)


async def two_workers_take_turns(start_worker: StartWorker) -> None:
    """Eight messages sent at once through two workers: each answered whole, in turn."""
    workers = [start_worker(turn_wait="30") for _ in range(2)]
    clients = [as_alice(process) for process in workers]
    async with clients[0], clients[1]:
        events = await clients[0].create_thread("say 2")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        messages = [f"say {n}" for n in range(3, 11)]
        with anyio.fail_after(PATIENCE * 3):
            async with anyio.create_task_group() as tasks:
                for n, message in enumerate(messages):
                    tasks.start_soon(clients[n % 2].add_message, thread_id, message)
        items = await clients[1].list_items(thread_id, order="asc", limit=100)
    lines = texts(items.data)
    assert len(lines) == 2 * (1 + len(messages))
    answers(lines)
    assert sorted(lines[2::2]) == sorted(f"user: {m}" for m in messages)


async def a_busy_thread_is_refused_by_the_other_worker(start_worker: StartWorker) -> None:
    """While one worker answers, the other answers 409 `thread_busy` and stores nothing."""
    first = start_worker()
    second = start_worker(turn_wait="0.3")
    async with as_alice(first) as one, as_alice(second) as two:
        thread_id = (await one.create_thread("say 1"))[0].thread.id  # type: ignore[union-attr]
        with anyio.fail_after(PATIENCE):
            async with answering(one, thread_id, "say 60") as running:
                with pytest.raises(ProtocolHTTPError) as busy:
                    await two.add_message(thread_id, "say 5")
                assert (busy.value.status, busy.value.code) == (409, "thread_busy")
                assert [e.type async for e in running][-1] == "thread.item.done"
        lines = texts((await two.list_items(thread_id, order="asc")).data)
    assert lines == [
        "user: say 1",
        f"assistant: {words(1)}",
        "user: say 60",
        f"assistant: {words(60)}",
    ]


async def a_killed_workers_turn_passes_on(start_worker: StartWorker) -> None:
    """A worker killed mid-reply holds the thread for at most the lease's ttl."""
    settings: dict[str, Any] = {"lease_ttl": "1.5", "turn_wait": "10"}
    doomed = start_worker(**settings)
    survivor = start_worker(**settings)
    async with as_alice(doomed) as one, as_alice(survivor) as two:
        thread_id = (await one.create_thread("say 1"))[0].thread.id  # type: ignore[union-attr]
        with anyio.fail_after(PATIENCE):
            async with answering(one, thread_id, "forever"):
                doomed.kill()  # holding the thread's turn
            events = await two.add_message(thread_id, "say 3")
        assert events[-1].type == "thread.item.done"
        lines = texts((await two.list_items(thread_id, order="asc")).data)
    assert lines[:3] == ["user: say 1", f"assistant: {words(1)}", "user: forever"]
    assert lines[3:-2] in ([], [lines[3]])
    assert lines[-2:] == ["user: say 3", f"assistant: {words(3)}"]
