"""Fixtures of the differential tests: the reference and ours, side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.compat._pair", "tests.compat._script")

from chatkit_asgi.stores import MemoryStore, SQLiteStore  # noqa: E402

from ._ours import OurSide  # noqa: E402
from ._pair import Pair  # noqa: E402
from ._reference import RefSide  # noqa: E402


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """The reference beside ours over a `MemoryStore`."""
    ours = OurSide(MemoryStore())
    yield Pair(RefSide(), ours)
    await ours.aclose()


@pytest.fixture(params=["memory", "sqlite"])
async def any_pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    """The reference beside ours, once over a `MemoryStore` and once over a `SQLiteStore`."""
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "compat.db")
    ours = OurSide(store)
    yield Pair(RefSide(), ours)
    await ours.aclose()
