"""Ready-made stores.

`SQLiteStore` is the embedded default, `MemoryStore` is for tests and demos, and
`FileSystemAttachmentStore` keeps attachment bytes on disk. Stores with optional
dependencies live in their own modules and are imported from there:
`chatkit_asgi.stores.mongodb.MongoStore` (extra `mongodb`) and
`chatkit_asgi.stores.s3.S3AttachmentStore` (extra `s3`).
"""

from .filesystem import FileSystemAttachmentStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = [
    "FileSystemAttachmentStore",
    "MemoryStore",
    "SQLiteStore",
]
