"""A streaming request that failed, sent again as the ChatKit client sends it, is stored once.

The `<openai-chatkit>` web component reads replies with `@microsoft/fetch-event-source`:
on a 5xx it sends the same POST again by itself, up to 5 times; an `error` event with
`allow_retry` gives the user a button that sends the request again. Both are safe
only if

- a 5xx on a streaming request means nothing was written, and
- a request that failed at a store write is stored whole or not at all.

Every case breaks one store call, once, at one point of a streaming request before
its reply starts: the reads that validate the request (a failure there is a 503) and
the writes the request makes before the responder runs (an `error` event). A call
breaks in one of two ways: an outage (the call never reaches the store) or a lost
acknowledgement (the write landed, then the call failed, as when a connection drops
after the server committed). The client sends the request again as the web
component does, and the store must then hold exactly what one fault-free request
leaves: no duplicate thread, message or attachment binding.

Under real uvicorn, over the memory and SQLite stores. The last test drives the web
component's SSE client itself (the npm package, under node) through a 503 and its
automatic retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import TypeAdapter

from chatkit_asgi import ChatKitApp, Store, StoreUnavailableError, Turn
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.testing import parse_sse, user_input
from chatkit_asgi.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    Card,
    ClientToolCallItem,
    FileAttachment,
    InferenceOptions,
    StructuredInputFreeform,
    StructuredInputItem,
    Text,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from tests.streaming._fetch_event_source import read_stream

from ._apps import by_user, user_context
from .conftest import ALICE, FaultyStore, LiveServer, all_items

pytestmark = pytest.mark.uvicorn

ServeApp = Callable[..., LiveServer]
RETRIES = 5  # what the web component's loader allows on a streaming request
EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
THREAD = "thr_seeded"
ATTACHMENT = "atc_upload"
WRITES = frozenset(
    {
        "save_thread",
        "save_attachment",
        "add_thread_item",
        "save_item",
        "delete_thread",
        "delete_thread_item",
        "delete_thread_items_after",
    }
)

Fault = Literal["outage", "lost_ack"]


# -- a store that breaks one call, once --------------------------------------------------


class OneFault(FaultyStore):
    """A `FaultyStore` that breaks the call `index` calls after `arm`, once: as an
    outage (before the call reaches the inner store) or, for a write, as a lost
    acknowledgement (after the write landed)."""

    def __init__(self, inner: Store[Any]) -> None:
        super().__init__(inner)
        self._target: int | None = None
        self._fault: Fault = "outage"
        self._ack_to_lose = False
        self.fired = False
        self.fail_when = self._breaks

    def arm(self, index: int, fault: Fault) -> None:
        self._target = len(self.calls) + index
        self._fault = fault
        self.fired = False

    def _breaks(self, method: str) -> bool:
        if self._target is None or len(self.calls) - 1 != self._target:
            return False
        self._target = None
        self.fired = True
        if self._fault == "outage":
            return True
        self._ack_to_lose = True
        return False

    def _after_write(self, method: str) -> None:
        if self._ack_to_lose:
            self._ack_to_lose = False
            raise StoreUnavailableError(f"injected: {method} landed, its acknowledgement lost")

    async def save_thread(self, thread: ThreadMetadata, context: Any) -> None:
        await super().save_thread(thread, context)
        self._after_write("save_thread")

    async def save_attachment(self, attachment: Attachment, context: Any) -> None:
        await super().save_attachment(attachment, context)
        self._after_write("save_attachment")

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        await super().add_thread_item(thread_id, item, context)
        self._after_write("add_thread_item")

    async def save_item(self, thread_id: str, item: ThreadItem, context: Any) -> None:
        await super().save_item(thread_id, item, context)
        self._after_write("save_item")

    async def delete_thread(self, thread_id: str, context: Any) -> None:
        await super().delete_thread(thread_id, context)
        self._after_write("delete_thread")

    async def delete_thread_item(self, thread_id: str, item_id: str, context: Any) -> None:
        await super().delete_thread_item(thread_id, item_id, context)
        self._after_write("delete_thread_item")

    async def delete_thread_items_after(self, thread_id: str, item_id: str, context: Any) -> None:
        await super().delete_thread_items_after(thread_id, item_id, context)
        self._after_write("delete_thread_items_after")


# -- the responder ----------------------------------------------------------------------------


class Answerer:
    """Answers "reply to <text>" (a request without a message: "reply"; an action:
    "action <type>") in one event, and notes how many store calls came before each
    reply began."""

    def __init__(self, store: FaultyStore) -> None:
        self.store = store
        self.replies_began_at: list[int] = []

    def _answer(self, turn: Turn[Any], text: str) -> ThreadItemDoneEvent:
        self.replies_began_at.append(len(self.store.calls))
        return ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text=text)],
            )
        )

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        text = turn.input_text()
        yield self._answer(turn, f"reply to {text}" if text else "reply")

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        yield self._answer(turn, f"action {action.type}")


# -- what a store holds, without its random ids ---------------------------------------------


def _at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def _user(item_id: str, text: str, minute: int) -> UserMessageItem:
    return UserMessageItem(
        id=item_id,
        thread_id=THREAD,
        created_at=_at(minute),
        content=[UserMessageTextContent(text=text)],
        inference_options=InferenceOptions(),
    )


def _assistant(item_id: str, text: str, minute: int) -> AssistantMessageItem:
    return AssistantMessageItem(
        id=item_id,
        thread_id=THREAD,
        created_at=_at(minute),
        content=[AssistantMessageContent(text=text)],
    )


def _tool_call(item_id: str, minute: int) -> ClientToolCallItem:
    return ClientToolCallItem(
        id=item_id,
        thread_id=THREAD,
        created_at=_at(minute),
        call_id=item_id,
        name="t",
        arguments={},
    )


def _describe(item: ThreadItem) -> str:
    match item:
        case UserMessageItem():
            text = "".join(getattr(part, "text", "") for part in item.content)
            return f"user: {text} {[a.id for a in item.attachments]}"
        case AssistantMessageItem():
            return f"assistant: {''.join(part.text for part in item.content)}"
        case ClientToolCallItem():
            return f"tool call {item.call_id}: {item.status} {item.output}"
        case StructuredInputItem():
            return f"structured input: {item.status} {[q.answer for q in item.inputs]}"
        case _:
            return item.type


async def holdings(store: Store[Any]) -> list[Any]:
    """The user's threads (oldest first) with their items, and which thread the uploaded
    attachment is bound to (by position in that list): all but the random ids."""
    threads = (await store.load_threads(100, None, "asc", ALICE)).data
    out: list[Any] = []
    for thread in threads:
        items = await all_items(store, thread.id, ALICE)
        out.append((thread.title, [_describe(item) for item in items]))
    try:
        bound = (await store.load_attachment(ATTACHMENT, ALICE)).thread_id
    except Exception:
        out.append(("attachment", "missing"))
    else:
        ids = [thread.id for thread in threads]
        out.append(("attachment", ids.index(bound) if bound in ids else bound))
    return out


# -- the streaming requests, each on a store seeded for it ---------------------------------


@dataclass(frozen=True)
class Scenario:
    """One streaming request and the store it is sent to."""

    request: dict[str, Any]
    items: list[ThreadItem] = field(default_factory=list)
    """The seeded thread's items (no thread when empty)."""
    atomic: bool = True
    """A failed attempt leaves the store exactly as it was. (Otherwise it may have done
    deletions the request repeats when sent again: stale tool calls, a retried answer.)"""
    lost_acks: bool = True
    """A write whose acknowledgement is lost is taken back (see the structured input)."""


def _req(request_type: str, **params: Any) -> dict[str, Any]:
    return {"type": request_type, "params": params}


SCENARIOS = {
    "threads.create": Scenario(
        _req("threads.create", input=user_input("hello", attachments=[ATTACHMENT]))
    ),
    "threads.add_user_message": Scenario(
        _req(
            "threads.add_user_message",
            thread_id=THREAD,
            input=user_input("second", attachments=[ATTACHMENT]),
        ),
        [_user("msg_1", "first", 1), _assistant("msg_2", "reply to first", 2)],
    ),
    "threads.add_client_tool_output": Scenario(
        _req("threads.add_client_tool_output", thread_id=THREAD, result={"ok": True}),
        # An older call that never got its output, then the one being answered.
        [_user("msg_1", "first", 1), _tool_call("tc_stale", 2), _tool_call("tc_now", 3)],
        atomic=False,
    ),
    "threads.add_structured_input": Scenario(
        _req(
            "threads.add_structured_input",
            thread_id=THREAD,
            item_id="si_1",
            input={"answers": {"q1": {"values": ["yes"]}}},
        ),
        [
            _user("msg_1", "first", 1),
            StructuredInputItem(
                id="si_1",
                thread_id=THREAD,
                created_at=_at(2),
                inputs=[StructuredInputFreeform(id="q1", question="Sure?")],
            ),
        ],
        # The answered item is saved by the reply pipeline, as the reference does; if
        # that save lands but reports failure, the answer stands (sending it again is a
        # 409 `not_pending`), which duplicates nothing.
        lost_acks=False,
    ),
    "threads.retry_after_item": Scenario(
        _req("threads.retry_after_item", thread_id=THREAD, item_id="msg_3"),
        [
            _user("msg_1", "first", 1),
            _assistant("msg_2", "reply to first", 2),
            _user("msg_3", "second", 3),
            _assistant("msg_4", "a cut answer", 4),
        ],
        atomic=False,
    ),
    "threads.custom_action": Scenario(
        _req("threads.custom_action", thread_id=THREAD, item_id="wd_1", action={"type": "more"}),
        [
            _user("msg_1", "first", 1),
            WidgetItem(
                id="wd_1",
                thread_id=THREAD,
                created_at=_at(2),
                widget=Card(children=[Text(value="x")]),
            ),
        ],
    ),
}


async def seed(store: Store[Any], scenario: Scenario) -> None:
    await store.save_attachment(
        FileAttachment(id=ATTACHMENT, name="notes.txt", mime_type="text/plain"), ALICE
    )
    if scenario.items:
        await store.save_thread(ThreadMetadata(id=THREAD, created_at=_at(0)), ALICE)
        for item in scenario.items:
            await store.add_thread_item(THREAD, item, ALICE)


# -- the client -------------------------------------------------------------------------------


@dataclass
class Attempt:
    status: int
    events: list[dict[str, Any]]

    @property
    def failed_retryably(self) -> bool:
        """What makes the web component send the request again: a 5xx (its SSE client,
        by itself), or an `error` event with `allow_retry` (the user's retry button)."""
        if self.status >= 500:
            return True
        last = self.events[-1] if self.events else {}
        return last.get("type") == "error" and last.get("allow_retry") is True


async def send_as_the_client(
    http: httpx.AsyncClient,
    request: dict[str, Any],
    after_failure: Callable[[Attempt], Awaitable[None]],
) -> list[Attempt]:
    """Send a streaming request, and again after each retryable failure (at most
    `RETRIES` times); `after_failure` looks at the store after each failure."""
    attempts: list[Attempt] = []
    for _ in range(1 + RETRIES):
        response = await http.post("/", json=request, headers={"accept": "text/event-stream"})
        ok = response.status_code == 200
        attempt = Attempt(response.status_code, parse_sse(response.content) if ok else [])
        attempts.append(attempt)
        if not attempt.failed_retryably:
            break
        await after_failure(attempt)
    return attempts


# -- the tests --------------------------------------------------------------------------------


@dataclass
class Bench:
    """The app under uvicorn over a `OneFault` store whose inner store each case renews."""

    store: OneFault
    answerer: Answerer
    http: httpx.AsyncClient
    url: str
    make_inner: Callable[[], Store[Any]]

    async def fresh(self, scenario: Scenario) -> None:
        old, self.store.inner = self.store.inner, self.make_inner()
        await old.aclose()
        await seed(self.store.inner, scenario)


@pytest.fixture(params=["memory", "sqlite"])
async def bench(
    request: pytest.FixtureRequest, serve_app: ServeApp, tmp_path: Path
) -> AsyncIterator[Bench]:
    databases = iter(range(1_000_000))

    def make_inner() -> Store[Any]:
        if request.param == "memory":
            return MemoryStore(tenant=by_user)
        return SQLiteStore(tmp_path / f"case-{next(databases)}.db", tenant=by_user)

    store = OneFault(make_inner())
    answerer = Answerer(store)
    app = ChatKitApp(answerer, store=store, context=user_context, checkpoint_interval=None)
    server = serve_app(app)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-user": "alice"}, timeout=20
    ) as http:
        yield Bench(store, answerer, http, server.url + "/", make_inner)
    await store.aclose()


def _succeeded(attempt: Attempt) -> bool:
    types = [event["type"] for event in attempt.events]
    return attempt.status == 200 and "error" not in types and types[-1] == "thread.item.done"


@pytest.mark.parametrize("request_type", list(SCENARIOS))
async def test_a_failure_before_the_reply_then_the_clients_retry_stores_the_request_once(
    bench: Bench, request_type: str
) -> None:
    scenario = SCENARIOS[request_type]

    # A fault-free run: what the request stores, and the store calls before its reply.
    await bench.fresh(scenario)
    before = await holdings(bench.store.inner)
    start = len(bench.store.calls)
    bench.answerer.replies_began_at.clear()
    [clean] = await send_as_the_client(bench.http, scenario.request, _never)
    assert _succeeded(clean), clean
    expected = await holdings(bench.store.inner)
    assert expected != before
    calls = bench.store.calls[start : bench.answerer.replies_began_at[0]]
    assert calls, "no store call before the reply"

    for index, method in enumerate(calls):
        faults: list[Fault] = ["outage"]
        if method in WRITES and scenario.lost_acks:
            faults.append("lost_ack")
        for fault in faults:
            case = f"{fault} at call {index} ({method}) of {request_type}"
            await bench.fresh(scenario)
            assert await holdings(bench.store.inner) == before
            bench.store.arm(index, fault)

            async def after_failure(attempt: Attempt, case: str = case) -> None:
                after = await holdings(bench.store.inner)
                if attempt.status >= 500 or scenario.atomic:
                    assert after == before, f"{case}: a failed attempt left {after}"

            attempts = await send_as_the_client(bench.http, scenario.request, after_failure)

            assert bench.store.fired, case
            assert len(attempts) == 2 and _succeeded(attempts[1]), (case, attempts)
            first = attempts[0]
            assert first.status == 503 or [e["type"] for e in first.events][-1] == "error", case
            # Stored once: nothing duplicated, nothing left of the failed attempt.
            assert await holdings(bench.store.inner) == expected, case
            listed = await bench.http.post("/", json=_req("threads.list"))
            assert len(listed.json()["data"]) == len(expected) - 1, case


async def _never(attempt: Attempt) -> None:
    raise AssertionError(f"a fault-free request failed: {attempt}")


async def test_a_new_thread_the_outage_kept_from_being_undone_goes_before_the_retry(
    bench: Bench,
) -> None:
    """The store goes down at the first message of a new thread and stays down for the
    undo too: the thread stays, with the attachment bound to it. The client's retry,
    once the store is back, finds it gone and the attachment free to bind again."""
    scenario = SCENARIOS["threads.create"]
    await bench.fresh(scenario)
    before = await holdings(bench.store.inner)
    start = len(bench.store.calls)
    bench.answerer.replies_began_at.clear()
    await send_as_the_client(bench.http, scenario.request, _never)
    expected = await holdings(bench.store.inner)
    down_from = bench.store.calls[start:].index("add_thread_item")

    await bench.fresh(scenario)
    start = len(bench.store.calls)
    breaks = bench.store.fail_when
    bench.store.fail_when = lambda method: len(bench.store.calls) - 1 - start >= down_from
    left: list[Any] = []

    async def store_back(attempt: Attempt) -> None:
        bench.store.fail_when = breaks
        left.extend(await holdings(bench.store.inner))

    attempts = await send_as_the_client(bench.http, scenario.request, store_back)

    assert left == [(None, []), ("attachment", 0)], "the undo ran: nothing to test here"
    assert len(attempts) == 2 and _succeeded(attempts[1]), attempts
    assert await holdings(bench.store.inner) == expected != before


async def test_the_web_components_sse_client_retries_a_503_and_the_message_is_stored_once(
    bench: Bench,
) -> None:
    scenario = SCENARIOS["threads.add_user_message"]
    await bench.fresh(scenario)
    bench.store.arm(0, "outage")  # the thread cannot be loaded: a 503 before anything

    reading = await read_stream(
        bench.url, scenario.request, headers={"x-user": "alice"}, backoff_ms=20
    )

    assert reading.error is None and reading.closed
    assert [attempt.status for attempt in reading.attempts] == [503, 200]
    events = [EVENTS.validate_json(message.data) for message in reading.messages]
    assert [e.type for e in events] == ["thread.item.done", "stream_options", "thread.item.done"]
    items = await all_items(bench.store.inner, THREAD, ALICE)
    assert [_describe(item) for item in items] == [
        "user: first []",
        "assistant: reply to first",
        f"user: second {[ATTACHMENT]}",
        "assistant: reply to second",
    ]
