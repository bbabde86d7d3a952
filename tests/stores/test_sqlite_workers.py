"""Two uvicorn workers sharing one SQLite file take turns on a thread (SQLiteStore's
leases), and so do two over SQLAlchemyStore on the same kind of file."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.reliability.conftest import UvicornProcess, uvicorn_process  # noqa: F401

from . import _two_workers as scenario


@pytest.fixture(params=["sqlite", "sqlalchemy"])
def start_worker(
    request: pytest.FixtureRequest,
    uvicorn_process: Callable[..., UvicornProcess],  # noqa: F811
    tmp_path: Path,
) -> scenario.StartWorker:
    path = tmp_path / "shared.db"
    spec = f"sqlite:{path}" if request.param == "sqlite" else f"sqlalchemy:sqlite:///{path}#"
    return partial(scenario.worker, uvicorn_process, spec)


@pytest.mark.uvicorn
async def test_two_workers_on_one_file_take_turns(start_worker: scenario.StartWorker) -> None:
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
