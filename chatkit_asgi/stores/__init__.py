"""Ready-made stores.

`SQLiteStore` is the embedded default, `MemoryStore` is for tests and demos, and
`FileSystemAttachmentStore` keeps attachment bytes on disk. Stores with optional
dependencies are imported on first use, so the base install does not need their
drivers: `SQLAlchemyStore` (PostgreSQL or SQLite through SQLAlchemy, extra
`postgres` or `sqlalchemy`), `MongoStore` (extra `mongodb`) and
`S3AttachmentStore` (extra `s3`). They also live in their own modules
(`chatkit_asgi.stores.sqlalchemy`, `.mongodb`, `.s3`), and are left out of
`__all__` so that `import *` works without the extras.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .filesystem import FileSystemAttachmentStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    # For type checkers only; at run time `__getattr__` imports them on first use.
    from .mongodb import MongoStore as MongoStore
    from .s3 import S3AttachmentStore as S3AttachmentStore
    from .sqlalchemy import SQLAlchemyStore as SQLAlchemyStore

__all__ = [
    "FileSystemAttachmentStore",
    "MemoryStore",
    "SQLiteStore",
]

# Name -> module of the stores that need an optional extra.
_OPTIONAL = {
    "SQLAlchemyStore": ".sqlalchemy",
    "MongoStore": ".mongodb",
    "S3AttachmentStore": ".s3",
}


def __getattr__(name: str) -> Any:
    # Imported on first access: a missing extra raises an ImportError naming it.
    module = _OPTIONAL.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, *_OPTIONAL])
