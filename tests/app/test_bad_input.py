"""Hostile and malformed requests: always a 4xx JSON error, never a 500, never harm.

Every row of `CASES` is one request and the refusal it must get. Each row runs
against a freshly seeded store (Alice's thread with items and an attachment, Bob's
thread); the store must be unchanged afterwards. `test_the_whole_table_leaves_the_store_intact`
then runs all rows against one store in a row and compares snapshots at the end.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from chatkit_asgi import ChatKitApp, Store
from chatkit_asgi.testing import ChatKitTestClient, parse_sse
from chatkit_asgi.types import ThreadStreamEvent

from .conftest import (
    ALICE,
    ALICE_ATTACHMENT,
    ALICE_SECOND_THREAD,
    ALICE_THREAD,
    BOB,
    BOB_THREAD,
    ItemIds,
    seed,
    snapshot,
)

LIMIT = 64 * 1024
JSON = "application/json"

# -- building rows ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile request and the refusal it must get."""

    name: str
    method: str
    headers: dict[str, str]
    body: bytes
    status: int
    code: str
    path: str = "/"
    app: Literal["full", "bare"] = "full"
    """`bare`: the app whose responder is a plain function (no transcribe etc.)."""
    chunked: bool = False
    """Send the body in pieces without a Content-Length."""


def envelope(request_type: str, params: Any = None, **fields: Any) -> bytes:
    """A request body; `params` is left out when None."""
    body: dict[str, Any] = {"type": request_type, **fields}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


def text_input(text: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"content": [{"type": "input_text", "text": text}], **fields}


def post(
    name: str,
    body: bytes,
    status: int,
    code: str,
    *,
    user: str = "alice",
    headers: dict[str, str] | None = None,
    **options: Any,
) -> Case:
    """A POST with JSON content type as `user`."""
    all_headers = {"content-type": JSON, "x-user": user, **(headers or {})}
    return Case(name, "POST", all_headers, body, status, code, **options)


def bad_json(name: str, body: bytes) -> Case:
    return post(name, body, 400, "invalid_json")


def not_an_object(name: str, body: bytes) -> Case:
    return post(name, body, 400, "invalid_request")


def invalid(name: str, request_type: str, params: Any, **fields: Any) -> Case:
    return post(name, envelope(request_type, params, **fields), 400, "invalid_request")


UNKNOWN_THREAD = "thr_nope00001"  # same length as ALICE_THREAD
UNKNOWN_ITEM = "msg_nope_nothing"
UNKNOWN_ATTACHMENT = "atc_nope00001"  # same length as ALICE_ATTACHMENT
UNKNOWN_IDS = {
    "thread_not_found": UNKNOWN_THREAD,
    "item_not_found": UNKNOWN_ITEM,
    "attachment_not_found": UNKNOWN_ATTACHMENT,
}
ACTION = {"type": "vote", "payload": {"choice": "yes"}}
ANSWERS = {"status": "answered", "answers": {"q2": {"values": ["Monday"]}}}
B64 = base64.b64encode(b"RIFF....WAVE").decode()

# Requests that take an id, with "{id}" where the id goes: (name, type, params, the
# id Alice owns, the not-found code). Bob sending them with Alice's id must get
# exactly what he gets for an id that does not exist.
FOREIGN: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("get_by_id", "threads.get_by_id", {"thread_id": "{id}"}, ALICE_THREAD, "thread_not_found"),
    (
        "update",
        "threads.update",
        {"thread_id": "{id}", "title": "pwned"},
        ALICE_THREAD,
        "thread_not_found",
    ),
    ("delete", "threads.delete", {"thread_id": "{id}"}, ALICE_THREAD, "thread_not_found"),
    ("list_after", "threads.list", {"after": "{id}"}, ALICE_THREAD, "thread_not_found"),
    ("items_list", "items.list", {"thread_id": "{id}"}, ALICE_THREAD, "thread_not_found"),
    (
        "items_list_after",
        "items.list",
        {"thread_id": BOB_THREAD, "after": "{id}"},
        ItemIds.ASSISTANT,
        "item_not_found",
    ),
    (
        "feedback_thread",
        "items.feedback",
        {"thread_id": "{id}", "item_ids": [ItemIds.ASSISTANT], "kind": "negative"},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "feedback_item",
        "items.feedback",
        {"thread_id": BOB_THREAD, "item_ids": ["{id}"], "kind": "negative"},
        ItemIds.ASSISTANT,
        "item_not_found",
    ),
    (
        "add_user_message",
        "threads.add_user_message",
        {"thread_id": "{id}", "input": text_input()},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "add_user_message_attachment",
        "threads.add_user_message",
        {"thread_id": BOB_THREAD, "input": text_input(attachments=["{id}"])},
        ALICE_ATTACHMENT,
        "attachment_not_found",
    ),
    (
        "create_with_attachment",
        "threads.create",
        {"input": text_input(attachments=["{id}"])},
        ALICE_ATTACHMENT,
        "attachment_not_found",
    ),
    (
        "client_tool_output",
        "threads.add_client_tool_output",
        {"thread_id": "{id}", "result": {"ok": True}},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "structured_input_thread",
        "threads.add_structured_input",
        {"thread_id": "{id}", "item_id": ItemIds.STRUCTURED_PENDING, "input": ANSWERS},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "structured_input_item",
        "threads.add_structured_input",
        {"thread_id": BOB_THREAD, "item_id": "{id}", "input": ANSWERS},
        ItemIds.STRUCTURED_PENDING,
        "item_not_found",
    ),
    (
        "retry_thread",
        "threads.retry_after_item",
        {"thread_id": "{id}", "item_id": ItemIds.USER_MESSAGE},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "retry_item",
        "threads.retry_after_item",
        {"thread_id": BOB_THREAD, "item_id": "{id}"},
        ItemIds.USER_MESSAGE,
        "item_not_found",
    ),
    (
        "custom_action_thread",
        "threads.custom_action",
        {"thread_id": "{id}", "item_id": ItemIds.WIDGET, "action": ACTION},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "custom_action_item",
        "threads.custom_action",
        {"thread_id": BOB_THREAD, "item_id": "{id}", "action": ACTION},
        ItemIds.WIDGET,
        "item_not_found",
    ),
    (
        "sync_action_thread",
        "threads.sync_custom_action",
        {"thread_id": "{id}", "item_id": ItemIds.WIDGET, "action": ACTION},
        ALICE_THREAD,
        "thread_not_found",
    ),
    (
        "sync_action_item",
        "threads.sync_custom_action",
        {"thread_id": BOB_THREAD, "item_id": "{id}", "action": ACTION},
        ItemIds.WIDGET,
        "item_not_found",
    ),
    (
        "attachment_delete",
        "attachments.delete",
        {"attachment_id": "{id}"},
        ALICE_ATTACHMENT,
        "attachment_not_found",
    ),
]


def with_id(params: Any, ident: str) -> Any:
    """`params` with every "{id}" replaced by `ident`."""
    return json.loads(json.dumps(params).replace('"{id}"', json.dumps(ident)))


# Bodies that are fine except for their size or the way they are sent.
SMALL_REQUEST = envelope("threads.get_by_id", {"thread_id": ALICE_THREAD})
HUGE_REQUEST = envelope("threads.update", {"thread_id": ALICE_THREAD, "title": "x" * (2 * LIMIT)})
VALID_CREATE = envelope("threads.create", {"input": text_input("make a thread")})
VALID_ADD = envelope("threads.add_user_message", {"thread_id": ALICE_THREAD, "input": text_input()})

CASES: list[Case] = [
    # -- broken JSON ---------------------------------------------------------------
    bad_json("truncated", b'{"type": "threads.list", "params": {'),
    bad_json("truncated_string", b'{"type": "threads.li'),
    bad_json("trailing_garbage", b'{"type": "threads.list", "params": {}} garbage'),
    bad_json("two_documents", b'{"type":"threads.list","params":{}}{"type":"threads.list"}'),
    bad_json("empty_body", b""),
    bad_json("whitespace_only", b" \r\n\t "),
    bad_json("single_quotes", b"{'type': 'threads.list', 'params': {}}"),
    bad_json("comment", b'{"type": "threads.list", /* hi */ "params": {}}'),
    bad_json("trailing_comma", b'{"type": "threads.list", "params": {},}'),
    bad_json(
        "raw_control_character", b'{"type": "threads.get_by_id", "params": {"thread_id": "a\x01"}}'
    ),
    bad_json("nan_document", b"NaN"),
    bad_json("nan_literal", b'{"type": "threads.list", "params": {}, "metadata": {"x": NaN}}'),
    bad_json(
        "infinity_literal", b'{"type": "threads.list", "params": {}, "metadata": {"x": Infinity}}'
    ),
    bad_json("minus_infinity_limit", b'{"type": "threads.list", "params": {"limit": -Infinity}}'),
    bad_json(
        "number_overflowing_to_infinity",
        b'{"type": "threads.list", "params": {}, "metadata": {"x": 1e400}}',
    ),
    bad_json("invalid_utf8", b'{"type": "threads.get_by_id", "params": {"thread_id": "\xff\xfe"}}'),
    bad_json(
        "overlong_utf8", b'{"type": "threads.get_by_id", "params": {"thread_id": "\xc0\xaf"}}'
    ),
    bad_json("utf16_with_bom", '{"type": "threads.list", "params": {}}'.encode("utf-16")),
    bad_json("utf16le_without_bom", '{"type": "threads.list", "params": {}}'.encode("utf-16-le")),
    bad_json(
        "lone_surrogate_title",
        b'{"type": "threads.update", "params": {"thread_id": "thr_alice0001", "title": "\\ud800"}}',
    ),
    bad_json("nested_arrays_10000", b"[" * 10_000 + b"]" * 10_000),
    bad_json(
        "nested_objects_in_metadata_10000",
        b'{"type": "threads.list", "params": {}, "metadata": '
        + b'{"a":' * 10_000
        + b"1"
        + b"}" * 10_000
        + b"}",
    ),
    bad_json(
        "duplicate_keys_in_params",
        b'{"type": "threads.get_by_id", "params": {"thread_id": "thr_nope", '
        b'"thread_id": "thr_alice0001"}}',
    ),
    bad_json(
        "duplicate_type_key",
        b'{"type": "threads.get_by_id", "type": "threads.list", '
        b'"params": {"thread_id": "thr_alice0001"}}',
    ),
    # -- JSON that is not a request object -------------------------------------------
    not_an_object("null", b"null"),
    not_an_object("array", b"[]"),
    not_an_object("array_of_request", b'[{"type": "threads.list", "params": {}}]'),
    not_an_object("string", b'"threads.list"'),
    not_an_object("number", b"42"),
    not_an_object("boolean", b"true"),
    # -- the envelope ----------------------------------------------------------------
    post("missing_type", b'{"params": {}}', 400, "invalid_request"),
    post("unknown_type", envelope("threads.explode", {}), 400, "unknown_request_type"),
    post("type_wrong_case", envelope("Threads.List", {}), 400, "unknown_request_type"),
    post("type_not_a_string", b'{"type": 7, "params": {}}', 400, "unknown_request_type"),
    post("type_null", b'{"type": null, "params": {}}', 400, "unknown_request_type"),
    invalid("missing_params", "threads.list", None),
    post("params_null", b'{"type": "threads.list", "params": null}', 400, "invalid_request"),
    invalid("params_list", "threads.get_by_id", [ALICE_THREAD]),
    invalid("params_string", "threads.get_by_id", ALICE_THREAD),
    invalid("metadata_not_an_object", "threads.list", {}, metadata="hello"),
    # -- wrong types, field by field ---------------------------------------------------
    invalid("thread_id_int", "threads.get_by_id", {"thread_id": 1}),
    invalid("thread_id_list", "threads.get_by_id", {"thread_id": [ALICE_THREAD]}),
    invalid("thread_id_null", "threads.get_by_id", {"thread_id": None}),
    invalid("thread_id_missing", "threads.get_by_id", {}),
    invalid("thread_id_object_on_delete", "threads.delete", {"thread_id": {"id": ALICE_THREAD}}),
    invalid("limit_abc", "threads.list", {"limit": "abc"}),
    invalid("limit_negative", "threads.list", {"limit": -1}),
    invalid("limit_float", "threads.list", {"limit": 1.5}),
    invalid("order_sideways", "threads.list", {"order": "sideways"}),
    invalid("after_int", "threads.list", {"after": 3}),
    invalid("items_limit_abc", "items.list", {"thread_id": ALICE_THREAD, "limit": "abc"}),
    invalid("items_limit_negative", "items.list", {"thread_id": ALICE_THREAD, "limit": -5}),
    invalid("items_order_sideways", "items.list", {"thread_id": ALICE_THREAD, "order": "up"}),
    invalid("title_int", "threads.update", {"thread_id": ALICE_THREAD, "title": 5}),
    invalid("title_missing", "threads.update", {"thread_id": ALICE_THREAD}),
    invalid("create_input_missing", "threads.create", {}),
    invalid("create_input_string", "threads.create", {"input": "hello"}),
    invalid("content_not_a_list", "threads.create", {"input": {"content": "hello"}}),
    invalid(
        "content_part_unknown_type",
        "threads.create",
        {"input": {"content": [{"type": "input_video", "url": "x"}]}},
    ),
    invalid("content_part_without_text", "threads.create", {"input": {"content": [{}]}}),
    invalid("attachments_not_strings", "threads.create", {"input": text_input(attachments=[1])}),
    invalid("attachments_not_a_list", "threads.create", {"input": text_input(attachments="a")}),
    invalid("quoted_text_int", "threads.create", {"input": text_input(quoted_text=3)}),
    invalid(
        "inference_options_string", "threads.create", {"input": text_input(inference_options="x")}
    ),
    invalid(
        "add_message_input_null",
        "threads.add_user_message",
        {"thread_id": ALICE_THREAD, "input": None},
    ),
    invalid(
        "tool_output_without_result", "threads.add_client_tool_output", {"thread_id": ALICE_THREAD}
    ),
    invalid(
        "add_message_thread_id_int",
        "threads.add_user_message",
        {"thread_id": 7, "input": text_input()},
    ),
    invalid(
        "tool_output_thread_id_list",
        "threads.add_client_tool_output",
        {"thread_id": [ALICE_THREAD], "result": 1},
    ),
    invalid(
        "structured_item_id_int",
        "threads.add_structured_input",
        {"thread_id": ALICE_THREAD, "item_id": 3, "input": ANSWERS},
    ),
    invalid(
        "retry_item_id_null",
        "threads.retry_after_item",
        {"thread_id": ALICE_THREAD, "item_id": None},
    ),
    invalid(
        "action_item_id_int",
        "threads.custom_action",
        {"thread_id": ALICE_THREAD, "item_id": 1, "action": ACTION},
    ),
    invalid("items_list_without_thread", "items.list", {"limit": 5}),
    invalid(
        "item_ids_ints",
        "items.feedback",
        {"thread_id": ALICE_THREAD, "item_ids": [1, 2], "kind": "positive"},
    ),
    invalid(
        "attachment_mime_type_list",
        "attachments.create",
        {"name": "a", "size": 1, "mime_type": ["text/plain"]},
    ),
    invalid(
        "structured_status_maybe",
        "threads.add_structured_input",
        {
            "thread_id": ALICE_THREAD,
            "item_id": ItemIds.STRUCTURED_PENDING,
            "input": {"status": "maybe", "answers": {}},
        },
    ),
    invalid(
        "structured_answers_list",
        "threads.add_structured_input",
        {
            "thread_id": ALICE_THREAD,
            "item_id": ItemIds.STRUCTURED_PENDING,
            "input": {"answers": []},
        },
    ),
    invalid(
        "structured_values_string",
        "threads.add_structured_input",
        {
            "thread_id": ALICE_THREAD,
            "item_id": ItemIds.STRUCTURED_PENDING,
            "input": {"answers": {"q2": {"values": "Monday"}}},
        },
    ),
    invalid("retry_without_item", "threads.retry_after_item", {"thread_id": ALICE_THREAD}),
    invalid(
        "action_missing_type",
        "threads.custom_action",
        {"thread_id": ALICE_THREAD, "item_id": ItemIds.WIDGET, "action": {"payload": 1}},
    ),
    invalid(
        "action_not_an_object",
        "threads.custom_action",
        {"thread_id": ALICE_THREAD, "action": "vote"},
    ),
    invalid(
        "sync_action_missing_type",
        "threads.sync_custom_action",
        {"thread_id": ALICE_THREAD, "item_id": ItemIds.WIDGET, "action": {}},
    ),
    invalid(
        "item_ids_not_a_list",
        "items.feedback",
        {"thread_id": ALICE_THREAD, "item_ids": ItemIds.ASSISTANT, "kind": "positive"},
    ),
    invalid(
        "feedback_kind_meh",
        "items.feedback",
        {"thread_id": ALICE_THREAD, "item_ids": [ItemIds.ASSISTANT], "kind": "meh"},
    ),
    invalid(
        "attachment_size_string",
        "attachments.create",
        {"name": "a", "size": "big", "mime_type": "text/plain"},
    ),
    invalid(
        "attachment_size_negative",
        "attachments.create",
        {"name": "a", "size": -5, "mime_type": "text/plain"},
    ),
    invalid(
        "attachment_name_null",
        "attachments.create",
        {"name": None, "size": 1, "mime_type": "text/plain"},
    ),
    invalid("attachment_id_list", "attachments.delete", {"attachment_id": [ALICE_ATTACHMENT]}),
    invalid("audio_int", "input.transcribe", {"audio_base64": 12, "mime_type": "audio/webm"}),
    invalid("audio_without_mime_type", "input.transcribe", {"audio_base64": B64}),
    post(
        "audio_not_base64",
        envelope("input.transcribe", {"audio_base64": "not base64!!", "mime_type": "audio/webm"}),
        400,
        "invalid_audio",
    ),
    post(
        "audio_not_base64_without_transcribe",
        envelope("input.transcribe", {"audio_base64": "not base64!!", "mime_type": "audio/webm"}),
        400,
        "not_supported",
        app="bare",
    ),
    post(
        "audio_without_transcribe",
        envelope("input.transcribe", {"audio_base64": B64, "mime_type": "audio/webm"}),
        400,
        "not_supported",
        app="bare",
    ),
    # -- size ------------------------------------------------------------------------
    post("over_limit_with_content_length", HUGE_REQUEST, 413, "body_too_large"),
    post("over_limit_chunked", HUGE_REQUEST, 413, "body_too_large", chunked=True),
    post(
        "over_limit_lying_content_length",
        HUGE_REQUEST,
        413,
        "body_too_large",
        headers={"content-length": "100"},
    ),
    # -- methods ---------------------------------------------------------------------
    *(
        Case(
            f"method_{method.lower()}", method, {"x-user": "alice"}, b"", 405, "method_not_allowed"
        )
        for method in ("GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")
    ),
    Case(
        "put_with_valid_body",
        "PUT",
        {"content-type": JSON, "x-user": "alice"},
        envelope("threads.delete", {"thread_id": ALICE_THREAD}),
        405,
        "method_not_allowed",
    ),
    # -- content types ---------------------------------------------------------------
    *(
        post(
            f"content_type_{slug}",
            SMALL_REQUEST,
            415,
            "unsupported_media_type",
            headers={"content-type": value},
        )
        for slug, value in (
            ("text_plain", "text/plain"),
            ("form", "application/x-www-form-urlencoded"),
            ("multipart", "multipart/form-data; boundary=xyz"),
            ("xml", "application/xml"),
            ("text_json", "text/json"),
        )
    ),
    Case(
        "content_type_missing",
        "POST",
        {"x-user": "alice"},
        SMALL_REQUEST,
        415,
        "unsupported_media_type",
    ),
    # -- content negotiation on streaming requests -----------------------------------
    post("accept_html", VALID_CREATE, 406, "not_acceptable", headers={"accept": "text/html"}),
    post(
        "accept_xml_on_add", VALID_ADD, 406, "not_acceptable", headers={"accept": "application/xml"}
    ),
    post(
        "accept_sse_refused",
        VALID_CREATE,
        406,
        "not_acceptable",
        headers={"accept": "text/event-stream;q=0"},
    ),
    # -- unknown ids -----------------------------------------------------------------
    *(
        post(
            f"unknown_{name}",
            envelope(
                request_type,
                with_id(params, UNKNOWN_IDS[code]),
            ),
            404,
            code,
            user="bob",
        )
        for name, request_type, params, _, code in FOREIGN
    ),
    post(
        "unknown_item_after",
        envelope("items.list", {"thread_id": ALICE_THREAD, "after": UNKNOWN_ITEM}),
        404,
        "item_not_found",
    ),
    post(
        "unknown_item_feedback",
        envelope(
            "items.feedback",
            {
                "thread_id": ALICE_THREAD,
                "item_ids": [ItemIds.ASSISTANT, UNKNOWN_ITEM],
                "kind": "positive",
            },
        ),
        404,
        "item_not_found",
    ),
    post(
        "hidden_item_feedback",
        envelope(
            "items.feedback",
            {"thread_id": ALICE_THREAD, "item_ids": [ItemIds.HIDDEN], "kind": "positive"},
        ),
        404,
        "item_not_found",
    ),
    post(
        "hidden_item_retry",
        envelope(
            "threads.retry_after_item", {"thread_id": ALICE_THREAD, "item_id": ItemIds.HIDDEN}
        ),
        404,
        "item_not_found",
    ),
    post(
        "unknown_item_structured_input",
        envelope(
            "threads.add_structured_input",
            {"thread_id": ALICE_THREAD, "item_id": UNKNOWN_ITEM, "input": ANSWERS},
        ),
        404,
        "item_not_found",
    ),
    post(
        "unknown_sender_sync_action",
        envelope(
            "threads.sync_custom_action",
            {"thread_id": ALICE_THREAD, "item_id": UNKNOWN_ITEM, "action": ACTION},
        ),
        404,
        "item_not_found",
    ),
    post(
        "alice_unknown_attachment_delete",
        envelope("attachments.delete", {"attachment_id": UNKNOWN_ATTACHMENT}),
        404,
        "attachment_not_found",
    ),
    post(
        "unknown_attachment_on_create",
        envelope("threads.create", {"input": text_input(attachments=[UNKNOWN_ATTACHMENT])}),
        404,
        "attachment_not_found",
    ),
    post(
        "thread_id_60k",
        envelope("threads.get_by_id", {"thread_id": "thr_" + "a" * 60_000}),
        404,
        "thread_not_found",
    ),
    post(
        "title_60k_on_unknown_thread",
        envelope("threads.update", {"thread_id": UNKNOWN_THREAD, "title": "t" * 60_000}),
        404,
        "thread_not_found",
    ),
    post(
        "thread_id_empty", envelope("threads.get_by_id", {"thread_id": ""}), 404, "thread_not_found"
    ),
    post(
        "thread_id_with_nul",
        envelope("threads.get_by_id", {"thread_id": "thr_alice\u0000"}),
        404,
        "thread_not_found",
    ),
    post(
        "thread_id_sql_quote",
        envelope("threads.get_by_id", {"thread_id": "x' OR '1'='1"}),
        404,
        "thread_not_found",
    ),
    post(
        "thread_id_like_wildcard",
        envelope("threads.delete", {"thread_id": "thr_alice%"}),
        404,
        "thread_not_found",
    ),
    # -- ids of someone else ---------------------------------------------------------
    *(
        post(
            f"foreign_{name}", envelope(request_type, with_id(params, owned)), 404, code, user="bob"
        )
        for name, request_type, params, owned, code in FOREIGN
    ),
    # -- requests that do not fit the thread's state ---------------------------------
    post(
        "retry_assistant_message",
        envelope(
            "threads.retry_after_item", {"thread_id": ALICE_THREAD, "item_id": ItemIds.ASSISTANT}
        ),
        400,
        "invalid_item_type",
    ),
    post(
        "retry_widget",
        envelope(
            "threads.retry_after_item", {"thread_id": ALICE_THREAD, "item_id": ItemIds.WIDGET}
        ),
        400,
        "invalid_item_type",
    ),
    post(
        "structured_input_on_assistant_message",
        envelope(
            "threads.add_structured_input",
            {"thread_id": ALICE_THREAD, "item_id": ItemIds.ASSISTANT, "input": ANSWERS},
        ),
        400,
        "invalid_item_type",
    ),
    post(
        "structured_input_already_answered",
        envelope(
            "threads.add_structured_input",
            {"thread_id": ALICE_THREAD, "item_id": ItemIds.STRUCTURED_ANSWERED, "input": ANSWERS},
        ),
        409,
        "not_pending",
    ),
    post(
        "tool_output_without_pending_call",
        envelope(
            "threads.add_client_tool_output", {"thread_id": ALICE_THREAD, "result": {"events": [1]}}
        ),
        409,
        "no_pending_tool_call",
    ),
    post(
        "tool_output_on_empty_thread",
        envelope(
            "threads.add_client_tool_output", {"thread_id": ALICE_SECOND_THREAD, "result": None}
        ),
        409,
        "no_pending_tool_call",
    ),
    post(
        "sync_action_from_assistant_message",
        envelope(
            "threads.sync_custom_action",
            {"thread_id": ALICE_THREAD, "item_id": ItemIds.ASSISTANT, "action": ACTION},
        ),
        400,
        "invalid_sender",
    ),
    # -- paths -----------------------------------------------------------------------
    post("sub_path", SMALL_REQUEST, 404, "not_found", path="/threads"),
    post("deep_sub_path", SMALL_REQUEST, 404, "not_found", path="/a/b/c"),
    post("dot_dot_path", SMALL_REQUEST, 404, "not_found", path="/..%2f..%2fetc"),
    Case("get_sub_path", "GET", {"x-user": "alice"}, b"", 404, "not_found", path="/threads"),
]


def test_the_table_is_big_and_names_are_unique() -> None:
    assert len(CASES) >= 70
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


# -- running rows ---------------------------------------------------------------------


async def _chunks(body: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def send_case(client: ChatKitTestClient, case: Case) -> httpx.Response:
    content: bytes | AsyncIterator[bytes] = _chunks(case.body) if case.chunked else case.body
    with anyio.fail_after(20):  # liveness only: a hang is a failure, not a stuck suite
        return await client.http.request(
            case.method, case.path, headers=case.headers, content=content
        )


def assert_refused(case: Case, response: httpx.Response) -> None:
    """A 4xx with the stable JSON error body, and no leak of internals."""
    assert 400 <= response.status_code < 500, (case.name, response.status_code, response.text)
    assert response.headers["content-type"] == JSON
    if case.status == 405:
        assert response.headers["allow"] == "POST"
    if case.method == "HEAD":
        assert response.status_code == case.status
        assert response.content == b""  # a HEAD answer has headers only
        return
    assert (response.status_code, _code(response)) == (case.status, case.code), response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    error = body["error"]
    assert body["message"] == error["message"]  # what the ChatKit web component shows
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


def _code(response: httpx.Response) -> str | None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_request_is_refused_and_harms_nothing(
    case: Case,
    store: Store[Any],
    client: ChatKitTestClient,
    bare_client: ChatKitTestClient,
) -> None:
    before = (await snapshot(store, ALICE), await snapshot(store, BOB))

    response = await send_case(bare_client if case.app == "bare" else client, case)

    assert_refused(case, response)
    assert (await snapshot(store, ALICE), await snapshot(store, BOB)) == before


async def test_the_whole_table_leaves_the_store_intact(
    store: Store[Any], client: ChatKitTestClient, bare_client: ChatKitTestClient
) -> None:
    alice_before = await snapshot(store, ALICE)
    bob_before = await snapshot(store, BOB)

    wrong: list[tuple[str, int, str | None]] = []
    for case in CASES:
        response = await send_case(bare_client if case.app == "bare" else client, case)
        # A HEAD answer has no body to read the code from (the per-row test checks its headers).
        code = case.code if case.method == "HEAD" else _code(response)
        if (response.status_code, code) != (case.status, case.code):
            wrong.append((case.name, response.status_code, code))

    assert await snapshot(store, ALICE) == alice_before
    assert await snapshot(store, BOB) == bob_before
    # Still usable: every refusal released what it held (turn locks included).
    after = await client.post(VALID_ADD, headers={"x-user": "alice"})
    assert after.status_code == 200
    assert [event["type"] for event in parse_sse(after.content)][-1] == "thread.item.done"
    assert wrong == []


@pytest.mark.parametrize(
    ("request_type", "params", "owned"),
    [(request_type, params, owned) for _, request_type, params, owned, _ in FOREIGN],
    ids=[name for name, *_ in FOREIGN],
)
async def test_someone_elses_id_looks_exactly_like_a_missing_one(
    client: ChatKitTestClient, request_type: str, params: dict[str, Any], owned: str
) -> None:
    unknown = owned[:4] + "z" * (len(owned) - 4)
    as_bob = {"x-user": "bob"}

    foreign = await client.post(envelope(request_type, with_id(params, owned)), headers=as_bob)
    missing = await client.post(envelope(request_type, with_id(params, unknown)), headers=as_bob)

    assert foreign.status_code == missing.status_code == 404
    assert dict(foreign.headers) == dict(missing.headers)
    assert foreign.content == missing.content.replace(unknown.encode(), owned.encode())


# -- reading the body ---------------------------------------------------------------


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-user", b"alice"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


@pytest.mark.parametrize(
    ("content_length", "most_read"),
    [
        (None, LIMIT + 4096),  # chunked: read up to the limit, one chunk past at most
        (b"100", LIMIT + 4096),  # a Content-Length that lies low must not lift the limit
        (str(10 * LIMIT).encode(), 0),  # an honest Content-Length over the limit: read nothing
    ],
    ids=["chunked", "lying_content_length", "honest_content_length"],
)
async def test_an_endless_body_is_not_buffered_past_the_limit(
    app: ChatKitApp, content_length: bytes | None, most_read: int
) -> None:
    chunk = b" " * 4096
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [] if content_length is None else [(b"content-length", content_length)]
    with anyio.fail_after(10):
        await app(_scope(headers), receive, send)

    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    assert read <= most_read
    body = b"".join(message.get("body", b"") for message in sent[1:])
    assert json.loads(body)["error"]["code"] == "body_too_large"


async def test_a_body_of_exactly_the_limit_is_read(client: ChatKitTestClient) -> None:
    padding = b" " * (LIMIT - len(SMALL_REQUEST))
    body = SMALL_REQUEST[:-1] + padding + b"}"
    assert len(body) == LIMIT

    response = await client.post(body, headers={"x-user": "alice"})

    assert response.status_code == 200
    assert response.json()["id"] == ALICE_THREAD


# -- fuzzing --------------------------------------------------------------------------

REQUEST_TYPES = [
    "threads.create",
    "threads.add_user_message",
    "threads.add_client_tool_output",
    "threads.add_structured_input",
    "threads.retry_after_item",
    "threads.custom_action",
    "threads.sync_custom_action",
    "threads.get_by_id",
    "threads.list",
    "threads.update",
    "threads.delete",
    "items.list",
    "items.feedback",
    "attachments.create",
    "attachments.delete",
    "input.transcribe",
]
FIELDS = [
    "thread_id",
    "item_id",
    "item_ids",
    "input",
    "result",
    "limit",
    "order",
    "after",
    "title",
    "kind",
    "action",
    "name",
    "size",
    "mime_type",
    "attachment_id",
    "audio_base64",
]
KNOWN_IDS = [
    ALICE_THREAD,
    ALICE_SECOND_THREAD,
    BOB_THREAD,
    ALICE_ATTACHMENT,
    ItemIds.USER_MESSAGE,
    ItemIds.WIDGET,
    ItemIds.ASSISTANT,
    ItemIds.HIDDEN,
    ItemIds.STRUCTURED_PENDING,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from([*KNOWN_IDS, "asc", "desc", "positive", "input_text", "Zm9v"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "text", "content", "values", *FIELDS]) | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
ids = st.sampled_from([*KNOWN_IDS, ItemIds.STRUCTURED_ANSWERED, "thr_x", "msg_x", "atc_x", ""])
thread_ids = st.sampled_from([ALICE_THREAD] * 6 + [ALICE_SECOND_THREAD, BOB_THREAD, "thr_x"])
user_inputs = st.fixed_dictionaries(
    {
        "content": st.lists(
            st.fixed_dictionaries({"type": st.just("input_text"), "text": st.text(max_size=10)})
            | json_values,
            max_size=2,
        )
    },
    optional={
        "attachments": st.lists(ids, max_size=2),
        "quoted_text": st.text(max_size=5) | json_values,
        "inference_options": st.just({}) | json_values,
    },
)
submissions = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["answered", "skipped", "maybe"]),
        "answers": st.dictionaries(
            st.sampled_from(["q1", "q2", "q3"]),
            st.fixed_dictionaries({}, optional={"values": st.lists(st.text(max_size=4))})
            | json_values,
            max_size=3,
        ),
    },
)
# Per field: values that are often right, so fuzzing reaches past validation.
plausible: dict[str, st.SearchStrategy[Any]] = {
    "thread_id": thread_ids,
    "item_id": ids,
    "item_ids": st.lists(ids, max_size=3),
    "input": user_inputs | submissions,
    "result": json_values,
    "limit": st.integers(min_value=-2, max_value=1000),
    "order": st.sampled_from(["asc", "desc", "sideways"]),
    "after": ids,
    "title": st.text(max_size=30),
    "kind": st.sampled_from(["positive", "negative", "meh"]),
    "action": st.fixed_dictionaries(
        {"type": st.text(max_size=8)}, optional={"payload": json_values}
    ),
    "name": st.text(max_size=10),
    "size": st.integers(min_value=-1, max_value=2**40),
    "mime_type": st.sampled_from(["audio/webm", "image/png", "text/plain", ""]),
    "attachment_id": ids,
    "audio_base64": st.binary(max_size=30).map(lambda raw: base64.b64encode(raw).decode())
    | st.text(max_size=10),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "threads.create": ("input",),
    "threads.add_user_message": ("thread_id", "input"),
    "threads.add_client_tool_output": ("thread_id", "result"),
    "threads.add_structured_input": ("thread_id", "item_id", "input"),
    "threads.retry_after_item": ("thread_id", "item_id"),
    "threads.custom_action": ("thread_id", "action"),
    "threads.sync_custom_action": ("thread_id", "action"),
    "threads.get_by_id": ("thread_id",),
    "threads.list": (),
    "threads.update": ("thread_id", "title"),
    "threads.delete": ("thread_id",),
    "items.list": ("thread_id",),
    "items.feedback": ("thread_id", "item_ids", "kind"),
    "attachments.create": ("name", "size", "mime_type"),
    "attachments.delete": ("attachment_id",),
    "input.transcribe": ("audio_base64", "mime_type"),
}
assert set(REQUIRED) == set(REQUEST_TYPES)


def mostly(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Nine times in ten a plausible value, else any JSON value."""
    return st.integers(0, 9).flatmap(lambda n: json_values if n == 0 else values)


def request_of(request_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """A request of `request_type`: its fields mostly plausible, others sometimes added."""
    required = REQUIRED[request_type]
    value = dict(plausible)
    if request_type == "threads.add_structured_input":
        value["input"] = submissions
    elif "input" in required:
        value["input"] = user_inputs
    params = st.fixed_dictionaries(
        {name: mostly(value[name]) for name in required},
        optional={name: mostly(value[name]) for name in FIELDS if name not in required},
    )
    return st.fixed_dictionaries(
        {"type": st.just(request_type), "params": params},
        optional={
            "metadata": mostly(st.dictionaries(st.text(max_size=5), json_values, max_size=3))
        },
    )


requests = st.sampled_from(REQUEST_TYPES).flatmap(request_of)
_EVENTS: TypeAdapter[ThreadStreamEvent] = TypeAdapter(ThreadStreamEvent)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.integers(0, 4).flatmap(lambda n: json_values if n == 0 else requests),
    user=st.sampled_from(["alice", "alice", "alice", "bob"]),
)
async def test_arbitrary_json_never_gets_a_server_error(
    store: Store[Any], client: ChatKitTestClient, body: Any, user: str
) -> None:
    await seed(store)  # put back what earlier examples deleted or changed
    with anyio.fail_after(20):
        response = await client.post(json.dumps(body).encode(), headers={"x-user": user})

    assert response.status_code < 500, response.text
    event(f"HTTP {response.status_code} {_code(response) or ''}")
    if response.status_code == 200:
        if response.headers["content-type"].startswith("text/event-stream"):
            events = parse_sse(response.content)
            assert events
            for payload in events:
                _EVENTS.validate_python(payload)
        else:
            assert response.headers["content-type"] == JSON
            json.loads(response.content)
    else:
        assert response.headers["content-type"] == JSON
        assert isinstance(response.json()["error"]["code"], str)
