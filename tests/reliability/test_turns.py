"""One reply at a time per thread: in one process, and across workers sharing a database
(MongoDB, SQLite, SQLAlchemy on SQLite and on PostgreSQL).

Double submits, two browser tabs or two app workers may start replies on the same
thread at once. The second one waits for the first (up to `turn_wait`) and then
runs, or is refused with 409 `thread_busy` having stored nothing. Either way the
thread's items never interleave: every user message is directly followed by its
own answer.

(tests/streaming/test_uvicorn.py shows the basic wait and the 409 under uvicorn;
tests/mongodb/test_leases.py the lease itself.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatkit_asgi import ChatKitApp, CustomStreamError, Store, Turn
from chatkit_asgi.stores import MemoryStore, SQLiteStore
from chatkit_asgi.testing import ChatKitTestClient, ProtocolHTTPError, user_input
from chatkit_asgi.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    Card,
    ClientToolCallItem,
    InferenceOptions,
    StructuredInputFreeform,
    StructuredInputItem,
    Text,
    ThreadItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
)
from tests._postgres_server import new_schema, schema_store

from ..streaming._support import ScriptedClient, http_scope, request_body
from ._apps import by_user, user_context, words
from .conftest import ALICE, PATIENCE, UvicornProcess, all_items, snapshot, unique_database

# -- in one process --------------------------------------------------------------------------


class Serial:
    """Streams "reply to <text>" in a few deltas with pauses; records overlapping runs.

    "hold" waits at `gate` after its first delta; "boom" fails after its first delta.
    """

    def __init__(self) -> None:
        self.running = 0
        self.overlaps = 0
        self.log: list[str] = []
        self.holding = anyio.Event()
        self.gate = anyio.Event()

    async def _reply(self, turn: Turn[Any], text: str) -> AsyncIterator[ThreadStreamEvent]:
        self.running += 1
        self.overlaps += self.running > 1
        self.log.append(f"start {text}")
        try:
            item = AssistantMessageItem(
                id=turn.new_id("message"),
                thread_id=turn.thread.id,
                created_at=turn.now(),
                content=[AssistantMessageContent(text="")],
            )
            yield ThreadItemAddedEvent(item=item)
            answer = f"reply to {text}"
            for index, word in enumerate(answer.split(" ")):
                delta = word if index == 0 else f" {word}"
                yield ThreadItemUpdatedEvent(
                    item_id=item.id,
                    update=AssistantMessageContentPartTextDelta(content_index=0, delta=delta),
                )
                if text == "hold" and index == 0:
                    self.holding.set()
                    await self.gate.wait()
                if text == "boom":
                    raise CustomStreamError("the model failed", allow_retry=True)
                await anyio.sleep(0.01)
            item.content = [AssistantMessageContent(text=answer)]
            yield ThreadItemDoneEvent(item=item)
        finally:
            self.log.append(f"end {text}")
            self.running -= 1

    def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        return self._reply(turn, turn.input_text() or "(no input)")

    def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        return self._reply(turn, f"action {action.type}")


def texts(items: list[ThreadItem]) -> list[str]:
    """Each item as `<kind>: <text>`."""
    out = []
    for item in items:
        if isinstance(item, UserMessageItem | AssistantMessageItem):
            text = "".join(getattr(part, "text", "") for part in item.content)
            out.append(f"{'user' if isinstance(item, UserMessageItem) else 'assistant'}: {text}")
        else:
            out.append(item.type)
    return out


def assert_paired(lines: list[str], messages: list[str]) -> None:
    """Each message once, each directly followed by its answer, in some order."""
    pairs = [lines[i : i + 2] for i in range(0, len(lines), 2)]
    assert sorted(messages) == sorted(pair[0].removeprefix("user: ") for pair in pairs), lines
    for user, assistant in pairs:
        assert assistant == f"assistant: reply to {user.removeprefix('user: ')}", lines


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Store[Any]]:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        async with schema_store(url, tenant=by_user) as pg:
            yield pg
        return
    store: Store[Any] = (
        MemoryStore(tenant=by_user)
        if request.param == "memory"
        else SQLiteStore(tmp_path / "chatkit.db", tenant=by_user)
    )
    yield store
    await store.aclose()


def make_app(store: Store[Any], responder: Serial, **options: Any) -> ChatKitApp:
    options.setdefault("checkpoint_interval", 0.01)  # checkpoints would show interleaving too
    return ChatKitApp(responder, store=store, context=user_context, **options)


async def test_concurrent_messages_on_one_thread_take_turns(store: Store[Any]) -> None:
    serial = Serial()
    app = make_app(store, serial, turn_wait=PATIENCE)
    messages = [f"message {n}" for n in range(8)] + ["message 0"]  # and a double submit
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        events = await alice.create_thread("first")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                for message in messages:
                    tasks.start_soon(alice.add_message, thread_id, message)
    assert serial.overlaps == 0
    lines = texts(await all_items(store, thread_id, ALICE))
    assert lines[:2] == ["user: first", "assistant: reply to first"]
    assert_paired(lines[2:], messages)


async def test_a_client_that_leaves_while_waiting_for_its_turn_stores_nothing(
    store: Store[Any],
) -> None:
    # Its message must not be stored later, when the turn comes, with nobody to answer.
    serial = Serial()
    app = make_app(store, serial, turn_wait=PATIENCE)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        thread_id = (await alice.create_thread("first"))[0].thread.id  # type: ignore[union-attr]
        leaving = ScriptedClient(
            request_body(
                "threads.add_user_message",
                thread_id=thread_id,
                input=user_input("never answered"),
            )
        )
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(alice.add_message, thread_id, "hold")
                await serial.holding.wait()  # "hold" has the turn
                with anyio.fail_after(5):  # it ends when the client leaves, not at its turn
                    async with anyio.create_task_group() as waiting:
                        waiting.start_soon(
                            app, http_scope(x_user="alice"), leaving.receive, leaving.send
                        )
                        await anyio.sleep(0.1)  # waiting for the turn
                        leaving.disconnect()
                assert leaving.messages == []  # it left before anything was sent
                serial.gate.set()
            await alice.add_message(thread_id, "later")  # the turn is free
    lines = texts(await all_items(store, thread_id, ALICE))
    assert lines == [
        "user: first",
        "assistant: reply to first",
        "user: hold",
        "assistant: reply to hold",
        "user: later",
        "assistant: reply to later",
    ]


async def test_threads_do_not_wait_for_each_other(store: Store[Any]) -> None:
    serial = Serial()
    app = make_app(store, serial, turn_wait=0.2)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(alice.create_thread, "hold")
                await serial.holding.wait()
                # Another thread (and another user) is not held up by the held one.
                other = await alice.create_thread("meanwhile")
                assert other[-1].type == "thread.item.done"
                async with ChatKitTestClient(app, headers={"x-user": "bob"}) as bob:
                    assert (await bob.create_thread("hello"))[-1].type == "thread.item.done"
                serial.gate.set()


class Seeded:
    """A thread of Alice's with an item for every kind of turn to start from."""

    USER = "msg_seed_user"
    WIDGET = "msg_seed_widget"
    QUESTION = "msg_seed_question"
    TOOL_CALL = "tc_seed_call"

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id

    async def seed(self, store: Store[Any]) -> None:
        now = datetime.now(timezone.utc)
        thread = self.thread_id
        await store.save_thread(ThreadMetadata(id=thread, created_at=now, title="t"), ALICE)
        items: list[ThreadItem] = [
            UserMessageItem(
                id=self.USER,
                thread_id=thread,
                created_at=now,
                content=[UserMessageTextContent(text="seed")],
                inference_options=InferenceOptions(),
            ),
            WidgetItem(
                id=self.WIDGET,
                thread_id=thread,
                created_at=now,
                widget=Card(children=[Text(value="w")]),
            ),
            StructuredInputItem(
                id=self.QUESTION,
                thread_id=thread,
                created_at=now,
                inputs=[StructuredInputFreeform(id="q", question="why?")],
            ),
            ClientToolCallItem(
                id=self.TOOL_CALL,
                thread_id=thread,
                created_at=now,
                call_id="c",
                name="n",
                arguments={},
            ),
        ]
        for item in items:
            await store.add_thread_item(thread, item, ALICE)

    def request(self, request_type: str) -> dict[str, Any]:
        thread = self.thread_id
        params: dict[str, dict[str, Any]] = {
            "threads.add_user_message": {"thread_id": thread, "input": user_input("too soon")},
            "threads.retry_after_item": {"thread_id": thread, "item_id": self.USER},
            "threads.custom_action": {
                "thread_id": thread,
                "item_id": self.WIDGET,
                "action": {"type": "vote", "payload": {}},
            },
            "threads.add_client_tool_output": {"thread_id": thread, "result": {"ok": True}},
            "threads.add_structured_input": {
                "thread_id": thread,
                "item_id": self.QUESTION,
                "input": {"status": "answered", "answers": {"q": {"values": ["because"]}}},
            },
        }
        return {"type": request_type, "params": params[request_type]}


TURN_TAKERS = [
    "threads.add_user_message",
    "threads.retry_after_item",
    "threads.custom_action",
    "threads.add_client_tool_output",
    "threads.add_structured_input",
]


@pytest.mark.parametrize("request_type", TURN_TAKERS)
async def test_every_kind_of_turn_is_refused_while_another_runs(
    store: Store[Any], request_type: str
) -> None:
    serial = Serial()
    app = make_app(store, serial, turn_wait=0.2, checkpoint_interval=None)
    seeded = Seeded("thr_seeded")
    await seeded.seed(store)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(alice.add_message, seeded.thread_id, "hold")
                await serial.holding.wait()
                before = await snapshot(store, ALICE, [])
                busy = await alice.post(seeded.request(request_type))
                assert busy.status_code == 409, busy.text
                assert busy.json()["error"]["code"] == "thread_busy"
                assert busy.headers["retry-after"]
                assert await snapshot(store, ALICE, []) == before
                serial.gate.set()
    assert serial.log == ["start hold", "end hold"]


@pytest.mark.parametrize("request_type", TURN_TAKERS)
async def test_every_kind_of_turn_waits_for_the_running_one(
    store: Store[Any], request_type: str
) -> None:
    serial = Serial()
    app = make_app(store, serial, turn_wait=PATIENCE)
    seeded = Seeded("thr_seeded")
    await seeded.seed(store)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(alice.add_message, seeded.thread_id, "hold")
                await serial.holding.wait()
                second = anyio.Event()

                async def second_turn() -> None:
                    await alice.post(seeded.request(request_type))
                    second.set()

                tasks.start_soon(second_turn)
                await anyio.sleep(0.2)
                assert not second.is_set()  # still waiting for the turn
                serial.gate.set()
    assert serial.overlaps == 0
    assert serial.log[:2] == ["start hold", "end hold"]


@pytest.mark.parametrize("ending", ["error", "disconnect", "refusal"])
async def test_the_turn_is_free_again_however_the_reply_ended(
    store: Store[Any], ending: str
) -> None:
    serial = Serial()
    app = make_app(store, serial, turn_wait=0.5)
    async with ChatKitTestClient(app, headers={"x-user": "alice"}) as alice:
        events = await alice.create_thread("first")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        if ending == "error":
            failed = await alice.add_message(thread_id, "boom")
            assert failed[-1].type == "error"
        elif ending == "disconnect":
            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(alice.add_message, thread_id, "hold")
                    await serial.holding.wait()
                    tasks.cancel_scope.cancel()  # the client goes away mid-reply
        else:
            assistant = (await all_items(store, thread_id, ALICE))[-1].id
            with pytest.raises(ProtocolHTTPError) as refused:  # not a user message
                await alice.stream(
                    "threads.retry_after_item", thread_id=thread_id, item_id=assistant
                )
            assert refused.value.status == 400
        # The next turn does not wait for anything.
        with anyio.fail_after(PATIENCE):
            assert (await alice.add_message(thread_id, "next"))[-1].type == "thread.item.done"


# -- across worker processes sharing one database -------------------------------------


@pytest.fixture(params=["mongodb", "sqlite", "sqlalchemy-sqlite", "postgres"])
async def start_worker(
    request: pytest.FixtureRequest,
    uvicorn_process: Callable[..., UvicornProcess],
    tmp_path: Path,
) -> AsyncIterator[Callable[..., UvicornProcess]]:
    """Starts uvicorn processes of `tests.reliability._apps` over one shared database
    (settings as keyword arguments, e.g. `turn_wait="30"`)."""
    async with AsyncExitStack() as stack:
        if request.param == "mongodb":
            spec = f"mongodb:{request.getfixturevalue('mongo_uri')}#{unique_database()}"
        elif request.param == "sqlite":
            spec = f"sqlite:{tmp_path / 'shared.db'}"
        elif request.param == "sqlalchemy-sqlite":
            spec = f"sqlalchemy:sqlite:///{tmp_path / 'shared.db'}#"
        else:
            url: str = request.getfixturevalue("postgres_url")
            spec = f"sqlalchemy:{url}#{await stack.enter_async_context(new_schema(url))}"

        def start(**settings: str) -> UvicornProcess:
            env = {
                "CHATKIT_TEST_STORE": spec,
                "CHATKIT_TEST_PACE": "0.02",
                "CHATKIT_TEST_CHECKPOINT": "0.05",
                **{f"CHATKIT_TEST_{key.upper()}": value for key, value in settings.items()},
            }
            return uvicorn_process("tests.reliability._apps:make_app", env=env, factory=True)

        yield start


def as_alice(worker: UvicornProcess) -> ChatKitTestClient:
    """A client of `worker`, signed in as Alice."""
    return ChatKitTestClient(base_url=worker.url, headers={"x-user": "alice"})


@asynccontextmanager
async def answering(
    client: ChatKitTestClient, thread_id: str, message: str
) -> AsyncIterator[AsyncIterator[ThreadStreamEvent]]:
    """The stream of a reply to `message`, read up to its first text delta: the
    thread's turn is taken and the answer is being written."""
    async with client.open_stream(
        "threads.add_user_message", {"thread_id": thread_id, "input": user_input(message)}
    ) as running:
        async for event in running:
            if event.type == "thread.item.updated":
                break
        yield running


def answers(lines: list[str]) -> None:
    """`say <n>` messages each directly followed by their whole answer."""
    assert len(lines) % 2 == 0, lines
    for user, assistant in zip(lines[::2], lines[1::2], strict=True):
        count = int(user.removeprefix("user: say "))
        assert assistant == f"assistant: {words(count)}", lines


@pytest.mark.uvicorn
async def test_two_workers_on_one_database_take_turns(
    start_worker: Callable[..., UvicornProcess],
) -> None:
    workers = [start_worker(turn_wait="30") for _ in range(2)]
    clients = [as_alice(worker) for worker in workers]
    async with clients[0], clients[1]:
        events = await clients[0].create_thread("say 2")
        thread_id = events[0].thread.id  # type: ignore[union-attr]
        messages = [f"say {n}" for n in range(3, 11)]
        with anyio.fail_after(PATIENCE * 3):
            async with anyio.create_task_group() as tasks:
                for n, message in enumerate(messages):
                    tasks.start_soon(clients[n % 2].add_message, thread_id, message)
        items = await clients[1].list_items(thread_id, order="asc", limit=100)
    lines = texts(items.data)
    assert len(lines) == 2 * (1 + len(messages))
    answers(lines)
    assert sorted(lines[2::2]) == sorted(f"user: {m}" for m in messages)


@pytest.mark.uvicorn
async def test_a_busy_thread_is_refused_by_the_other_worker_and_nothing_is_stored(
    start_worker: Callable[..., UvicornProcess],
) -> None:
    first = start_worker()
    second = start_worker(turn_wait="0.3")
    async with as_alice(first) as one, as_alice(second) as two:
        thread_id = (await one.create_thread("say 1"))[0].thread.id  # type: ignore[union-attr]
        with anyio.fail_after(PATIENCE):
            async with answering(one, thread_id, "say 60") as running:
                with pytest.raises(ProtocolHTTPError) as busy:
                    await two.add_message(thread_id, "say 5")
                assert (busy.value.status, busy.value.code) == (409, "thread_busy")
                assert [e.type async for e in running][-1] == "thread.item.done"
        lines = texts((await two.list_items(thread_id, order="asc")).data)
    assert lines == [
        "user: say 1",
        f"assistant: {words(1)}",
        "user: say 60",
        f"assistant: {words(60)}",
    ]


@pytest.mark.uvicorn
async def test_a_killed_workers_turn_passes_to_another_after_the_lease_ttl(
    start_worker: Callable[..., UvicornProcess],
) -> None:
    settings = {"lease_ttl": "1.5", "turn_wait": "10"}
    doomed = start_worker(**settings)
    survivor = start_worker(**settings)
    async with as_alice(doomed) as one, as_alice(survivor) as two:
        thread_id = (await one.create_thread("say 1"))[0].thread.id  # type: ignore[union-attr]
        with anyio.fail_after(PATIENCE):
            async with answering(one, thread_id, "forever"):
                doomed.kill()  # holding the thread's turn
            events = await two.add_message(thread_id, "say 3")
        assert events[-1].type == "thread.item.done"
        lines = texts((await two.list_items(thread_id, order="asc")).data)
    assert lines[:3] == ["user: say 1", f"assistant: {words(1)}", "user: forever"]
    # At most the dead worker's last checkpoint of its answer, then the new turn.
    assert lines[3:-2] in ([], [lines[3]])
    assert lines[-2:] == ["user: say 3", f"assistant: {words(3)}"]
