"""Attachments: users send files and images, the assistant reads them.

Run it with uvicorn (`python -m uvicorn examples.attachments.app:app`) and point
the ChatKit UI at it::

    api: {
      url: "http://127.0.0.1:8000/chatkit",
      uploadStrategy: {type: "direct", uploadUrl: "http://127.0.0.1:8000/chatkit/upload"},
      // or: uploadStrategy: {type: "two_phase"},
    },
    composer: {attachments: {enabled: true}},

Files are kept on disk under `CHATKIT_ATTACHMENTS_DIR` (default
`chatkit-attachments/`) and served back by the app at signed, expiring URLs. Set
`CHATKIT_S3_BUCKET` to keep them in S3 instead; everything else comes from the
standard AWS configuration (`AWS_ENDPOINT_URL_S3`, `AWS_REGION`, credentials...),
and `CHATKIT_S3_PATH_STYLE=1` selects path-style addressing (MinIO, LocalStack).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from chatkit_asgi import AttachmentStore, ChatKitApp, Turn
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)


async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """Describe every file the user attached, from its bytes."""
    lines = []
    for attachment in turn.input.attachments if turn.input else []:
        data = await turn.read_attachment(attachment)  # what you would hand to a model
        line = (
            f"- {attachment.name} ({attachment.mime_type}, {len(data)} bytes, "
            f"sha256 {hashlib.sha256(data).hexdigest()[:12]})"
        )
        if attachment.mime_type.startswith("text/"):
            first = data.decode("utf-8", "replace").strip().splitlines()[:1]
            line += f": “{first[0][:80]}”" if first else ": empty"
        lines.append(line)
    text = "I received:\n" + "\n".join(lines) if lines else "Attach a file and I'll look at it."
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=text)],
        )
    )


def attachment_store(env: Mapping[str, str]) -> AttachmentStore[Any]:
    """The filesystem store, or S3 when `CHATKIT_S3_BUCKET` is set."""
    bucket = env.get("CHATKIT_S3_BUCKET")
    if bucket:
        from chatkit_asgi.stores.s3 import S3AttachmentStore  # pip install chatkit-asgi[s3]

        return S3AttachmentStore(
            bucket,
            prefix=env.get("CHATKIT_S3_PREFIX", "chatkit/"),
            addressing_style="path" if env.get("CHATKIT_S3_PATH_STYLE") == "1" else None,
        )
    from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore

    return FileSystemAttachmentStore(env.get("CHATKIT_ATTACHMENTS_DIR", "chatkit-attachments"))


def create_app(env: Mapping[str, str] = os.environ) -> Starlette:
    """The demo site: ChatKit at `/chatkit`, its upload and file routes below it."""
    chatkit = ChatKitApp(
        respond,
        store=SQLiteStore(env.get("CHATKIT_DB", "chatkit-demo.db")),
        attachment_store=attachment_store(env),
    )
    return Starlette(
        routes=[Mount("/chatkit", app=chatkit)],
        middleware=[
            # The ChatKit UI usually runs on another origin during development; uploads
            # POST (direct) or PUT/POST (two-phase) and previews GET.
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "PUT"],
                allow_headers=["*"],
            )
        ],
        lifespan=chatkit.lifespan,
    )


app = create_app()
