"""Turn leases of SQLAlchemyStore on PostgreSQL: one reply per thread across workers."""

from __future__ import annotations

from chatkit_asgi.stores.sqlalchemy import TurnLeaseLostError
from tests.stores._lease_contract import LeaseContract


class TestPostgresLeases(LeaseContract):
    """Each store has its own engine (pool), like a separate worker process."""

    lost_error = TurnLeaseLostError
