"""The store the reference's tests use: SQLite, written to the reference's contract.

It is our `tests/insert_only_store.py` (copied beside this file when the suite is
prepared): `add_thread_item` is a plain INSERT, as in the reference's own helper.
"""

from insert_only_store import InsertOnlyStore as SQLiteStore

__all__ = ["SQLiteStore"]
