"""Ready-made stores: `MemoryStore` for tests and demos, `SQLiteStore` as the embedded default."""

from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
    "SQLiteStore",
]
