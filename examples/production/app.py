"""A ChatKit backend ready for production: the app of docs/production-guide.md.

FastAPI, with one auth dependency shared by your routes and ChatKit, threads in
MongoDB, attachments in S3, rate limits shared by every worker, JSON logs and
health checks. Run it with::

    pip install 'chatkit-asgi[server,mongodb,s3]' fastapi
    uvicorn app:app --workers 4 --log-config logging.json \\
        --proxy-headers --forwarded-allow-ips 10.0.0.0/8 --timeout-graceful-shutdown 30

Configured from the environment:

- `MONGODB_URL` (default `mongodb://localhost:27017/chatkit`): threads, turn
  leases and rate limits, shared by every worker.
- `S3_BUCKET` (default `chatkit-attachments`): where attachments go. The endpoint,
  region and credentials come from botocore's own variables (`AWS_ENDPOINT_URL`
  for MinIO and friends, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...) or an instance
  role; `S3_ADDRESSING_STYLE=path` for services without virtual-host buckets.
- `CHATKIT_ALLOWED_ORIGIN` (default `http://localhost:5173`): the page that embeds
  the ChatKit UI.
- `CHATKIT_TURNS_PER_MINUTE` (default 20) and `CHATKIT_TURN_BURST` (default 5):
  each user's rate limit.

Sign in with `Authorization: Bearer secret-token-of-alice` (or `...-of-bob`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.middleware.cors import CORSMiddleware

from chatkit_asgi import ChatKitApp, TokenBucketLimiter, Turn
from chatkit_asgi.app import RUN_ID_HEADER
from chatkit_asgi.ratelimit_mongodb import MongoBuckets
from chatkit_asgi.stores.mongodb import MongoStore
from chatkit_asgi.stores.s3 import S3AttachmentStore
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)

# -- 1. Who is asking: one dependency for your routes and for ChatKit ------------------


@dataclass(frozen=True)
class User:
    id: str
    name: str


# A stand-in for your identity provider: verify a session cookie or a JWT here.
USERS = {
    "secret-token-of-alice": User("u-alice", "Alice"),
    "secret-token-of-bob": User("u-bob", "Bob"),
}


def current_user(request: Request) -> User:
    """The signed-in user, or 401.

    A FastAPI dependency (`Depends(current_user)`) and ChatKit's context factory at
    once: ChatKit calls it with the request itself, so it takes only the `Request`.
    """
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    user = USERS.get(token)
    if user is None:
        raise HTTPException(401, "Sign in first", headers={"WWW-Authenticate": "Bearer"})
    return user


def user_id(user: User) -> str:
    """The tenant of a request: threads, attachments and rate limits are per user."""
    return user.id


# -- 2. The assistant -------------------------------------------------------------------


async def respond(turn: Turn[User]) -> AsyncIterator[ThreadStreamEvent]:
    """Your model goes here; this one answers by name."""
    text = f"Hello {turn.context.name}, you said: {turn.input_text()}"
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=text)],
        )
    )


# -- 3. Stores shared by every worker: MongoDB and S3 ----------------------------------

store: MongoStore[User] = MongoStore.from_uri(
    os.environ.get("MONGODB_URL", "mongodb://localhost:27017/chatkit"), tenant=user_id
)
attachments: S3AttachmentStore[User] = S3AttachmentStore(
    os.environ.get("S3_BUCKET", "chatkit-attachments"),
    prefix="chatkit/",
    tenant=user_id,
    addressing_style="path" if os.environ.get("S3_ADDRESSING_STYLE") == "path" else None,
)

chatkit = ChatKitApp(
    respond,
    store=store,
    attachment_store=attachments,
    context=current_user,
    # Per user, 20 turns a minute and 5 at once, counted in MongoDB so that every
    # worker (and every machine) draws from the same bucket; reading threads is free.
    admission=TokenBucketLimiter(
        float(os.environ.get("CHATKIT_TURNS_PER_MINUTE", "20")),
        per=60,
        burst=float(os.environ.get("CHATKIT_TURN_BURST", "5")),
        tenant=user_id,
        backend=MongoBuckets(store.database),
    ),
    tenant=user_id,  # hashed into log records as `tenant_hash`
    health=True,  # GET /chatkit/healthz: readiness, pings MongoDB and S3
)

# -- 4. The FastAPI app -----------------------------------------------------------------

app = FastAPI(lifespan=chatkit.lifespan)  # closes the stores on shutdown
app.mount("/chatkit", chatkit)
app.add_middleware(
    CORSMiddleware,
    allow_origins=[os.environ.get("CHATKIT_ALLOWED_ORIGIN", "http://localhost:5173")],
    allow_methods=["GET", "POST", "PUT"],
    allow_headers=["authorization", "content-type"],
    expose_headers=[RUN_ID_HEADER],  # lets the page read the run id of each reply
)


@app.get("/api/me")
def me(user: Annotated[User, Depends(current_user)]) -> dict[str, str]:
    """One of your own routes, behind the same dependency."""
    return {"id": user.id, "name": user.name}


@app.get("/livez")
def livez() -> dict[str, str]:
    """Liveness: the process answers. No store is asked, so an outage restarts nothing."""
    return {"status": "ok"}
