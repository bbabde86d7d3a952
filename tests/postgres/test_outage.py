"""PostgreSQL crashes and comes back: 503 `store_unavailable` meanwhile, then it heals.

The server is a cluster of this test's own (not the session's), stopped with
`pg_ctl stop -m immediate` (no shutdown checkpoint, connections cut) and started
again on the same port with the same data.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from chatkit_asgi import ChatKitApp
from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError
from tests._echo import echo
from tests._postgres_server import private_server


async def test_a_crashed_database_answers_503_then_the_app_heals() -> None:
    with private_server() as server:
        store: SQLAlchemyStore[Any] = SQLAlchemyStore(server.url)
        app = ChatKitApp(echo, store=store)
        async with ChatKitTestClient(app) as client:
            thread_id = (await client.create_thread("before"))[0].thread.id  # type: ignore[union-attr]

            await anyio.to_thread.run_sync(server.pause)
            started = time.monotonic()
            with pytest.raises(ProtocolHTTPError) as down:
                await client.list_items(thread_id)
            assert (down.value.status, down.value.code) == (503, "store_unavailable")
            assert time.monotonic() - started < 5.5

            await anyio.to_thread.run_sync(server.resume)
            # The pool drops the connections the crash broke; at most one call sees one.
            with anyio.fail_after(20):
                while True:
                    try:
                        events = await client.add_message(thread_id, "after")
                        break
                    except ProtocolHTTPError as exc:
                        assert (exc.status, exc.code) == (503, "store_unavailable")
                        await anyio.sleep(0.2)
            assert events[-1].type == "thread.item.done"
            items = await client.list_items(thread_id, order="asc")
        await store.aclose()
    texts = [getattr(item.content[0], "text", None) for item in items.data]
    assert texts == ["before", "echo: before", "after", "echo: after"]
