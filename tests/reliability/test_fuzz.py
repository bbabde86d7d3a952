"""Property-based fuzzing of request bodies against the ASGI app (hypothesis).

Whatever the body, the answer is a well-formed 4xx JSON error or a valid response
(a JSON document, or an SSE stream of valid events), within a bound: never a 5xx,
never a hang. A refused request changes nothing, and nothing Bob sends changes
Alice's data.

The bodies: any JSON; every field of every request type (at any depth) replaced by
a value of the wrong type or removed; containers nested up to far past the parser's
limit; strings up to past the body limit; invalid UTF-8; NaN, Infinity and numbers
too large for a double; duplicate keys. The last three are never JSON, so they are
exactly 400 `invalid_json`.

Runs in `make test` with a fixed seed (`derandomize`) and `EXAMPLES` examples per
test. For a longer, randomized run::

    CHATKIT_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/reliability/test_fuzz.py

(a failing example is printed with the seed that reproduces it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from chatkit_asgi import ChatKitApp
from chatkit_asgi.store import NotFoundError
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.stores.filesystem import FileSystemAttachmentStore
from chatkit_asgi.testing import ChatKitTestClient, parse_sse
from chatkit_asgi.types import ClientToolCallItem, ThreadStreamEvent
from tests.app.conftest import (
    ALICE,
    ALICE_ATTACHMENT,
    ALICE_SECOND_THREAD,
    ALICE_THREAD,
    BOB,
    FullResponder,
    ItemIds,
    make_app,
    seed,
    snapshot,
    tenant_of,
)

LONG_RUN = "CHATKIT_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("CHATKIT_FUZZ_EXAMPLES", "60"))
BODY_LIMIT = 64 * 1024  # make_app's max_body_size

fuzz = settings(
    max_examples=EXAMPLES,
    derandomize=not LONG_RUN,  # `make test`: the same examples every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore[Any]]:
    store: SQLiteStore[Any] = SQLiteStore(tmp_path / "chatkit.db", tenant=tenant_of)
    await seed(store)
    yield store
    await store.aclose()


@pytest.fixture
def app(store: SQLiteStore[Any], tmp_path: Path) -> ChatKitApp:
    files = FileSystemAttachmentStore(tmp_path / "attachments", tenant=tenant_of)
    return make_app(store, FullResponder(), attachment_store=files)


TOOL_CALL = "tc_alice_pending"


async def reseed(store: SQLiteStore[Any]) -> None:
    """The seeded data as new, and a pending client tool call ending Alice's second thread."""
    with contextlib.suppress(NotFoundError):
        await store.delete_thread(ALICE_SECOND_THREAD, ALICE)
    await seed(store)
    call = ClientToolCallItem(
        id=TOOL_CALL,
        thread_id=ALICE_SECOND_THREAD,
        created_at=datetime.now(timezone.utc),
        call_id="call_1",
        name="get_weather",
        arguments={"city": "Paris"},
    )
    await store.add_thread_item(ALICE_SECOND_THREAD, call, ALICE)


@pytest.fixture
async def client(app: ChatKitApp) -> AsyncIterator[ChatKitTestClient]:
    async with ChatKitTestClient(app) as client:
        yield client


Send = Callable[[bytes, str], Any]


@pytest.fixture
def send(store: SQLiteStore[Any], client: ChatKitTestClient) -> Send:
    """Sends one body as a user and checks every rule; returns the response."""

    async def send(body: bytes, user: str) -> httpx.Response:
        await reseed(store)  # put back what earlier examples changed
        alice_before = await snapshot(store, ALICE)
        bob_before = await snapshot(store, BOB)
        with anyio.fail_after(20):
            response = await client.post(body, headers={"x-user": user})
        assert_well_formed(response)
        if response.status_code >= 400 or user == "bob":
            assert await snapshot(store, ALICE) == alice_before, response.text
        if response.status_code >= 400:
            assert await snapshot(store, BOB) == bob_before, response.text
        return response

    return send


def assert_well_formed(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    content_type = response.headers["content-type"]
    if response.status_code >= 400:
        assert content_type == "application/json", response.text
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    elif content_type.startswith("text/event-stream"):
        events = parse_sse(response.content)
        assert events
        for event in events:
            _EVENTS.validate_python(event)
    else:
        assert content_type == "application/json"
        json.loads(response.content)


async def run(send: Send, body: bytes, user: str) -> httpx.Response:
    response: httpx.Response = await send(body, user)
    return response


users = st.sampled_from(["alice", "alice", "bob"])

# -- any JSON ------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
any_json = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@fuzz
@given(data=st.data())
@pytest.mark.parametrize("wrapped", [False, True])
async def test_any_json_document(send: Send, wrapped: bool, data: st.DataObject) -> None:
    """Any JSON at all, alone or as the `params` of a real request type."""
    value = data.draw(any_json)
    if wrapped:
        value = {"type": data.draw(st.sampled_from(sorted(VALID))), "params": value}
    await run(send, json.dumps(value).encode(), data.draw(users))


# -- valid requests, then broken one field at a time ----------------------------------------

TEXT = {"content": [{"type": "input_text", "text": "hi"}], "attachments": []}
ACTION = {"type": "vote", "payload": {"choice": "yes"}}
VALID: dict[str, dict[str, Any]] = {
    "threads.create": {
        "input": {
            **TEXT,
            "attachments": [ALICE_ATTACHMENT],
            "quoted_text": "quoted",
            "inference_options": {"tool_choice": {"id": "search"}, "model": "m"},
        }
    },
    "threads.add_user_message": {"thread_id": ALICE_THREAD, "input": TEXT},
    "threads.add_client_tool_output": {"thread_id": ALICE_SECOND_THREAD, "result": {"a": [1]}},
    "threads.add_structured_input": {
        "thread_id": ALICE_THREAD,
        "item_id": ItemIds.STRUCTURED_PENDING,
        "input": {"status": "answered", "answers": {"q2": {"values": ["Monday"]}}},
    },
    "threads.retry_after_item": {"thread_id": ALICE_THREAD, "item_id": ItemIds.USER_MESSAGE},
    "threads.custom_action": {
        "thread_id": ALICE_THREAD,
        "item_id": ItemIds.WIDGET,
        "action": ACTION,
    },
    "threads.sync_custom_action": {
        "thread_id": ALICE_THREAD,
        "item_id": ItemIds.WIDGET,
        "action": ACTION,
    },
    "threads.get_by_id": {"thread_id": ALICE_THREAD},
    "threads.list": {"limit": 5, "order": "asc", "after": ALICE_THREAD},
    "threads.update": {"thread_id": ALICE_THREAD, "title": "New title"},
    "threads.delete": {"thread_id": ALICE_SECOND_THREAD},
    "items.list": {"thread_id": ALICE_THREAD, "limit": 3, "order": "desc"},
    "items.feedback": {
        "thread_id": ALICE_THREAD,
        "item_ids": [ItemIds.ASSISTANT],
        "kind": "positive",
    },
    "attachments.create": {"name": "a.png", "size": 10, "mime_type": "image/png"},
    "attachments.delete": {"attachment_id": ALICE_ATTACHMENT},
    "input.transcribe": {
        "audio_base64": base64.b64encode(b"RIFF0000WAVE").decode(),
        "mime_type": "audio/wav",
    },
}


def envelope(request_type: str) -> dict[str, Any]:
    return {"type": request_type, "params": VALID[request_type], "metadata": {"source": "fuzz"}}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index path into a JSON value (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A deep copy of `value` with the element at `path` set to `new` (removed if `DROP`)."""
    copy = json.loads(json.dumps(value))
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    if new is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return copy


DROP = object()
wrong_values = (
    st.sampled_from(
        [
            DROP,
            None,
            True,
            False,
            0,
            -1,
            2**63,
            2**64 + 1,
            1.5,
            -0.0,
            1e308,
            "",
            "x",
            "1",
            [],
            [None],
            {},
            {"a": 1},
        ]
    )
    | st.text(max_size=20)
    | any_json
)


@pytest.mark.parametrize("request_type", sorted(VALID))
async def test_each_unbroken_request_is_valid(send: Send, request_type: str) -> None:
    """What the next test breaks are real requests that succeed."""
    response = await run(send, json.dumps(envelope(request_type)).encode(), "alice")
    assert response.status_code == 200, response.text


@fuzz
@given(data=st.data())
@pytest.mark.parametrize("request_type", sorted(VALID))
async def test_every_field_of_every_request_with_a_wrong_value(
    send: Send, request_type: str, data: st.DataObject
) -> None:
    """Each request type's fields, nested ones included, removed or given another type."""
    request = envelope(request_type)
    path = data.draw(st.sampled_from(paths(request)))
    body = replaced(request, path, data.draw(wrong_values))
    await run(send, json.dumps(body).encode(), data.draw(users))


# -- nesting and size ---------------------------------------------------------------------------


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@fuzz
@given(data=st.data())
async def test_deep_nesting_anywhere(send: Send, data: st.DataObject) -> None:
    """Containers nested from 1 to 100,000 deep in any free-form field."""
    depth = data.draw(st.integers(1, 30) | st.integers(150, 260) | st.integers(900, 100_000))
    kind = data.draw(st.sampled_from(["array", "object"]))
    request_type, path = data.draw(
        st.sampled_from(
            [
                ("threads.list", ("metadata", "x")),
                ("threads.add_client_tool_output", ("params", "result")),
                ("threads.custom_action", ("params", "action", "payload")),
                ("threads.add_user_message", ("params", "input", "inference_options")),
                ("threads.list", ("params",)),
            ]
        )
    )
    marker = "__NESTED__"
    body = json.dumps(replaced(envelope(request_type), path, marker)).encode()
    body = body.replace(json.dumps(marker).encode(), nested(depth, kind).encode())
    response = await run(send, body, data.draw(users))
    if len(body) > BODY_LIMIT:
        assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")
    elif depth >= 900:
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


@fuzz
@given(data=st.data())
async def test_huge_strings_in_any_string_field(send: Send, data: st.DataObject) -> None:
    """Strings from empty to past the body limit, in every string-valued field."""
    request_type = data.draw(st.sampled_from(sorted(VALID)))
    request = envelope(request_type)
    string_paths = [p for p in paths(request) if isinstance(_get(request, p), str)]
    path = data.draw(st.sampled_from(string_paths))
    size = data.draw(st.integers(0, 64) | st.integers(BODY_LIMIT - 512, BODY_LIMIT + 512))
    char = data.draw(st.sampled_from(["x", "é", "😀", "\\", '"', "\u2028", "\x00"]))
    body = json.dumps(replaced(request, path, char * size)).encode()
    response = await run(send, body, data.draw(users))
    if len(body) > BODY_LIMIT:
        assert (response.status_code, response.json()["error"]["code"]) == (413, "body_too_large")


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


# -- bodies that are not JSON ---------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
    b"\xe2\x82",
]


@fuzz
@given(data=st.data())
async def test_invalid_utf8_anywhere_is_invalid_json(send: Send, data: st.DataObject) -> None:
    body = json.dumps(envelope(data.draw(st.sampled_from(sorted(VALID))))).encode()
    at = data.draw(st.integers(0, len(body)))
    bad = data.draw(st.sampled_from(INVALID_UTF8))
    response = await run(send, body[:at] + bad + body[at:], data.draw(users))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


NOT_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5e999"]


@fuzz
@given(data=st.data())
async def test_nan_and_infinity_anywhere_are_invalid_json(send: Send, data: st.DataObject) -> None:
    request = envelope(data.draw(st.sampled_from(sorted(VALID))))
    path = data.draw(st.sampled_from(paths(request)))
    marker = "__NOT_A_NUMBER__"
    body = json.dumps(replaced(request, path, marker)).encode()
    body = body.replace(
        json.dumps(marker).encode(), data.draw(st.sampled_from(NOT_NUMBERS)).encode()
    )
    response = await run(send, body, data.draw(users))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


@fuzz
@given(data=st.data())
async def test_duplicate_keys_anywhere_are_invalid_json(send: Send, data: st.DataObject) -> None:
    request = envelope(data.draw(st.sampled_from(sorted(VALID))))
    objects = [()] + [
        p for p in paths(request) if isinstance(_get(request, p), dict) and _get(request, p)
    ]
    path = data.draw(st.sampled_from(objects))
    target = _get(request, path)
    key = data.draw(st.sampled_from(sorted(target)))
    duplicate = data.draw(st.just(target[key]) | any_json)
    # Written by hand: the second copy of `key` goes first or last in the object.
    members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in target.items()]
    extra = f"{json.dumps(key)}:{json.dumps(duplicate)}"
    members = [extra, *members] if data.draw(st.booleans()) else [*members, extra]
    marker = "__DUPLICATED__"
    body = json.dumps(replaced(request, path, marker) if path else marker).encode()
    body = body.replace(json.dumps(marker).encode(), ("{" + ",".join(members) + "}").encode())
    response = await run(send, body, data.draw(users))
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


@fuzz
@given(data=st.data())
async def test_arbitrary_bytes(send: Send, data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=200))
    await run(send, body, data.draw(users))
