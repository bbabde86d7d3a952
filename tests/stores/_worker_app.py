"""The app the two-worker turn tests run in uvicorn processes, over a store in a database.

Run it as `uvicorn --factory tests.stores._worker_app:make_app`.

- `CHATKIT_TEST_STORE`: `sqlite:<path>` (SQLiteStore) or `sqlalchemy:<url>#<schema>`
  (SQLAlchemyStore; the PostgreSQL schema to use, or nothing after `#`).
- `CHATKIT_TEST_LEASE_TTL`: the store's `lease_ttl` (default 30).
- `CHATKIT_TEST_PACE`, `CHATKIT_TEST_TURN_WAIT`, `CHATKIT_TEST_CHECKPOINT`: as in
  tests/reliability/_apps.py, whose responder (`Talker`) this app uses.
"""

from __future__ import annotations

import os
from typing import Any

from chatkit_asgi import ChatKitApp, Store
from tests.reliability._apps import Talker, by_user, user_context


def _store() -> Store[Any]:
    kind, _, where = os.environ["CHATKIT_TEST_STORE"].partition(":")
    lease_ttl = float(os.environ.get("CHATKIT_TEST_LEASE_TTL", "30"))
    if kind == "sqlite":
        from chatkit_asgi.stores import SQLiteStore

        return SQLiteStore(where, tenant=by_user, lease_ttl=lease_ttl)
    if kind == "sqlalchemy":
        from chatkit_asgi.stores.sqlalchemy import SQLAlchemyStore

        url, _, schema = where.partition("#")
        options: dict[str, Any] = {}
        if schema:
            options = {"connect_args": {"server_settings": {"search_path": schema}}}
        return SQLAlchemyStore(url, tenant=by_user, lease_ttl=lease_ttl, engine_options=options)
    raise ValueError(f"unknown store {kind!r}")


def make_app() -> ChatKitApp:
    """The app, as the environment says."""
    checkpoint = os.environ.get("CHATKIT_TEST_CHECKPOINT", "0.05")
    return ChatKitApp(
        Talker(float(os.environ.get("CHATKIT_TEST_PACE", "0.02"))),
        store=_store(),
        context=user_context,
        turn_wait=float(os.environ.get("CHATKIT_TEST_TURN_WAIT", "15")),
        checkpoint_interval=None if checkpoint == "off" else float(checkpoint),
    )
