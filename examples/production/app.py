"""A production setup: authentication, rate limits, run ids, traces, metrics, JSON logs, health.

Run it with::

    uvicorn examples.production.app:app --workers 4

Configured from the environment:

- `MONGODB_URI`: threads and rate limits in MongoDB, shared by every worker.
  Without it: SQLite (`CHATKIT_DB`, default `chatkit.db`) and per-process limits.
- `CHATKIT_ALLOWED_ORIGIN`: the origin of the page that embeds the ChatKit UI
  (default `http://localhost:5173`); it may read the `X-ChatKit-Run-Id` header.
- `OTEL_CONSOLE=1`: print spans and metrics to stdout (needs `opentelemetry-sdk`).
  Otherwise telemetry uses the global OpenTelemetry providers, e.g. those that
  `opentelemetry-instrument uvicorn ...` configures from `OTEL_*` variables.
- `LOG_LEVEL`: `INFO` shows one JSON line per request and per turn.
- `CHATKIT_TURNS_PER_MINUTE` (default 20) and `CHATKIT_TURN_BURST` (default 5):
  each user's rate limit.

Sign in with `Authorization: Bearer secret-token-of-alice` (or `...-of-bob`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.middleware.cors import CORSMiddleware

from chatkit_asgi import ChatKitApp, Store, TokenBucketLimiter, Turn
from chatkit_asgi.admission import BucketBackend, InMemoryBuckets
from chatkit_asgi.app import RUN_ID_HEADER
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
)

TOKENS = {"secret-token-of-alice": "alice", "secret-token-of-bob": "bob"}


def user_context(request: Request) -> dict[str, str]:
    """The signed-in user, from a bearer token (use your real auth here)."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if token not in TOKENS:
        raise HTTPException(401, "Sign in first", headers={"WWW-Authenticate": "Bearer"})
    return {"user_id": TOKENS[token]}


def user_id(context: Any) -> str:
    """The tenant of a request: its user."""
    user: str = context["user_id"]
    return user


async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    """Echo, with the run id a support engineer would ask for."""
    yield ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=f"Echo: {turn.input_text()}")],
        )
    )


# -- JSON logs: one line per request and per turn ---------------------------------------------


class JSONFormatter(logging.Formatter):
    """The message and the record's structured fields as one JSON object per line."""

    _standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in self._standard}
        document = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields,
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())
    library = logging.getLogger("chatkit_asgi")
    library.addHandler(handler)
    library.propagate = False
    library.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


# -- OpenTelemetry ---------------------------------------------------------------------------


def telemetry_options() -> dict[str, Any]:
    """`ChatKitApp` telemetry options: console exporters on demand, else the global providers."""
    if os.environ.get("OTEL_CONSOLE") != "1":
        return {"telemetry": True}
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=15_000)
    return {"tracer_provider": tracer_provider, "meter_provider": MeterProvider([reader])}


# -- stores and limits -----------------------------------------------------------------------


def stores() -> tuple[Store[Any], BucketBackend]:
    """MongoDB for both when `MONGODB_URI` is set (every worker shares them), else local."""
    uri = os.environ.get("MONGODB_URI")
    if uri is None:
        db = os.environ.get("CHATKIT_DB", "chatkit.db")
        return SQLiteStore(db, tenant=user_id), InMemoryBuckets()
    from chatkit_asgi.ratelimit_mongodb import MongoBuckets
    from chatkit_asgi.stores.mongodb import MongoStore

    store: MongoStore[Any] = MongoStore.from_uri(uri, tenant=user_id)
    return store, MongoBuckets(store.database)


configure_logging()
store, buckets = stores()
telemetry = telemetry_options()
chatkit = ChatKitApp(
    respond,
    store=store,
    context=user_context,
    # 20 turns a minute per user, 5 at once; reading threads is free.
    admission=TokenBucketLimiter(
        float(os.environ.get("CHATKIT_TURNS_PER_MINUTE", "20")),
        per=60,
        burst=float(os.environ.get("CHATKIT_TURN_BURST", "5")),
        tenant=user_id,
        backend=buckets,
    ),
    tenant=user_id,  # hashed into logs and spans
    health=True,  # GET /chatkit/healthz for the load balancer
    **telemetry,
)

app = FastAPI(lifespan=chatkit.lifespan)
app.mount("/chatkit", chatkit)
app.add_middleware(
    CORSMiddleware,
    allow_origins=[os.environ.get("CHATKIT_ALLOWED_ORIGIN", "http://localhost:5173")],
    allow_methods=["GET", "POST"],
    allow_headers=["authorization", "content-type"],
    expose_headers=[RUN_ID_HEADER],  # lets the page read the run id of each reply
)

try:  # The HTTP server span (and trace context from incoming headers): OpenTelemetry's own.
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
except ImportError:  # pragma: no cover - opentelemetry-instrumentation-asgi not installed
    pass
else:
    app.add_middleware(
        OpenTelemetryMiddleware,
        tracer_provider=telemetry.get("tracer_provider"),
        meter_provider=telemetry.get("meter_provider"),
    )
