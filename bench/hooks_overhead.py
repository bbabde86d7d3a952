"""What the production hooks (issue 10) cost: in-process ASGI calls, many iterations.

    python -m bench.hooks_overhead               # 40 rounds x 25 requests per setup and workload
    python -m bench.hooks_overhead --rounds 80 --requests 25

Setups, each a `ChatKitApp` over a `MemoryStore` (the worst case: no I/O to hide
behind) or, with `--store sqlite`, the default `SQLiteStore` in a temporary
directory, called directly through ASGI (scripted `receive`/`send`, no HTTP
client in the way):

- `off`: no admission hook, no telemetry, the `chatkit_asgi` logger at WARNING
  (the defaults). Run twice (`off` and `off-again`): the difference between the
  two is the noise floor of this machine.
- `on-noop`: `telemetry=True` with no SDK configured (the OpenTelemetry API's
  no-op providers), a token-bucket limiter, tenant hashing, health route, and
  INFO log records going to a `NullHandler`.
- `on-sdk`: the same with the OpenTelemetry SDK's `TracerProvider` and
  `MeterProvider` configured without any exporter or reader: spans and metrics
  are built and recorded, then dropped.

Workloads: `turn` (threads.add_user_message; the responder streams an answer as
`--deltas` text deltas, 100 by default: a short LLM answer) and `get`
(threads.get_by_id, non-streaming). Times are CPU time of this process
(`time.process_time`), so other processes on the machine disturb them less than
wall time; each round runs a small batch of every setup in a random order, so
drift hits them alike. The report gives the median time per request and the
overhead against `off`.

What "disabled" costs cannot be measured against a build without the hooks, so
the script also times the disabled path itself (the logger level check, the run
id and its header, the `None` checks) per request, and shows it beside the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

from chatkit_asgi import ChatKitApp, TokenBucketLimiter, Turn
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.turn import new_run_id
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)

Message = MutableMapping[str, Any]
CONTEXT = {"user": "bench"}
_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def _scratch() -> Path:
    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="chatkit-bench-"))
    return Path(_SCRATCH[0].name)


def make_responder(deltas: int) -> Callable[[Turn[Any]], AsyncIterator[ThreadStreamEvent]]:
    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        item = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="")],
        )
        yield ThreadItemAddedEvent(item=item)
        for n in range(deltas):
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=f"word{n} "),
            )
        item.content[0].text = "".join(f"word{n} " for n in range(deltas))
        yield ThreadItemDoneEvent(item=item)

    return respond


def build(setup: str, deltas: int, store: str = "memory") -> ChatKitApp:
    options: dict[str, Any] = {}
    if setup.startswith("on"):
        options.update(
            admission=TokenBucketLimiter(1e9, burst=1e9, tenant=lambda ctx: ctx["user"]),
            tenant=lambda ctx: ctx["user"],
            health=True,
        )
        if setup == "on-sdk":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.trace import TracerProvider

            options.update(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
        else:
            options.update(telemetry=True)
    return ChatKitApp(
        make_responder(deltas),
        store=MemoryStore() if store == "memory" else SQLiteStore(_scratch() / f"{setup}.db"),
        context=lambda request: CONTEXT,
        checkpoint_interval=None,  # no timer task: pure CPU cost per request
        heartbeat_interval=None,
        buffer_size=1024,
        **options,
    )


async def call(app: ChatKitApp, body: bytes) -> bytes:
    """One POST through the ASGI interface; returns the response body."""
    sent = False
    chunks: list[bytes] = []
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "root_path": "",
        "scheme": "http",
        "server": ("bench", 80),
        "headers": [(b"content-type", b"application/json"), (b"host", b"bench")],
        "query_string": b"",
    }
    await app(scope, receive, send)
    return b"".join(chunks)


async def prepare(app: ChatKitApp) -> tuple[bytes, bytes]:
    """A thread to talk in: the bodies of the `turn` and `get` workloads."""
    create = {
        "type": "threads.create",
        "params": {"input": {"content": [{"type": "input_text", "text": "hi"}]}},
    }
    first = await call(app, json.dumps(create).encode())
    thread_id = json.loads(first.split(b"\n\n")[0][6:])["thread"]["id"]
    turn = {
        "type": "threads.add_user_message",
        "params": {
            "thread_id": thread_id,
            "input": {"content": [{"type": "input_text", "text": "hello"}]},
        },
    }
    get = {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}
    return json.dumps(turn).encode(), json.dumps(get).encode()


async def timed(app: ChatKitApp, body: bytes, requests: int) -> float:
    """CPU seconds per request over `requests` calls."""
    start = time.process_time()
    for _ in range(requests):
        await call(app, body)
    return (time.process_time() - start) / requests


def disabled_path_cost(iterations: int = 200_000) -> float:
    """Seconds per request spent in what the hooks add when they are off."""
    app = build("off", 1)
    observer = app.observer
    scope: dict[str, Any] = {"type": "http", "path": "/"}
    record = None
    stats = None
    start = time.process_time()
    for _ in range(iterations):
        # app.__call__: the health check short-circuits on `self.health`.
        _ = app.health and scope["path"] == "/healthz"
        record = observer.begin(scope)  # a logger level check
        # _handle: four `record is not None` checks; engine: `admission is None` checks.
        _ = record is not None, record is not None, record is not None, record is not None
        _ = app.engine.admission is None
        # the run id (Turn's default) and its header; streaming: `stats is None` once.
        header = (b"x-chatkit-run-id", new_run_id().encode())
        _ = stats is None, header
    return (time.process_time() - start) / iterations


async def main(rounds: int, requests: int, deltas: int, store: str) -> dict[str, Any]:
    logging.getLogger("chatkit_asgi").addHandler(logging.NullHandler())
    setups = ["off", "off-again", "on-noop", "on-sdk"]
    apps = {setup: build(setup, deltas, store) for setup in setups}
    bodies = {setup: await prepare(app) for setup, app in apps.items()}
    results: dict[str, dict[str, list[float]]] = {s: {"turn": [], "get": []} for s in setups}
    library = logging.getLogger("chatkit_asgi")
    for setup in setups:  # warm up
        await timed(apps[setup], bodies[setup][0], 20)
        await timed(apps[setup], bodies[setup][1], 20)
    for _ in range(rounds):
        for setup in random.sample(setups, len(setups)):
            library.setLevel(logging.INFO if setup.startswith("on") else logging.WARNING)
            turn, get = bodies[setup]
            results[setup]["turn"].append(await timed(apps[setup], turn, requests))
            results[setup]["get"].append(await timed(apps[setup], get, requests))
    library.setLevel(logging.WARNING)
    median = {
        setup: {w: statistics.median(times) for w, times in workloads.items()}
        for setup, workloads in results.items()
    }
    report: dict[str, Any] = {"store": store, "median_us": {}, "overhead_pct": {}}
    for setup in setups:
        report["median_us"][setup] = {w: round(t * 1e6, 1) for w, t in median[setup].items()}
        report["overhead_pct"][setup] = {
            w: round((median[setup][w] / median["off"][w] - 1) * 100, 2) for w in ("turn", "get")
        }
    disabled = disabled_path_cost()
    report["disabled_path_us"] = round(disabled * 1e6, 3)
    report["disabled_path_pct"] = {
        w: round(disabled / median["off"][w] * 100, 3) for w in ("turn", "get")
    }
    return report


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--deltas", type=int, default=100)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    args = parser.parse_args()
    report = asyncio.run(main(args.rounds, args.requests, args.deltas, args.store))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli()
