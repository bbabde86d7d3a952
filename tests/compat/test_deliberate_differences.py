"""Where we deliberately differ from the reference, and what we do instead.

Each test states our behaviour and, beside it, what openai-chatkit 1.6.5 does in
the same situation, so a change on either side shows up here.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import MemoryStore
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import ThreadStreamEvent

from ._pair import Both, Pair, assistant_reply
from ._reference import ChatKitServer, NotFoundError, RefSide, StreamingResult
from ._script import ID_RE
from ._steps import (
    added,
    assistant,
    client_tool_call,
    done,
    hidden,
    replaced,
    sdk_hidden,
    structured_input,
    user_input,
    widget,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Direct usage of named widget classes:DeprecationWarning"
)

ACTION = {"type": "go", "payload": None}


def assert_our_error(both: Both, status: int, code: str) -> None:
    """Ours refused before any response byte: a JSON error, no stream."""
    assert both.ours.status == status, both.ours.body
    assert both.ours.kind == "error"
    assert both.ours.content_type.startswith("application/json")
    assert both.ours.body["error"]["code"] == code
    assert both.ours.body["error"]["message"]
    assert both.ours.calls == [], "the responder must not run for a refused request"


def assert_reference_cut_stream(both: Both, error: type[Exception]) -> None:
    """The reference had already answered 200 with SSE headers, then raised."""
    assert both.ref.kind == "stream"
    assert isinstance(both.ref.error, error), both.ref.error


def assert_reference_500(both: Both, error: type[Exception]) -> None:
    assert both.ref.kind == "raised" and both.ref.status == 500
    assert isinstance(both.ref.error, error), both.ref.error


# -- not found -----------------------------------------------------------------------


STREAMING_ON_A_THREAD = [
    ("threads.add_user_message", {"input": user_input("hi")}),
    ("threads.add_client_tool_output", {"result": {}}),
    ("threads.add_structured_input", {"item_id": "msg_x", "input": {"answers": {}}}),
    ("threads.retry_after_item", {"item_id": "msg_x"}),
    ("threads.custom_action", {"action": ACTION}),
]


@pytest.mark.parametrize(
    ("request_type", "params"), STREAMING_ON_A_THREAD, ids=[t for t, _ in STREAMING_ON_A_THREAD]
)
async def test_unknown_thread_is_a_404_before_any_stream(
    pair: Pair, request_type: str, params: dict[str, Any]
) -> None:
    both = await pair.request(request_type, thread_id="thr_missing", **params)

    assert_our_error(both, 404, "thread_not_found")
    assert_reference_cut_stream(both, NotFoundError)
    assert both.ref.frames == []


NON_STREAMING_ON_A_THREAD = [
    ("threads.get_by_id", {}),
    ("threads.update", {"title": "x"}),
    ("threads.delete", {}),
    ("items.list", {}),
    ("threads.sync_custom_action", {"action": ACTION}),
]


@pytest.mark.parametrize(
    ("request_type", "params"),
    NON_STREAMING_ON_A_THREAD,
    ids=[t for t, _ in NON_STREAMING_ON_A_THREAD],
)
async def test_unknown_thread_is_a_404_json_error(
    pair: Pair, request_type: str, params: dict[str, Any]
) -> None:
    both = await pair.request(request_type, thread_id="thr_missing", **params)

    assert_our_error(both, 404, "thread_not_found")
    assert_reference_500(both, NotFoundError)


async def test_unknown_attachment_in_a_new_thread_is_a_404_and_creates_nothing(pair: Pair) -> None:
    both = await pair.request("threads.create", input=user_input("hi", attachments=["atc_nope"]))

    assert_our_error(both, 404, "attachment_not_found")
    assert (await pair.ours.request("threads.list", {})).body["data"] == []
    # The reference saved the thread and sent `thread.created` before failing.
    assert_reference_cut_stream(both, NotFoundError)
    assert [e["type"] for e in both.ref.events] == ["thread.created"]
    assert len((await pair.ref.request("threads.list", {})).body["data"]) == 1


async def test_unknown_items_are_404(pair: Pair) -> None:
    pair.script(assistant_reply("a1", "hi"))
    await pair.create_thread()

    structured = await pair.request(
        "threads.add_structured_input",
        thread_id="$id:thread",
        item_id="msg_missing",
        input={"answers": {}},
    )
    retry = await pair.request("threads.retry_after_item", thread_id="$id:thread", item_id="msg_x")
    action = await pair.request(
        "threads.custom_action", thread_id="$id:thread", item_id="msg_x", action=ACTION
    )
    sync_action = await pair.request(
        "threads.sync_custom_action", thread_id="$id:thread", item_id="msg_x", action=ACTION
    )
    listing = await pair.request("items.list", thread_id="$id:thread", after="msg_x")

    for both in (structured, retry, action, sync_action, listing):
        assert_our_error(both, 404, "item_not_found")
    assert_reference_cut_stream(structured, NotFoundError)
    assert_reference_cut_stream(action, NotFoundError)
    assert_reference_500(sync_action, NotFoundError)
    assert_reference_500(listing, NotFoundError)
    # The reference answers a retry of an unknown item with an empty 200 stream.
    assert retry.ref.kind == "stream" and retry.ref.error is None and retry.ref.frames == []


async def test_hidden_items_count_as_missing(pair: Pair) -> None:
    pair.script([done(hidden("memo")), done(assistant("a1", "hi"))])
    await pair.create_thread()

    both = await pair.request(
        "items.feedback", thread_id="$id:thread", item_ids=["$id:memo"], kind="positive"
    )

    assert_our_error(both, 404, "item_not_found")


async def test_feedback_on_unknown_items_is_a_404(pair: Pair) -> None:
    pair.script(assistant_reply("a1", "hi"))
    await pair.create_thread()

    both = await pair.request(
        "items.feedback", thread_id="$id:thread", item_ids=["$id:a1", "msg_nope"], kind="positive"
    )

    assert_our_error(both, 404, "item_not_found")
    # The reference hands any ids to its feedback hook.
    assert both.ref.body == {}
    assert both.ref.calls[0][0] == "feedback"


async def test_deleting_an_unknown_attachment_is_a_404(pair: Pair) -> None:
    both = await pair.request("attachments.delete", attachment_id="atc_nope")

    assert_our_error(both, 404, "attachment_not_found")
    # The reference deletes whatever it is asked to and answers {}.
    assert both.ref.body == {}


# -- invalid state -------------------------------------------------------------------


async def test_client_tool_output_without_a_pending_call_is_a_409(pair: Pair) -> None:
    pair.script(assistant_reply("a1", "no tools here"))
    await pair.create_thread()

    both = await pair.request(
        "threads.add_client_tool_output", thread_id="$id:thread", result={"ok": True}
    )

    assert_our_error(both, 409, "no_pending_tool_call")
    assert_reference_cut_stream(both, ValueError)


async def test_structured_input_that_is_not_pending_is_a_409(pair: Pair) -> None:
    pair.script([done(structured_input("form"))], assistant_reply("a1", "thanks"))
    await pair.create_thread()
    await pair.check(
        "threads.add_structured_input",
        thread_id="$id:thread",
        item_id="$id:form",
        input={"status": "skipped"},
    )

    both = await pair.request(
        "threads.add_structured_input",
        thread_id="$id:thread",
        item_id="$id:form",
        input={"answers": {"color": {"values": ["red"]}}},
    )

    assert_our_error(both, 409, "not_pending")
    assert_reference_cut_stream(both, ValueError)


async def test_wrong_item_types_are_400(pair: Pair) -> None:
    pair.script([done(assistant("a1", "hi")), done(widget("card"))])
    await pair.create_thread()

    structured = await pair.request(
        "threads.add_structured_input",
        thread_id="$id:thread",
        item_id="$id:a1",
        input={"answers": {}},
    )
    retry = await pair.request("threads.retry_after_item", thread_id="$id:thread", item_id="$id:a1")
    sync_action = await pair.request(
        "threads.sync_custom_action", thread_id="$id:thread", item_id="$id:a1", action=ACTION
    )

    assert_our_error(structured, 400, "invalid_item_type")
    assert_our_error(retry, 400, "invalid_item_type")
    assert_our_error(sync_action, 400, "invalid_sender")
    assert_reference_cut_stream(structured, ValueError)
    assert_reference_cut_stream(retry, ValueError)
    assert_reference_500(sync_action, ValueError)


async def test_invalid_base64_audio_is_a_400(pair: Pair) -> None:
    both = await pair.request("input.transcribe", audio_base64="e A==", mime_type="audio/ogg")

    assert_our_error(both, 400, "invalid_audio")
    # The reference decodes leniently (dropping the space) and transcribes b"x".
    assert both.ref.body == {"text": "heard 1 bytes: x"}


# -- ids and datetimes ---------------------------------------------------------------


async def test_ids_carry_96_random_bits(pair: Pair) -> None:
    pair.script([done(assistant("a1", "hi")), done(sdk_hidden("note"))])
    both = await pair.create_thread()
    attachment = await pair.check(
        "attachments.create", name="a.txt", size=1, mime_type="text/plain"
    )

    ours = pair.norm["ours"].raw_ids
    ref = pair.norm["reference"].raw_ids
    assert len(ours) == len(ref) >= 4
    assert all(re.fullmatch(r"(thr|msg|atc)_[0-9a-f]{24}", i) for i in ours), ours
    assert all(re.fullmatch(r"(thr|msg|atc)_[0-9a-f]{8}", i) for i in ref), ref
    assert [i.split("_")[0] for i in ours] == [i.split("_")[0] for i in ref]
    assert ID_RE.fullmatch(both.ours.events[0]["thread"]["id"])
    assert attachment.ours.body["id"].startswith("atc_")


async def test_datetimes_are_timezone_aware_utc(pair: Pair) -> None:
    pair.script(assistant_reply("a1", "hi"))
    await pair.create_thread()
    await pair.check("threads.get_by_id", thread_id="$id:thread")

    ours = pair.norm["ours"].timestamps
    ref = pair.norm["reference"].timestamps
    assert len(ours) == len(ref) >= 6
    assert all(ts.endswith("Z") for ts in ours), ours
    # The reference writes naive local time.
    assert all(not re.search(r"(Z|[+-]\d{2}:\d{2})$", ts) for ts in ref), ref


# -- pages that hidden items do not shorten -------------------------------------------


async def _thread_with_hidden_items(pair: Pair) -> None:
    """A user message, then 24 items of which 8 are hidden: 16 visible replies."""
    steps = []
    for n in range(24):
        if n % 3 == 1:
            steps.append(done(hidden(f"h{n}") if n % 2 else sdk_hidden(f"h{n}")))
        else:
            steps.append(done(assistant(f"a{n}", f"reply {n}")))
    pair.script(steps)
    await pair.create_thread("long")


async def test_get_by_id_fills_its_page_with_visible_items(pair: Pair) -> None:
    await _thread_with_hidden_items(pair)

    both = await pair.request("threads.get_by_id", thread_id="$id:thread")

    ours = both.ours.body["items"]
    assert len(ours["data"]) == 16 + 1
    assert ours["has_more"] is False
    assert all(i["type"] in ("user_message", "assistant_message") for i in ours["data"])
    # The reference pages first, then drops hidden items: a short page that says has_more.
    ref = both.ref.body["items"]
    assert len(ref["data"]) == 20 - 6 and ref["has_more"] is True
    assert pair.normalized(pair.ours, ours["data"][:14]) == pair.normalized(pair.ref, ref["data"])


async def test_items_list_pages_are_full_despite_hidden_items(pair: Pair) -> None:
    await _thread_with_hidden_items(pair)

    both = await pair.request("items.list", thread_id="$id:thread", limit=5, order="asc")

    assert len(both.ours.body["data"]) == 5
    assert both.ours.body["has_more"] is True
    assert both.ours.body["after"] == both.ours.body["data"][-1]["id"]
    assert len(both.ref.body["data"]) == 4  # one of its 5 was hidden


# -- responders without optional hooks -----------------------------------------------


async def _plain_respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
    return
    yield


class _PlainReference(ChatKitServer[dict[str, Any]]):
    async def respond(
        self, thread: Any, input_user_message: Any, context: dict[str, Any]
    ) -> AsyncIterator[Any]:
        return
        yield


async def test_responder_without_optional_hooks_is_not_supported() -> None:
    store = MemoryStore()
    ref_side = RefSide()
    reference = _PlainReference(ref_side.server.store)
    async with ChatKitTestClient(ChatKitApp(_plain_respond, store=store)) as client:
        created = await client.create_thread("hi")
        thread_id = created[0].thread.id  # type: ignore[union-attr]
        item_id = created[1].item.id  # type: ignore[union-attr]
        # Feedback is accepted without add_feedback, as by the reference.
        feedback_body = _body(
            "items.feedback", thread_id=thread_id, item_ids=[item_id], kind="positive"
        )
        accepted = await client.post(feedback_body)
        assert (accepted.status_code, accepted.content) == (200, b"{}")
        requests: list[tuple[str, dict[str, Any]]] = [
            (
                "input.transcribe",
                {"audio_base64": base64.b64encode(b"x").decode(), "mime_type": "audio/ogg"},
            ),
            ("threads.custom_action", {"thread_id": thread_id, "action": ACTION}),
            ("threads.sync_custom_action", {"thread_id": thread_id, "action": ACTION}),
        ]
        for request_type, params in requests:
            response = await client.post({"type": request_type, "params": params})
            assert response.status_code == 400, request_type
            error = response.json()["error"]
            assert error["code"] == "not_supported", request_type

    # The reference: feedback is silently accepted, transcribe and sync actions raise,
    # and a custom action answers 200 with an error event.
    ref_thread = await ref_side.request("threads.create", {"input": user_input("hi")})
    ref_thread_id = ref_thread.events[0]["thread"]["id"]
    feedback = await reference.process(
        _body("items.feedback", thread_id=ref_thread_id, item_ids=["msg_x"], kind="positive"), {}
    )
    assert getattr(feedback, "json", None) == b"{}"
    with pytest.raises(NotImplementedError):
        await reference.process(_body("input.transcribe", audio_base64="eA==", mime_type="a/b"), {})
    with pytest.raises(NotImplementedError):
        await reference.process(
            _body("threads.sync_custom_action", thread_id=ref_thread_id, action=ACTION), {}
        )
    action = await reference.process(
        _body("threads.custom_action", thread_id=ref_thread_id, action=ACTION), {}
    )
    assert isinstance(action, StreamingResult)
    frames = [chunk async for chunk in action]
    assert frames[-1] == b'data: {"type":"error","code":"stream.error","allow_retry":true}\n\n'


def _body(request_type: str, **params: Any) -> bytes:
    return json.dumps({"type": request_type, "params": params}).encode()


# -- hidden items in other events ------------------------------------------------------


async def test_hidden_items_are_never_streamed_even_when_added_or_replaced(pair: Pair) -> None:
    """Ours keeps hidden items out of `thread.item.added` and `thread.item.replaced` too.

    The reference swallows only `thread.item.done` of a hidden item; it forwards the
    other two, handing the UI an item type it does not know.
    """
    pair.script(
        [
            added(hidden("memo")),
            done(hidden("memo")),
            added(sdk_hidden("note")),
            replaced(sdk_hidden("note")),
            done(assistant("a1", "visible")),
        ]
    )

    both = await pair.create_thread("hi", check=False)

    assert both.ours.types() == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    assert both.ref.types()[3:] == [
        "thread.item.added",
        "thread.item.added",
        "thread.item.replaced",
        "thread.item.done",
    ]
    await pair.assert_same_store()


async def test_client_tool_output_looks_past_hidden_items(pair: Pair) -> None:
    """A hidden note stored after the pending call (say, a cancellation note) does not hide
    the call from ours; the reference only looks at the newest stored item and fails."""
    pair.script(
        [done(client_tool_call("tool")), done(sdk_hidden("note"))],
        assistant_reply("a1", "Paris it is"),
    )
    await pair.create_thread("Where am I?")

    both = await pair.request(
        "threads.add_client_tool_output", thread_id="$id:thread", result={"city": "Paris"}
    )

    assert both.ours.status == 200
    assert [e["type"] for e in both.ours.events] == ["stream_options", "thread.item.done"]
    assert_reference_cut_stream(both, ValueError)
