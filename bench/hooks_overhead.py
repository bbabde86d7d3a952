"""What the production hooks cost, per request, with each setup against `off`.

    python -m bench.hooks_overhead               # in process: 40 rounds x 25 requests
    python -m bench.hooks_overhead --server      # under uvicorn, loaded by wrk (~4 min)

Setups, each a `ChatKitApp` over a `MemoryStore` (the worst case: no I/O to hide
behind) or, with `--store sqlite`, the default `SQLiteStore` in a temporary directory:

- `off`: no admission hook, no telemetry, the `chatkit_asgi` logger at WARNING
  (the defaults). Run twice (`off` and `off-again`): the difference between the
  two is the noise floor of this machine.
- `on`: a token-bucket limiter, tenant hashing, the health route and
  `telemetry=True` with no SDK configured (the OpenTelemetry API's no-op providers).
- `on-logs`: `on` with the logger at INFO: a record per request and per turn, to a
  `NullHandler`.
- `on-sdk`: `on` with the OpenTelemetry SDK's `TracerProvider` and `MeterProvider`
  configured without any exporter or reader: spans and metrics are built and
  recorded, then dropped.
- `on-sdk-lean`: `on-sdk` with `Telemetry(store_spans=False)`.

In process (the default), the apps are called directly through ASGI (scripted
`receive`/`send`, no HTTP in the way), without checkpoints or heartbeats. Workloads:
`turn` (threads.add_user_message; the responder streams an answer as `--deltas` text
deltas, 100 by default: a short LLM answer) and `get` (threads.get_by_id of a thread
of 20 items, one page; turns go to another thread, so it does not grow). Times are
CPU time of this process (`time.process_time`), so other processes disturb them less
than wall time; each round runs a small batch of every setup in a random order, so
drift hits them alike. The report gives the median time
per request and the overhead against `off`.

With `--server`, the setups run in one uvicorn process (library defaults), wrk loads
them in turn, and the server's CPU time per request is read from the server; `turn`
is then threads.create (concurrent turns on one thread would wait for each other).
On a shared 2-core VM this is noisier (about ±2 % between identical setups) but
includes what a real request also costs: HTTP parsing and the socket.

What "disabled" costs cannot be measured against a build without the hooks, so
the script also times the disabled path itself (the logger level check, the run
id and its header, the `None` checks) per request, and shows it beside the noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench import workload
from bench.run import HOST, dechunk, free_port, thread_id_of, wrk_command, wrk_summary
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


SETUPS = ["off", "off-again", "on", "on-logs", "on-sdk", "on-sdk-lean"]


def build(setup: str, deltas: int, store: str = "memory", *, defaults: bool = False) -> ChatKitApp:
    options: dict[str, Any] = {}
    if setup.startswith("on"):
        options.update(
            admission=TokenBucketLimiter(1e9, burst=1e9, tenant=lambda ctx: ctx["user"]),
            tenant=lambda ctx: ctx["user"],
            health=True,
            telemetry=True,
        )
        if setup.startswith("on-sdk"):
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.trace import TracerProvider

            from chatkit_asgi.telemetry import Telemetry

            options["telemetry"] = Telemetry(
                tracer_provider=TracerProvider(),
                meter_provider=MeterProvider(),
                store_spans=setup != "on-sdk-lean",
            )
    if not defaults:
        # No timer tasks and no backpressure: pure CPU cost per request.
        options.update(checkpoint_interval=None, heartbeat_interval=None, buffer_size=1024)
    return ChatKitApp(
        make_responder(deltas),
        store=MemoryStore() if store == "memory" else SQLiteStore(_scratch() / f"{setup}.db"),
        context=lambda request: CONTEXT,
        **options,
    )


def log_level(setup: str) -> int:
    """The library's log level in `setup`: INFO (a record per request and turn) in `on-logs`."""
    return logging.INFO if setup == "on-logs" else logging.WARNING


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


# threads.create and this many messages more make a thread of 20 items: one page of
# threads.get_by_id (the engine's default page size).
GET_THREAD_MESSAGES = 9


async def prepare(app: ChatKitApp) -> tuple[bytes, bytes]:
    """The bodies of the `turn` and `get` workloads: turns go to a thread of their
    own, so the thread `get` reads stays at 20 items however many turns run."""
    turn_thread = thread_id_of(await call(app, workload.create_body("echo")))
    get_thread = thread_id_of(await call(app, workload.create_body("echo")))
    for _ in range(GET_THREAD_MESSAGES):
        await call(app, workload.add_message_body(get_thread, "echo"))
    return workload.add_message_body(turn_thread, "echo"), workload.get_by_id_body(get_thread)


async def timed(app: ChatKitApp, body: bytes, requests: int) -> float:
    """CPU seconds per request over `requests` calls."""
    start = time.process_time()
    for _ in range(requests):
        await call(app, body)
    return (time.process_time() - start) / requests


def _report(
    setups: list[str], results: dict[str, dict[str, list[float]]], store: str
) -> dict[str, Any]:
    """Median seconds per request of each setup and workload, and overheads against `off`."""
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
    return report


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
    setups = SETUPS
    apps = {setup: build(setup, deltas, store) for setup in setups}
    bodies = {setup: await prepare(app) for setup, app in apps.items()}
    results: dict[str, dict[str, list[float]]] = {s: {"turn": [], "get": []} for s in setups}
    library = logging.getLogger("chatkit_asgi")
    for setup in setups:  # warm up
        await timed(apps[setup], bodies[setup][0], 20)
        await timed(apps[setup], bodies[setup][1], 20)
    for _ in range(rounds):
        for setup in random.sample(setups, len(setups)):
            library.setLevel(log_level(setup))
            turn, get = bodies[setup]
            results[setup]["turn"].append(await timed(apps[setup], turn, requests))
            results[setup]["get"].append(await timed(apps[setup], get, requests))
    library.setLevel(logging.WARNING)
    report = _report(setups, results, store)
    median_off = {w: report["median_us"]["off"][w] / 1e6 for w in ("turn", "get")}
    disabled = disabled_path_cost()
    report["disabled_path_us"] = round(disabled * 1e6, 3)
    report["disabled_path_pct"] = {
        w: round(disabled / median_off[w] * 100, 3) for w in ("turn", "get")
    }
    return report


# -- through a real server ---------------------------------------------------------------


def serve(setups: list[str], deltas: int, store: str, port: int) -> None:
    """The child process of `--server`: every setup's app in one uvicorn process, at
    `/<setup>/` (library defaults, checkpoints and heartbeats included). One process for
    all, as in process: identical servers in separate processes differed by up to 15 %.

    `GET /__cpu` answers this process's CPU time; `GET /__level/<setup>` sets the
    library's log level for that setup (`log_level`).
    """
    import uvicorn

    library = logging.getLogger("chatkit_asgi")
    library.addHandler(logging.NullHandler())
    apps = {setup: build(setup, deltas, store, defaults=True) for setup in setups}

    async def router(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        name, _, rest = scope["path"][1:].partition("/")
        if name in apps:
            await apps[name]({**scope, "path": "/" + rest}, receive, send)
            return
        if name == "__level":
            library.setLevel(log_level(rest))
        body = repr(time.process_time()).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(router, host=HOST, port=port, log_level="warning", access_log=False)


class _Connection:
    """One keep-alive HTTP/1.1 connection to a bench server (what the UI holds open)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), 30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, path: str, body: bytes | None = None) -> bytes:
        """Send one request; the response body (de-chunked)."""
        method = "GET" if body is None else "POST"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body or b'')}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + (body or b""))
        received = b""
        while b"\r\n\r\n" not in received:
            received += self._recv()
        head_bytes, _, rest = received.partition(b"\r\n\r\n")
        lowered = head_bytes.lower()
        if b"transfer-encoding: chunked" in lowered:
            # SSE never holds a CR, so the last chunk's marker cannot occur in the data.
            while not rest.endswith(b"\r\n0\r\n\r\n") and rest != b"0\r\n\r\n":
                rest += self._recv()
            return dechunk(rest)
        length = int(lowered.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(rest) < length:
            rest += self._recv()
        return rest

    def _recv(self) -> bytes:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("the bench server closed the connection")
        return chunk

    def cpu(self) -> float:
        """The server process's CPU seconds so far."""
        return float(self.request("/__cpu"))


def main_server(rounds: int, seconds: int, deltas: int, store: str) -> dict[str, Any]:
    """The setups under uvicorn in a child process (one worker, pinned to one CPU), loaded
    by wrk (8 connections, pinned to the other CPU); the server's CPU time per request,
    read from the server before and after each run of wrk.

    The turn workload is `threads.create` here (concurrent turns on one thread would
    wait for each other); `get` is `threads.get_by_id` on a thread of 20 items.
    """
    setups = SETUPS
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[-1], cpus[0]) if len(cpus) > 1 else (cpus[0], cpus[0])
    os.sched_setaffinity(0, {client_cpu})
    port = free_port()
    command = [sys.executable, "-m", "bench.hooks_overhead", "--serve", ",".join(setups)]
    command += ["--port", str(port), "--deltas", str(deltas), "--store", store]
    process = subprocess.Popen(command, cwd=Path(__file__).parent.parent)
    try:
        os.sched_setaffinity(process.pid, {server_cpu})
        connection = _connect(port, process)
        files = {setup: _body_files(connection, setup) for setup in setups}
        results: dict[str, dict[str, list[float]]] = {s: {"turn": [], "get": []} for s in setups}
        for warming in (True,) + (False,) * rounds:
            for setup in random.sample(setups, len(setups)):
                connection.request(f"/__level/{setup}")
                for workload, body_file in files[setup].items():
                    start = connection.cpu()
                    requests = _wrk(f"http://{HOST}:{port}/{setup}/", body_file, seconds)
                    if not warming:
                        results[setup][workload].append((connection.cpu() - start) / requests)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    report = _report(setups, results, store)
    report["server"] = f"uvicorn {_version('uvicorn')}, one worker on CPU {server_cpu}, wrk"
    return report


def _body_files(connection: _Connection, setup: str) -> dict[str, Path]:
    """The bodies of the `turn` and `get` workloads, in files for wrk."""
    create = workload.create_body("echo")
    thread_id = thread_id_of(connection.request(f"/{setup}/", create))
    for _ in range(GET_THREAD_MESSAGES):
        connection.request(f"/{setup}/", workload.add_message_body(thread_id, "echo"))
    files = {"turn": _scratch() / f"{setup}-turn.json", "get": _scratch() / f"{setup}-get.json"}
    files["turn"].write_bytes(create)
    files["get"].write_bytes(workload.get_by_id_body(thread_id))
    return files


def _wrk(url: str, body_file: Path, seconds: int) -> int:
    """Requests wrk completed in `seconds` (8 connections, one thread)."""
    out = subprocess.run(
        wrk_command(url, 8, seconds),
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary = wrk_summary(out)
    if summary is None:
        raise RuntimeError(f"wrk printed no summary: {out}")
    if any(summary["errors"].values()):
        raise RuntimeError(f"wrk saw errors: {summary['errors']}")
    return int(summary["requests"])


def _connect(port: int, process: subprocess.Popen[bytes]) -> _Connection:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the bench server exited with {process.returncode}")
        try:
            return _Connection(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--deltas", type=int, default=100)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument(
        "--server", action="store_true", help="through uvicorn over HTTP, server CPU per request"
    )
    parser.add_argument("--seconds", type=int, default=2, help="per wrk run (--server)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a child of --server
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve.split(","), args.deltas, args.store, args.port)
        return
    if args.server:
        report = main_server(args.rounds, args.seconds, args.deltas, args.store)
    else:
        report = asyncio.run(main(args.rounds, args.requests, args.deltas, args.store))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    cli()
