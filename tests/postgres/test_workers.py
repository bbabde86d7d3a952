"""Two uvicorn workers sharing one PostgreSQL database take turns on a thread."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from tests.reliability.conftest import UvicornProcess, uvicorn_process  # noqa: F401
from tests.stores import _two_workers as scenario


@pytest.fixture
def start_worker(
    uvicorn_process: Callable[..., UvicornProcess],  # noqa: F811
    postgres_url: str,
    pg_schema: str,
) -> scenario.StartWorker:
    return partial(scenario.worker, uvicorn_process, f"sqlalchemy:{postgres_url}#{pg_schema}")


@pytest.mark.uvicorn
async def test_two_workers_on_one_database_take_turns(start_worker: scenario.StartWorker) -> None:
    await scenario.two_workers_take_turns(start_worker)


@pytest.mark.uvicorn
async def test_a_busy_thread_is_refused_by_the_other_worker(
    start_worker: scenario.StartWorker,
) -> None:
    await scenario.a_busy_thread_is_refused_by_the_other_worker(start_worker)


@pytest.mark.uvicorn
async def test_a_killed_workers_turn_passes_to_another_after_the_lease_ttl(
    start_worker: scenario.StartWorker,
) -> None:
    await scenario.a_killed_workers_turn_passes_on(start_worker)
