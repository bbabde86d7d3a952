"""Soak test: many concurrent streaming conversations against a real uvicorn server.

    python -m bench.soak                                # 200 conversations for 60 s
    python -m bench.soak -n 20 -t 3 --json soak.json    # a quick look

The server (one uvicorn process, the default SQLite store in a temporary
directory) answers every message with a streamed assistant message of `--words`
text deltas, `--pace` seconds apart, like a model. Each conversation is one user
with one thread, sending a message, reading the reply and pausing, again and
again until the time is up. Conversations come in three kinds:

- normal: reads every reply as it arrives;
- slow: reads in small bites with pauses, so the server's buffers fill up and the
  reply waits for the reader (backpressure);
- disconnecting: now and then closes the connection in the middle of a reply
  (the server then cancels it, saving the partial answer).

While it runs, the server's RSS is sampled every second. At the end every
conversation's thread is read back through the API: every turn whose reply the
client received in full must be stored in full, the user message directly followed
by the whole answer. The report gives errors by kind, turns, memory over time and
the persistence check; the exit status is 1 when there were errors, when memory
grew or when a completed turn is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


# -- the server ---------------------------------------------------------------------------


def make_app() -> Any:
    """The app under soak (`uvicorn --factory bench.soak:make_app`), set up by environment."""
    import anyio
    from starlette.requests import Request

    from chatkit_asgi import ChatKitApp, Turn
    from chatkit_asgi.stores import SQLiteStore
    from chatkit_asgi.types import (
        AssistantMessageContent,
        AssistantMessageContentPartTextDelta,
        AssistantMessageItem,
        ThreadItemAddedEvent,
        ThreadItemDoneEvent,
        ThreadItemUpdatedEvent,
        ThreadStreamEvent,
    )

    words = int(os.environ.get("SOAK_WORDS", "20"))
    pace = float(os.environ.get("SOAK_PACE", "0.05"))

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        item = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="")],
        )
        yield ThreadItemAddedEvent(item=item)
        deltas = answer_deltas(turn.input_text(), words)
        for delta in deltas:
            await anyio.sleep(pace)
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=delta),
            )
        item.content = [AssistantMessageContent(text="".join(deltas))]
        yield ThreadItemDoneEvent(item=item)

    def user_context(request: Request) -> dict[str, str]:
        return {"user": request.headers.get("x-user", "anonymous")}

    return ChatKitApp(
        respond,
        store=SQLiteStore(os.environ["SOAK_DB"], tenant=lambda context: context["user"]),
        context=user_context,
    )


def answer_deltas(text: str, words: int) -> list[str]:
    """The reply to `text`: its echo, then `words` numbered words."""
    return [f"echo {text}:", *(f" w{n}" for n in range(words))]


class Server:
    """`uvicorn --factory bench.soak:make_app` in its own process."""

    def __init__(self, workdir: Path, words: int, pace: float) -> None:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://{HOST}:{self.port}"
        self.log = workdir / "server.log"
        env = {
            **os.environ,
            "SOAK_DB": str(workdir / "soak.db"),
            "SOAK_WORDS": str(words),
            "SOAK_PACE": str(pace),
        }
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "bench.soak:make_app",
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--timeout-graceful-shutdown",
                    "5",
                    "--backlog",
                    "4096",
                ],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log.read_text()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("the server did not start")

    def rss_mb(self) -> float | None:
        """The server's resident memory (Linux /proc), or None when unavailable."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self) -> int:
        """SIGTERM, as a deploy does; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return self.process.returncode


# -- the clients ----------------------------------------------------------------------------

KINDS = ("normal", "slow", "disconnecting")


@dataclass
class Conversation:
    user: str
    kind: str
    thread_id: str = ""
    completed: list[tuple[str, str]] = field(default_factory=list)
    """(user message, expected answer) of every turn received in full."""
    abandoned: int = 0
    turns_started: int = 0


@dataclass
class Report:
    conversations: int
    duration: float
    kinds: dict[str, int]
    turns_completed: int = 0
    turns_abandoned: int = 0
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    turn_seconds_p50: float = 0.0
    turn_seconds_p99: float = 0.0
    first_event_seconds_p50: float = 0.0
    first_event_seconds_p99: float = 0.0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, server RSS in MB) every second."""
    rss_growth_mb: float = 0.0
    """RSS at the end minus RSS after the warm-up (the first quarter)."""
    memory_flat: bool = True
    persisted: int = 0
    missing: list[str] = field(default_factory=list)
    server_exit_code: int | None = None
    server_log_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.errors
            and not self.missing
            and self.memory_flat
            and self.persisted == self.turns_completed
            and self.turns_completed > 0
        )


class Stats:
    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.events = 0
        self.turn_seconds: list[float] = []
        self.first_event_seconds: list[float] = []

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail[:300]}")


def _input(text: str) -> dict[str, Any]:
    return {"content": [{"type": "input_text", "text": text}], "attachments": []}


async def _turn(
    http: httpx.AsyncClient,
    conversation: Conversation,
    text: str,
    words: int,
    stats: Stats,
    rng: random.Random,
) -> None:
    if conversation.thread_id:
        body = {
            "type": "threads.add_user_message",
            "params": {"thread_id": conversation.thread_id, "input": _input(text)},
        }
    else:
        body = {"type": "threads.create", "params": {"input": _input(text)}}
    leave_after = (
        rng.randint(3, words) if conversation.kind == "disconnecting" and rng.random() < 0.5 else 0
    )
    expected = "".join(answer_deltas(text, words))
    started = time.monotonic()
    first_event: float | None = None
    events: list[dict[str, Any]] = []
    buffer = b""
    conversation.turns_started += 1
    try:
        async with http.stream(
            "POST", "/", json=body, headers={"x-user": conversation.user}
        ) as response:
            if response.status_code != 200:
                await response.aread()
                stats.error(f"http {response.status_code}", response.text)
                return
            async for chunk in response.aiter_raw(512 if conversation.kind == "slow" else None):
                if conversation.kind == "slow":
                    await asyncio.sleep(0.02)
                buffer += chunk
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    if not frame.startswith(b"data: "):
                        continue  # heartbeat
                    first_event = first_event or time.monotonic()
                    event = json.loads(frame[6:])
                    events.append(event)
                    stats.events += 1
                    if event["type"] == "thread.created":
                        conversation.thread_id = event["thread"]["id"]
                    elif event["type"] == "error":
                        stats.error("error event", json.dumps(event))
                if leave_after and len(events) >= leave_after:
                    conversation.abandoned += 1
                    return  # closes the connection mid-reply
    except httpx.HTTPError as exc:
        stats.error(type(exc).__name__, str(exc))
        return
    done = [
        e
        for e in events
        if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"
    ]
    if not done:
        stats.error("reply without an answer", json.dumps(events[-1:]))
        return
    received = done[-1]["item"]["content"][0]["text"]
    if received != expected:
        stats.error("wrong answer", received)
        return
    conversation.completed.append((text, expected))
    stats.turn_seconds.append(time.monotonic() - started)
    if first_event is not None:
        stats.first_event_seconds.append(first_event - started)


async def _converse(
    url: str, conversation: Conversation, until: float, words: int, stats: Stats, seed: int
) -> None:
    rng = random.Random(seed)
    await asyncio.sleep(rng.random())  # do not all start in the same millisecond
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        n = 0
        while time.monotonic() < until:
            await _turn(http, conversation, f"{conversation.user} turn {n}", words, stats, rng)
            n += 1
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # the user reads and types


async def _sample_memory(
    server: Server, report: Report, started: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        rss = server.rss_mb()
        if rss is not None:
            report.rss_mb.append((round(time.monotonic() - started, 1), round(rss, 1)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _read_thread(http: httpx.AsyncClient, user: str, thread_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"thread_id": thread_id, "order": "asc", "limit": 100}
        if after:
            params["after"] = after
        response = await http.post(
            "/", json={"type": "items.list", "params": params}, headers={"x-user": user}
        )
        response.raise_for_status()
        page = response.json()
        items.extend(page["data"])
        if not page["has_more"]:
            return items
        after = page["data"][-1]["id"]


def _text(item: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item.get("content", []))


async def _verify(url: str, conversations: list[Conversation], report: Report) -> None:
    """Every turn received in full is stored in full: the user message, then its answer."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for conversation in conversations:
            if not conversation.completed:
                continue
            items = await _read_thread(http, conversation.user, conversation.thread_id)
            position = {
                _text(item): index
                for index, item in enumerate(items)
                if item["type"] == "user_message"
            }
            for text, expected in conversation.completed:
                index = position.get(text)
                following = (
                    items[index + 1] if index is not None and index + 1 < len(items) else None
                )
                if (
                    following is not None
                    and following["type"] == "assistant_message"
                    and _text(following) == expected
                ):
                    report.persisted += 1
                else:
                    report.missing.append(f"{conversation.user}: {text}")


async def soak(
    conversations: int = 200,
    duration: float = 60.0,
    *,
    words: int = 20,
    pace: float = 0.05,
    slow_share: float = 0.15,
    disconnecting_share: float = 0.15,
    seed: int = 7,
) -> Report:
    """Run the soak and return its report (the server is started and stopped here)."""
    rng = random.Random(seed)
    kinds = [
        "slow"
        if roll < slow_share
        else "disconnecting"
        if roll < slow_share + disconnecting_share
        else "normal"
        for roll in (rng.random() for _ in range(conversations))
    ]
    people = [Conversation(user=f"user{n:04d}", kind=kind) for n, kind in enumerate(kinds)]
    report = Report(conversations, duration, dict(Counter(kinds)))
    stats = Stats()
    with tempfile.TemporaryDirectory(prefix="chatkit-soak-") as workdir:
        server = Server(Path(workdir), words, pace)
        try:
            started = time.monotonic()
            stop = asyncio.Event()
            sampler = asyncio.create_task(_sample_memory(server, report, started, stop))
            until = started + duration
            await asyncio.gather(
                *(
                    _converse(server.url, person, until, words, stats, seed + n)
                    for n, person in enumerate(people)
                )
            )
            await _verify(server.url, people, report)
            stop.set()
            await sampler
        finally:
            report.server_exit_code = server.stop()
            log = server.log.read_text(errors="replace")
            report.server_log_errors = [
                line for line in log.splitlines() if "ERROR" in line or "Traceback" in line
            ][:20]
    report.turns_completed = sum(len(p.completed) for p in people)
    report.turns_abandoned = sum(p.abandoned for p in people)
    report.events = stats.events
    report.errors = dict(stats.errors)
    report.error_samples = stats.error_samples
    if stats.turn_seconds:
        report.turn_seconds_p50 = round(statistics.median(stats.turn_seconds), 3)
        report.turn_seconds_p99 = round(_percentile(stats.turn_seconds, 0.99), 3)
    if stats.first_event_seconds:
        report.first_event_seconds_p50 = round(statistics.median(stats.first_event_seconds), 4)
        report.first_event_seconds_p99 = round(_percentile(stats.first_event_seconds, 0.99), 4)
    _judge_memory(report)
    return report


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _judge_memory(report: Report) -> None:
    """Flat: after the warm-up (the first quarter), RSS grows by less than 10 % (and 25 MB)."""
    samples = [rss for t, rss in report.rss_mb if t >= report.duration / 4]
    if len(samples) < 2:
        return
    warm = statistics.median(samples[: max(1, len(samples) // 4)])
    end = statistics.median(samples[-max(1, len(samples) // 4) :])
    report.rss_growth_mb = round(end - warm, 1)
    report.memory_flat = report.rss_growth_mb < max(0.10 * warm, 25.0)


def _print(report: Report) -> None:
    print(f"conversations      {report.conversations} for {report.duration:.0f} s  {report.kinds}")
    print(
        f"turns completed    {report.turns_completed}"
        f"  (abandoned by disconnecting clients: {report.turns_abandoned})"
    )
    print(f"events received    {report.events}")
    print(f"turn time          p50 {report.turn_seconds_p50} s  p99 {report.turn_seconds_p99} s")
    print(
        f"first event        p50 {report.first_event_seconds_p50} s"
        f"  p99 {report.first_event_seconds_p99} s"
    )
    print(f"errors             {report.errors or 0}")
    for sample in report.error_samples:
        print(f"    {sample}")
    rss = [value for _, value in report.rss_mb]
    if rss:
        print(
            f"server RSS         start {rss[0]} MB, max {max(rss)} MB, end {rss[-1]} MB, "
            f"growth after warm-up {report.rss_growth_mb} MB "
            f"({'flat' if report.memory_flat else 'GROWING'})"
        )
        step = max(1, len(report.rss_mb) // 12)
        print("    " + "  ".join(f"{t:.0f}s:{v:.0f}" for t, v in report.rss_mb[::step]))
    share = 100 * report.persisted / report.turns_completed if report.turns_completed else 0.0
    print(
        f"persisted          {report.persisted}/{report.turns_completed} completed turns"
        f" ({share:.1f} %)"
    )
    for missing in report.missing[:10]:
        print(f"    missing: {missing}")
    print(f"server exit code   {report.server_exit_code}")
    for line in report.server_log_errors:
        print(f"    server: {line}")
    print("OK" if report.ok else "FAILED")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--conversations", type=int, default=200)
    parser.add_argument("-t", "--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--words", type=int, default=20, help="text deltas per answer")
    parser.add_argument("--pace", type=float, default=0.05, help="seconds between deltas")
    parser.add_argument("--slow", type=float, default=0.15, help="share of slow readers")
    parser.add_argument("--disconnecting", type=float, default=0.15, help="share of leavers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = asyncio.run(
        soak(
            args.conversations,
            args.duration,
            words=args.words,
            pace=args.pace,
            slow_share=args.slow,
            disconnecting_share=args.disconnecting,
            seed=args.seed,
        )
    )
    _print(report)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
