"""The app the memory test runs under uvicorn in a process of its own.

Configured by environment: `CHATKIT_TEST_BACKEND` (`filesystem` or `s3`), then
`CHATKIT_TEST_DIR` or `CHATKIT_TEST_BUCKET` (plus the standard AWS variables).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from chatkit_asgi import AttachmentStore, ChatKitApp, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.types import ThreadStreamEvent

MAX_SIZE = 256 * 1024 * 1024


def _attachment_store() -> AttachmentStore[Any]:
    if os.environ["CHATKIT_TEST_BACKEND"] == "filesystem":
        from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore

        return FileSystemAttachmentStore(os.environ["CHATKIT_TEST_DIR"], max_size=MAX_SIZE)
    from chatkit_asgi.stores.s3 import S3AttachmentStore

    return S3AttachmentStore(
        os.environ["CHATKIT_TEST_BUCKET"],
        prefix="memory-test/",
        addressing_style="path",
        max_size=MAX_SIZE,
    )


async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """Never called: the memory test only uploads."""
    return
    yield


app = ChatKitApp(respond, store=MemoryStore(), attachment_store=_attachment_store())
