"""Fixtures of the widget tests: each protocol test runs on both embedded stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatkit_asgi import ChatKitApp, Store
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient

from ._support import WidgetAssistant


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store[Any]]:
    """Each protocol test runs once on `MemoryStore` and once on `SQLiteStore`."""
    if request.param == "memory":
        yield MemoryStore()
    else:
        async with SQLiteStore(tmp_path / "chatkit.db") as sqlite:
            yield sqlite


@pytest.fixture
def assistant() -> WidgetAssistant:
    """The responder of the protocol tests (it records actions and resumptions)."""
    return WidgetAssistant()


@pytest.fixture
async def client(store: Store[Any], assistant: WidgetAssistant) -> AsyncIterator[ChatKitTestClient]:
    """A test client of `ChatKitApp(assistant, store=store)`."""
    async with ChatKitTestClient(ChatKitApp(assistant, store=store)) as test_client:
        yield test_client
