"""Our wire models write and accept exactly what openai-chatkit 1.6.5's do.

Every case is built twice from the same data, once through our models and once
through the reference's, and each side is serialized the way its server writes
JSON. The two documents must be equal, key order included, once datetimes are
compared as instants (ours are always aware UTC; the reference keeps what it is
given). Our output must also satisfy the JSON Schema generated from the reference
(tests/data/wire-schema.json).
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import chatkit.actions as ref_actions
import chatkit.types as ref
import chatkit.widgets as ref_widgets
import jsonschema
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import is_typeddict

import chatkit_asgi.actions as our_actions
import chatkit_asgi.types as ours
import chatkit_asgi.widgets.components as our_widgets

pytestmark = pytest.mark.filterwarnings(
    # The reference deprecates direct use of its widget classes; we build trees with them
    # only to compare against.
    "ignore:Direct usage of named widget classes is deprecated:DeprecationWarning"
)

DATA = Path(__file__).resolve().parent.parent / "data"
WIDGET_TREES: dict[str, Any] = json.loads((DATA / "widget-trees.json").read_text())
REQUESTS_KEY = "requests (validation schema of the POST body)"
RESPONSES_KEY = "responses (serialization schema; each property is one kind of response or event)"

OUR_WIRE: dict[str, Any] = {"by_alias": True, "exclude_none": True, "context": {"wire": True}}
REF_WIRE: dict[str, Any] = {
    "by_alias": True,
    "exclude_none": True,
    "context": {"exclude_metadata": True},
}

# ---------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


def normalize(value: Any) -> Any:
    """Parsed JSON with every datetime string replaced by its UTC instant.

    A naive datetime is local time (that is what both sides assume).
    """
    if isinstance(value, str) and _DATETIME.match(value):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ("instant", moment.astimezone(timezone.utc))
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize(item) for item in value]
    return value


def key_order(value: Any) -> Any:
    """The key order of every object in a parsed JSON document."""
    if isinstance(value, dict):
        return [(key, key_order(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [key_order(item) for item in value]
    return None


def assert_same_wire(our_obj: BaseModel, ref_obj: BaseModel) -> dict[str, Any]:
    """Both objects serialize to the same document; returns ours (parsed)."""
    our_doc = json.loads(our_obj.model_dump_json(**OUR_WIRE))
    ref_doc = json.loads(ref_obj.model_dump_json(**REF_WIRE))
    assert normalize(our_doc) == normalize(ref_doc)
    assert key_order(our_doc) == key_order(ref_doc)
    return our_doc  # type: ignore[no-any-return]


@cache
def adapter(tp: Any) -> TypeAdapter[Any]:
    """A cached TypeAdapter (building one compiles a schema)."""
    return TypeAdapter(tp)


@cache
def schema_validator(section: str, target: str) -> jsonschema.Draft202012Validator:
    """A validator for one property or `$defs` entry of the reference schema."""
    schema = json.loads((DATA / "wire-schema.json").read_text())[section]
    if target == "*":  # the whole section (the request body union)
        sub = schema
    elif target in schema.get("properties", {}):
        sub = {"$defs": schema["$defs"], **schema["properties"][target]}
    else:
        sub = {"$defs": schema["$defs"], "$ref": f"#/$defs/{target}"}
    return jsonschema.Draft202012Validator(sub)


def schema_errors(section: str, target: str, document: Any) -> list[str]:
    """Messages of every schema violation of `document` (empty when valid)."""
    validator = schema_validator(section, target)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# ---------------------------------------------------------------------------
# Cases: the same JSON data validated by both sides
# ---------------------------------------------------------------------------

# kind -> (our type, reference type, (schema section, schema target)); a target of
# None means "the `$defs` entry named like the validated object's class".
KINDS: dict[str, tuple[Any, Any, tuple[str, str | None]]] = {
    "request": (ours.ChatKitReq, ref.ChatKitReq, (REQUESTS_KEY, "*")),
    "event": (ours.ThreadStreamEvent, ref.ThreadStreamEvent, (RESPONSES_KEY, "stream_event")),
    "thread": (ours.Thread, ref.Thread, (RESPONSES_KEY, "thread")),
    "thread_page": (
        ours.Page[ours.ThreadMetadata],
        ref.Page[ref.ThreadMetadata],
        (RESPONSES_KEY, "thread_page"),
    ),
    "item_page": (
        ours.Page[ours.ThreadItem],
        ref.Page[ref.ThreadItem],
        (RESPONSES_KEY, "item_page"),
    ),
    "attachment": (ours.Attachment, ref.Attachment, (RESPONSES_KEY, "attachment")),
    "transcription": (
        ours.TranscriptionResult,
        ref.TranscriptionResult,
        (RESPONSES_KEY, "transcription_result"),
    ),
    "sync_response": (
        ours.SyncCustomActionResponse,
        ref.SyncCustomActionResponse,
        (RESPONSES_KEY, "sync_custom_action_response"),
    ),
    "item": (ours.ThreadItem, ref.ThreadItem, (RESPONSES_KEY, None)),
    "update": (ours.ThreadItemUpdate, ref.ThreadItemUpdate, (RESPONSES_KEY, None)),
    "status": (ours.ThreadStatus, ref.ThreadStatus, (RESPONSES_KEY, None)),
    "user_content": (ours.UserMessageContent, ref.UserMessageContent, (RESPONSES_KEY, None)),
    "assistant_content": (
        ours.AssistantMessageContent,
        ref.AssistantMessageContent,
        (RESPONSES_KEY, None),
    ),
    "annotation": (ours.Annotation, ref.Annotation, (RESPONSES_KEY, None)),
    "source": (ours.Source, ref.Source, (RESPONSES_KEY, None)),
    "task": (ours.Task, ref.Task, (RESPONSES_KEY, None)),
    "workflow": (ours.Workflow, ref.Workflow, (RESPONSES_KEY, None)),
    "widget": (ours.WidgetRoot, ref_widgets.WidgetRoot, (RESPONSES_KEY, None)),
    "component": (ours.WidgetComponent, ref_widgets.WidgetComponent, (RESPONSES_KEY, None)),
}

T0 = "2024-05-01T12:00:00Z"
T1 = "2024-05-01T12:00:05.250000Z"

ACTION = {"type": "vote", "payload": {"choice": "yes", "note": None, "nested": [1, None]}}
FULL_ACTION = {
    "type": "open",
    "payload": None,
    "handler": "client",
    "loadingBehavior": "self",
    "streaming": False,
}

URL_SOURCE = {
    "type": "url",
    "title": "ChatKit docs",
    "description": "How ChatKit works",
    "timestamp": "2024-05-01",
    "group": "Docs",
    "url": "https://example.com/docs",
    "attribution": "example.com",
}
FILE_SOURCE = {"type": "file", "title": "Report", "filename": "report.pdf"}
ENTITY_SOURCE = {
    "type": "entity",
    "title": "ACME Corp",
    "id": "cus_1",
    "icon": "profile-card",
    "label": "Customer",
    "inline_label": "ACME",
    "interactive": True,
    "data": {"tier": "gold", "seats": 12, "owner": None},
}
TASKS: dict[str, dict[str, Any]] = {
    "custom": {
        "type": "custom",
        "title": "Checking stock",
        "icon": "cube",
        "content": "3 left",
        "status_indicator": "complete",
    },
    "custom-minimal": {"type": "custom"},
    "web_search": {
        "type": "web_search",
        "title": "Searching",
        "title_query": "chatkit",
        "queries": ["chatkit", "chatkit python"],
        "sources": [URL_SOURCE],
        "status_indicator": "loading",
    },
    "thought": {"type": "thought", "title": "Thinking", "content": "Let me see..."},
    "file": {"type": "file", "title": "Reading", "sources": [FILE_SOURCE]},
    "image": {"type": "image", "title": "Looking at the picture"},
}
FILE_ATTACHMENT = {
    "type": "file",
    "id": "atc_file",
    "name": "report.pdf",
    "mime_type": "application/pdf",
    "thread_id": "thr_1",
}
IMAGE_ATTACHMENT = {
    "type": "image",
    "id": "atc_img",
    "name": "cat.png",
    "mime_type": "image/png",
    "preview_url": "https://cdn.example.com/cat.png",
    "upload_descriptor": {
        "url": "https://upload.example.com/atc_img",
        "method": "PUT",
        "headers": {"x-upload-token": "t0k"},
    },
    "metadata": {"bucket": "private", "key": "cat.png"},
}
TEXT_CONTENT = {"type": "input_text", "text": "Hello there"}
TAG_CONTENT = {
    "type": "input_tag",
    "id": "tag_1",
    "text": "@ACME",
    "data": {"customer": "cus_1", "score": None},
    "group": "Customers",
    "interactive": True,
}
ASSISTANT_CONTENT = {
    "type": "output_text",
    "text": "ACME has 3 seats left [1].",
    "annotations": [
        {"type": "annotation", "source": URL_SOURCE, "index": 24},
        {"type": "annotation", "source": FILE_SOURCE},
        {"type": "annotation", "source": ENTITY_SOURCE, "index": 0},
    ],
}


def item(kind: str, **fields: Any) -> dict[str, Any]:
    """A thread item of `kind` with the usual ids and time."""
    return {"id": f"itm_{kind}", "thread_id": "thr_1", "created_at": T0, "type": kind, **fields}


ITEMS: dict[str, dict[str, Any]] = {
    "user_message": item(
        "user_message",
        content=[TEXT_CONTENT, TAG_CONTENT],
        attachments=[FILE_ATTACHMENT, IMAGE_ATTACHMENT],
        quoted_text="the quoted bit",
        inference_options={"tool_choice": {"id": "search"}, "model": "gpt-5"},
    ),
    "user_message-minimal": item("user_message", content=[TEXT_CONTENT], inference_options={}),
    "assistant_message": item("assistant_message", content=[ASSISTANT_CONTENT]),
    "assistant_message-empty": item(
        "assistant_message", content=[{"type": "output_text", "text": ""}]
    ),
    "client_tool_call-pending": item(
        "client_tool_call", call_id="call_1", name="get_location", arguments={"precise": True}
    ),
    "client_tool_call-completed": item(
        "client_tool_call",
        status="completed",
        call_id="call_1",
        name="get_location",
        arguments={},
        output={"lat": 1.5, "lng": None},
    ),
    "widget": item("widget", widget=WIDGET_TREES["minimal-card"], copy_text="Hello"),
    "widget-kitchen-sink": item("widget", widget=WIDGET_TREES["kitchen-sink-card"]),
    "widget-dynamic": item("widget", widget=WIDGET_TREES["card-with-dynamic-children"]),
    "generated_image": item(
        "generated_image", image={"id": "img_1", "url": "https://cdn.example.com/img_1.png"}
    ),
    "generated_image-pending": item("generated_image"),
    "structured_input": item(
        "structured_input",
        status="answered",
        inputs=[
            {
                "type": "multiple_choice",
                "id": "q1",
                "question": "Which size?",
                "options": [{"value": "S"}, {"value": "M"}],
                "multiple": True,
                "answer": {"values": ["S", "M"]},
            },
            {
                "type": "freeform",
                "id": "q2",
                "question": "Anything else?",
                "description": "Optional",
                "answer": {"skipped": True},
            },
        ],
    ),
    "structured_input-pending": item(
        "structured_input",
        inputs=[{"type": "freeform", "id": "q1", "question": "Name?"}],
    ),
    "workflow-reasoning": item(
        "workflow",
        workflow={
            "type": "reasoning",
            "tasks": list(TASKS.values()),
            "summary": {"duration": 12},
            "expanded": True,
        },
    ),
    "workflow-custom": item(
        "workflow",
        workflow={
            "type": "custom",
            "tasks": [TASKS["custom"]],
            "summary": {"title": "Done", "icon": "check-circle"},
        },
    ),
    "workflow-no-summary": item("workflow", workflow={"type": "custom", "tasks": []}),
    "task": item("task", task=TASKS["web_search"]),
    "hidden_context_item": item("hidden_context_item", content={"note": "for the model"}),
    "sdk_hidden_context": item("sdk_hidden_context", content="The user cancelled."),
    "end_of_turn": item("end_of_turn"),
}

THREAD = {
    "id": "thr_1",
    "title": "Seats",
    "created_at": T0,
    "status": {"type": "active"},
    "allowed_image_domains": ["cdn.example.com"],
    "metadata": {"owner": "u_1", "flags": {"beta": True}},
    "items": {
        "data": [ITEMS["user_message"], ITEMS["assistant_message"]],
        "has_more": True,
        "after": "itm_assistant_message",
    },
}
THREAD_MINIMAL = {"id": "thr_2", "created_at": T1, "items": {"data": []}}

UPDATES: dict[str, dict[str, Any]] = {
    "content_part.added": {
        "type": "assistant_message.content_part.added",
        "content_index": 0,
        "content": {"type": "output_text", "text": ""},
    },
    "content_part.text_delta": {
        "type": "assistant_message.content_part.text_delta",
        "content_index": 0,
        "delta": "Hel",
    },
    "content_part.annotation_added": {
        "type": "assistant_message.content_part.annotation_added",
        "content_index": 0,
        "annotation_index": 1,
        "annotation": {"type": "annotation", "source": ENTITY_SOURCE, "index": 3},
    },
    "content_part.done": {
        "type": "assistant_message.content_part.done",
        "content_index": 0,
        "content": ASSISTANT_CONTENT,
    },
    "widget.streaming_text.value_delta": {
        "type": "widget.streaming_text.value_delta",
        "component_id": "txt",
        "delta": " more",
        "done": False,
    },
    "widget.component.updated": {
        "type": "widget.component.updated",
        "component_id": "txt",
        "component": {"type": "Text", "id": "txt", "value": "new", "color": None},
    },
    "widget.component.updated-dynamic": {
        "type": "widget.component.updated",
        "component_id": "car",
        "component": {"type": "Carousel", "id": "car", "items": [1, None], "loop": None},
    },
    "widget.root.updated": {
        "type": "widget.root.updated",
        "widget": WIDGET_TREES["list-view"],
    },
    "workflow.task.added": {
        "type": "workflow.task.added",
        "task_index": 0,
        "task": TASKS["thought"],
    },
    "workflow.task.updated": {
        "type": "workflow.task.updated",
        "task_index": 2,
        "task": TASKS["custom"],
    },
    "generated_image.updated": {
        "type": "generated_image.updated",
        "image": {"id": "img_1", "url": "https://cdn.example.com/partial.png"},
        "progress": 0.5,
    },
    "generated_image.updated-no-progress": {
        "type": "generated_image.updated",
        "image": {"id": "img_1", "url": "https://cdn.example.com/final.png"},
    },
}

EVENTS: dict[str, dict[str, Any]] = {
    "thread.created": {"type": "thread.created", "thread": THREAD},
    "thread.created-minimal": {"type": "thread.created", "thread": THREAD_MINIMAL},
    "thread.updated-locked": {
        "type": "thread.updated",
        "thread": {**THREAD_MINIMAL, "status": {"type": "locked", "reason": "Read only"}},
    },
    "thread.updated-closed": {
        "type": "thread.updated",
        "thread": {**THREAD_MINIMAL, "title": "Done", "status": {"type": "closed"}},
    },
    "thread.item.added": {"type": "thread.item.added", "item": ITEMS["assistant_message-empty"]},
    "thread.item.done": {"type": "thread.item.done", "item": ITEMS["assistant_message"]},
    "thread.item.done-user": {"type": "thread.item.done", "item": ITEMS["user_message"]},
    "thread.item.done-widget": {"type": "thread.item.done", "item": ITEMS["widget-kitchen-sink"]},
    "thread.item.replaced": {"type": "thread.item.replaced", "item": ITEMS["widget"]},
    "thread.item.removed": {"type": "thread.item.removed", "item_id": "itm_1"},
    **{
        f"thread.item.updated/{name}": {
            "type": "thread.item.updated",
            "item_id": "itm_1",
            "update": update,
        }
        for name, update in UPDATES.items()
    },
    "stream_options": {"type": "stream_options", "stream_options": {"allow_cancel": True}},
    "progress_update": {"type": "progress_update", "icon": "search", "text": "Searching..."},
    "progress_update-no-icon": {"type": "progress_update", "text": "Working"},
    "client_effect": {"type": "client_effect", "name": "confetti", "data": {"count": 3}},
    "client_effect-no-data": {"type": "client_effect", "name": "reload"},
    "error-default": {"type": "error"},
    "error-stream": {
        "type": "error",
        "code": "stream.error",
        "message": "Something broke",
        "allow_retry": True,
    },
    "notice": {
        "type": "notice",
        "level": "warning",
        "message": "Limit **near**",
        "title": "Heads up",
    },
    "notice-no-title": {"type": "notice", "level": "info", "message": "FYI"},
}

USER_INPUT = {
    "content": [TEXT_CONTENT],
    "attachments": [],
    "inference_options": {},
}
FULL_USER_INPUT = {
    "content": [TEXT_CONTENT, TAG_CONTENT],
    "attachments": ["atc_file", "atc_img"],
    "quoted_text": "quoted",
    "inference_options": {"tool_choice": {"id": "search"}, "model": "gpt-5"},
}


def request(kind: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A request envelope."""
    return {"type": kind, "params": params, **extra}


VALID_REQUESTS: dict[str, dict[str, Any]] = {
    "threads.create": request("threads.create", {"input": USER_INPUT}),
    "threads.create-full": request(
        "threads.create", {"input": FULL_USER_INPUT}, metadata={"locale": "fr", "n": None}
    ),
    "threads.add_user_message": request(
        "threads.add_user_message", {"input": USER_INPUT, "thread_id": "thr_1"}
    ),
    "threads.add_client_tool_output": request(
        "threads.add_client_tool_output", {"thread_id": "thr_1", "result": {"lat": 1.5}}
    ),
    "threads.add_client_tool_output-null": request(
        "threads.add_client_tool_output", {"thread_id": "thr_1", "result": None}
    ),
    "threads.add_structured_input": request(
        "threads.add_structured_input",
        {
            "thread_id": "thr_1",
            "item_id": "itm_q",
            "input": {
                "status": "answered",
                "answers": {"q1": {"values": ["S", "M"]}, "q2": {"skipped": True}},
            },
        },
    ),
    "threads.add_structured_input-defaults": request(
        "threads.add_structured_input", {"thread_id": "thr_1", "item_id": "itm_q", "input": {}}
    ),
    "threads.retry_after_item": request(
        "threads.retry_after_item", {"thread_id": "thr_1", "item_id": "itm_1"}
    ),
    "threads.custom_action": request(
        "threads.custom_action",
        {"thread_id": "thr_1", "item_id": "itm_w", "action": {"type": "vote", "payload": {"a": 1}}},
    ),
    "threads.custom_action-no-item-no-payload": request(
        "threads.custom_action", {"thread_id": "thr_1", "action": {"type": "refresh"}}
    ),
    "threads.sync_custom_action": request(
        "threads.sync_custom_action",
        {"thread_id": "thr_1", "item_id": "itm_w", "action": {"type": "toggle", "payload": [1]}},
    ),
    "threads.get_by_id": request("threads.get_by_id", {"thread_id": "thr_1"}),
    "threads.list": request("threads.list", {}),
    "threads.list-full": request("threads.list", {"limit": 20, "order": "asc", "after": "thr_0"}),
    "threads.update": request("threads.update", {"thread_id": "thr_1", "title": "Renamed"}),
    "threads.delete": request("threads.delete", {"thread_id": "thr_1"}),
    "items.list": request("items.list", {"thread_id": "thr_1"}),
    "items.list-full": request(
        "items.list", {"thread_id": "thr_1", "limit": 0, "order": "desc", "after": "itm_9"}
    ),
    "items.feedback": request(
        "items.feedback", {"thread_id": "thr_1", "item_ids": ["itm_1", "itm_2"], "kind": "negative"}
    ),
    "attachments.create": request(
        "attachments.create", {"name": "cat.png", "size": 1024, "mime_type": "image/png"}
    ),
    "attachments.delete": request("attachments.delete", {"attachment_id": "atc_1"}),
    "input.transcribe": request(
        "input.transcribe", {"audio_base64": "AAAA", "mime_type": "audio/webm;codecs=opus"}
    ),
    "unknown-fields-ignored": request(
        "threads.get_by_id", {"thread_id": "thr_1", "extra": 1}, extra={"x": 1}
    ),
}

INVALID_REQUESTS: dict[str, Any] = {
    "not-an-object": ["threads.list"],
    "unknown-type": request("threads.archive", {"thread_id": "thr_1"}),
    "missing-type": {"params": {"thread_id": "thr_1"}},
    "missing-params": {"type": "threads.get_by_id"},
    "params-not-an-object": request("threads.get_by_id", "thr_1"),  # type: ignore[arg-type]
    "missing-thread-id": request("threads.get_by_id", {}),
    "thread-id-not-a-string": request("threads.get_by_id", {"thread_id": 1}),
    "missing-input": request("threads.create", {}),
    "missing-content": request(
        "threads.create", {"input": {"attachments": [], "inference_options": {}}}
    ),
    "unknown-content-type": request(
        "threads.create",
        {"input": {**USER_INPUT, "content": [{"type": "input_audio", "text": "x"}]}},
    ),
    "tag-without-data": request(
        "threads.create",
        {"input": {**USER_INPUT, "content": [{"type": "input_tag", "id": "t", "text": "@t"}]}},
    ),
    "attachments-not-a-list": request(
        "threads.create", {"input": {**USER_INPUT, "attachments": "atc_1"}}
    ),
    "tool-choice-without-id": request(
        "threads.create",
        {"input": {**USER_INPUT, "inference_options": {"tool_choice": {}}}},
    ),
    "bad-order": request("threads.list", {"order": "sideways"}),
    "limit-not-a-number": request("items.list", {"thread_id": "thr_1", "limit": "many"}),
    "bad-feedback-kind": request(
        "items.feedback", {"thread_id": "thr_1", "item_ids": ["itm_1"], "kind": "meh"}
    ),
    "item-ids-not-a-list": request(
        "items.feedback", {"thread_id": "thr_1", "item_ids": "itm_1", "kind": "positive"}
    ),
    "size-not-a-number": request(
        "attachments.create", {"name": "a", "size": "big", "mime_type": "text/plain"}
    ),
    "missing-action": request("threads.custom_action", {"thread_id": "thr_1"}),
    "bad-structured-status": request(
        "threads.add_structured_input",
        {"thread_id": "thr_1", "item_id": "itm_q", "input": {"status": "maybe"}},
    ),
    "metadata-not-an-object": request("threads.list", {}, metadata=["x"]),
    "missing-audio": request("input.transcribe", {"mime_type": "audio/webm"}),
}

# Requests the two sides deliberately disagree on: (request, ours accepts, reason).
REQUEST_DIFFERENCES: dict[str, tuple[dict[str, Any], bool, str]] = {
    "negative-thread-limit": (
        request("threads.list", {"limit": -1}),
        False,
        "limit rejects negatives (the reference would slice from the end)",
    ),
    "negative-item-limit": (
        request("items.list", {"thread_id": "thr_1", "limit": -5}),
        False,
        "limit rejects negatives (the reference would slice from the end)",
    ),
    "negative-size": (
        request("attachments.create", {"name": "a", "size": -1, "mime_type": "text/plain"}),
        False,
        "an attachment cannot have a negative size",
    ),
    "input-without-attachments": (
        request("threads.create", {"input": {"content": [TEXT_CONTENT], "inference_options": {}}}),
        True,
        "UserMessageInput.attachments defaults to [] when missing",
    ),
    "input-without-inference-options": (
        request("threads.create", {"input": {"content": [TEXT_CONTENT], "attachments": []}}),
        True,
        "UserMessageInput.inference_options defaults to {} when missing",
    ),
    "action-without-type": (
        request("threads.custom_action", {"thread_id": "thr_1", "action": {"payload": 1}}),
        False,
        "an action needs a type (the reference fills in a TypeVar object)",
    ),
}


def _cases() -> list[Any]:
    cases: list[Any] = []

    def add(kind: str, name: str, data: Any) -> None:
        cases.append(pytest.param(kind, name, data, id=f"{kind}:{name}"))

    for name, data in VALID_REQUESTS.items():
        add("request", name, data)
    for name, data in EVENTS.items():
        add("event", name, data)
    for name, data in ITEMS.items():
        add("item", name, data)
    for name, data in UPDATES.items():
        add("update", name, data)
    add("thread", "full", THREAD)
    add("thread", "minimal", THREAD_MINIMAL)
    add(
        "thread_page",
        "threads",
        {
            "data": [
                {k: v for k, v in THREAD.items() if k != "items"},
                {"id": "thr_2", "created_at": T1, "status": {"type": "closed", "reason": "Old"}},
            ],
            "has_more": True,
            "after": "thr_2",
        },
    )
    add("thread_page", "empty", {"data": [], "has_more": False})
    add("item_page", "items", {"data": list(ITEMS.values()), "has_more": False})
    add(
        "item_page", "with-cursor", {"data": [ITEMS["end_of_turn"]], "has_more": True, "after": "x"}
    )
    add("attachment", "file", FILE_ATTACHMENT)
    add("attachment", "file-with-metadata", {**FILE_ATTACHMENT, "metadata": {"path": "/tmp/x"}})
    add("attachment", "image-with-metadata", IMAGE_ATTACHMENT)
    add("attachment", "image", {k: v for k, v in IMAGE_ATTACHMENT.items() if k != "metadata"})
    add(
        "attachment",
        "post-upload",
        {
            **FILE_ATTACHMENT,
            "upload_descriptor": {"url": "https://u.example.com", "method": "POST"},
        },
    )
    add("transcription", "text", {"text": "hello world"})
    add("sync_response", "with-item", {"updated_item": ITEMS["widget-kitchen-sink"]})
    add("sync_response", "empty", {})
    add("status", "active", {"type": "active"})
    add("status", "locked", {"type": "locked", "reason": "Busy"})
    add("status", "closed", {"type": "closed"})
    add("user_content", "text", TEXT_CONTENT)
    add("user_content", "tag", TAG_CONTENT)
    add("user_content", "tag-defaults", {"type": "input_tag", "id": "t", "text": "@t", "data": {}})
    add("assistant_content", "annotated", ASSISTANT_CONTENT)
    for name, source in (("url", URL_SOURCE), ("file", FILE_SOURCE), ("entity", ENTITY_SOURCE)):
        add("source", name, source)
        add("annotation", name, {"type": "annotation", "source": source, "index": 1})
    add("source", "entity-minimal", {"type": "entity", "title": "E", "id": "e_1"})
    for name, task in TASKS.items():
        add("task", name, task)
    add("workflow", "reasoning", ITEMS["workflow-reasoning"]["workflow"])
    add("workflow", "custom", ITEMS["workflow-custom"]["workflow"])
    for name, tree in WIDGET_TREES.items():
        add("widget", name, tree)
    for index, child in enumerate(WIDGET_TREES["kitchen-sink-card"]["children"]):
        add("component", f"kitchen-sink-child-{index}-{child['type']}", child)
    for index, child in enumerate(WIDGET_TREES["card-with-dynamic-children"]["children"]):
        add("component", f"dynamic-child-{index}-{child['type']}", child)
    return cases


CASES = _cases()

# Cases whose reference output itself breaks the reference schema: a required but
# nullable field that `exclude_none` drops. Ours must match the reference, not the schema.
SCHEMA_INVALID_ON_BOTH_SIDES = {
    # ThreadAddClientToolOutputParams.result: required, may be null, dropped when null.
    "request:threads.add_client_tool_output-null",
}


def _validate_both(kind: str, data: Any) -> tuple[Any, Any]:
    our_type, ref_type, _ = KINDS[kind]
    our_obj = adapter(our_type).validate_python(copy.deepcopy(data))
    ref_obj = adapter(ref_type).validate_python(copy.deepcopy(data))
    return our_obj, ref_obj


# ---------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name", "data"), CASES)
def test_serializes_like_the_reference(kind: str, name: str, data: Any) -> None:
    our_obj, ref_obj = _validate_both(kind, data)
    assert_same_wire(our_obj, ref_obj)


@pytest.mark.parametrize(("kind", "name", "data"), CASES)
def test_output_satisfies_the_reference_schema(kind: str, name: str, data: Any) -> None:
    our_obj, ref_obj = _validate_both(kind, data)
    section, target = KINDS[kind][2]
    if target is None:
        target = type(our_obj).__name__
    our_errors = schema_errors(section, target, json.loads(our_obj.model_dump_json(**OUR_WIRE)))
    ref_errors = schema_errors(section, target, json.loads(ref_obj.model_dump_json(**REF_WIRE)))
    assert our_errors == ref_errors
    if f"{kind}:{name}" in SCHEMA_INVALID_ON_BOTH_SIDES:
        assert our_errors
        return
    assert our_errors == []
    # A valid document reads back to itself (clients echo items and widgets).
    our_doc = json.loads(our_obj.model_dump_json(**OUR_WIRE))
    again = adapter(KINDS[kind][0]).validate_json(json.dumps(our_doc))
    assert json.loads(again.model_dump_json(**OUR_WIRE)) == our_doc


def test_every_stream_event_and_update_type_is_covered() -> None:
    event_types = {data["type"] for data in EVENTS.values()}
    assert event_types == set(
        json.loads((DATA / "wire-schema.json").read_text())[RESPONSES_KEY]["properties"][
            "stream_event"
        ]["discriminator"]["mapping"]
    )
    update_types = {data["type"] for data in UPDATES.values()}
    ours_update_types = {cls.model_fields["type"].default for cls in ours.ThreadItemUpdate.__args__}
    assert update_types == ours_update_types
    item_types = {data["type"] for data in ITEMS.values()}
    assert item_types == {
        cls.model_fields["type"].default for cls in _union_members(ours.ThreadItem)
    }
    request_types = {data["type"] for data in VALID_REQUESTS.values()}
    assert request_types == {
        cls.model_fields["type"].default for cls in _union_members(ours.ChatKitReq)
    }


def _union_members(annotated: Any) -> tuple[type[BaseModel], ...]:
    union = annotated.__origin__ if hasattr(annotated, "__metadata__") else annotated
    return tuple(union.__args__)


def test_naive_datetimes_mean_the_same_instant() -> None:
    # Ours normalizes to aware UTC, the reference keeps naive (local) times: the UI
    # reads both as the same moment.
    data = {**THREAD_MINIMAL, "created_at": "2024-05-01T12:00:00"}
    our_obj, ref_obj = _validate_both("thread", data)
    our_doc = json.loads(our_obj.model_dump_json(**OUR_WIRE))
    ref_doc = json.loads(ref_obj.model_dump_json(**REF_WIRE))
    assert our_doc["created_at"].endswith("Z")
    assert not ref_doc["created_at"].endswith("Z")
    assert normalize(our_doc) == normalize(ref_doc)


def test_python_datetimes_are_written_as_utc() -> None:
    local = datetime(2024, 5, 1, 14, 0, tzinfo=timezone.utc).astimezone()
    thread = ours.ThreadMetadata(id="thr_1", created_at=local)
    assert thread.created_at.tzinfo is timezone.utc
    assert json.loads(thread.model_dump_json(**OUR_WIRE))["created_at"] == "2024-05-01T14:00:00Z"


# ---------------------------------------------------------------------------
# Attachment metadata never reaches the wire
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", [FILE_ATTACHMENT, IMAGE_ATTACHMENT], ids=["file", "image"])
def test_attachment_metadata_stays_off_the_wire(data: dict[str, Any]) -> None:
    attachment = adapter(ours.Attachment).validate_python({**data, "metadata": {"secret": 1}})
    assert "metadata" not in json.loads(attachment.model_dump_json(**OUR_WIRE))
    # Nested in a user message and in a stream event too.
    event = adapter(ours.ThreadStreamEvent).validate_python(
        {
            "type": "thread.item.done",
            "item": item(
                "user_message",
                content=[TEXT_CONTENT],
                attachments=[attachment],
                inference_options={},
            ),
        }
    )
    wire = json.loads(event.model_dump_json(**OUR_WIRE))
    assert "metadata" not in wire["item"]["attachments"][0]
    # The reference's context key works too, and without a context it is kept (stores).
    assert "metadata" not in attachment.model_dump(context={"exclude_metadata": True})
    assert attachment.model_dump()["metadata"] == {"secret": 1}


# ---------------------------------------------------------------------------
# Constructor-built widget trees
# ---------------------------------------------------------------------------


def build_widgets(w: ModuleType, action: type[BaseModel]) -> dict[str, Any]:
    """The same trees built through either side's classes (`w` is the widgets module)."""
    vote = action(type="vote", payload={"id": 1, "note": None})
    client = action(type="open", handler="client", loadingBehavior="none", streaming=False)
    return {
        "card-defaults": w.Card(children=[w.Text(value="Hi")]),
        "card-everything": w.Card(
            key="k",
            id="card",
            asForm=True,
            background={"light": "white", "dark": "black"},
            size="full",
            padding={"top": 2, "x": "1rem"},
            status={"text": "Working", "icon": "sparkle"},
            collapsed=True,
            confirm={"label": "Yes", "action": vote},
            cancel={"label": "No", "action": client},
            theme="light",
            children=[
                w.Title(value="T", size="5xl"),
                w.Caption(value="C"),
                w.Text(value="x", editable={"name": "n"}, color=None, width=10),
                w.Markdown(value="*m*", streaming=True),
                w.Badge(label="b"),
                w.Box(direction="row", border={"x": 1}, children=[w.Spacer(minSize="1rem")]),
                w.Row(children=[w.Icon(name="lucide:bell"), w.Divider()]),
                w.Col(children=[w.Image(src="https://example.com/i.png", margin={"y": 1})]),
                w.Form(
                    onSubmitAction=vote,
                    children=[
                        w.Label(value="L", fieldName="f"),
                        w.Input(name="f", inputType="password"),
                        w.Textarea(name="t", rows=2),
                        w.Select(name="s", options=[{"value": "a", "label": "A"}]),
                        w.DatePicker(
                            name="d",
                            defaultValue=datetime(2024, 5, 1, tzinfo=timezone.utc),
                            onChangeAction=client,
                        ),
                        w.Checkbox(name="c", onChangeAction=vote),
                        w.RadioGroup(name="r", options=[{"label": "A", "value": "a"}]),
                        w.Button(submit=True, label="Send", iconStart="check"),
                    ],
                ),
                w.Transition(children=w.Text(value="moving")),
                w.Chart(
                    data=[{"x": "a", "y": 1}],
                    series=[
                        w.BarSeries(label="Y", dataKey="y"),
                        w.AreaSeries(label=None, dataKey="y", curveType="natural"),
                        w.LineSeries(label="L", dataKey="y", color={"light": "a", "dark": "b"}),
                    ],
                    xAxis={"dataKey": "x", "labels": {"a": "A"}},
                ),
            ],
        ),
        "list-view": w.ListView(
            limit="auto",
            children=[
                w.ListViewItem(onClickAction=vote, children=[w.Text(value="1")]),
                w.ListViewItem(children=[w.DynamicWidgetComponent(type="Custom", x=None, y=1)]),
            ],
        ),
        "basic": w.BasicRoot(children=[w.DynamicWidgetComponent(type="Text", value="t")]),
        "dynamic-root": w.DynamicWidgetRoot(
            type="Card",
            children=w.DynamicWidgetComponent(type="Box", extra={"n": None, "l": [None]}),
            custom="yes",
        ),
    }


WIDGET_BUILD_NAMES = list(build_widgets(our_widgets, our_actions.ActionConfig))


@pytest.mark.parametrize("name", WIDGET_BUILD_NAMES)
def test_built_widgets_serialize_like_the_reference(name: str) -> None:
    our_tree = build_widgets(our_widgets, our_actions.ActionConfig)[name]
    ref_tree = build_widgets(ref_widgets, ref_actions.ActionConfig)[name]
    assert_same_wire(our_tree, ref_tree)
    # Wrapped in an item and in a stream event as well.
    our_item = ours.WidgetItem(id="w", thread_id="t", created_at=T0, widget=our_tree)
    ref_item = ref.WidgetItem(id="w", thread_id="t", created_at=T0, widget=ref_tree)
    assert_same_wire(our_item, ref_item)
    assert_same_wire(
        ours.ThreadItemDoneEvent(item=our_item), ref.ThreadItemDoneEvent(item=ref_item)
    )
    assert_same_wire(
        ours.WidgetRootUpdated(widget=our_tree), ref.WidgetRootUpdated(widget=ref_tree)
    )


# ---------------------------------------------------------------------------
# Requests: accepted and rejected alike
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", VALID_REQUESTS.values(), ids=VALID_REQUESTS.keys())
def test_valid_requests_are_accepted_alike(data: dict[str, Any]) -> None:
    assert schema_errors(REQUESTS_KEY, "*", data) == []
    our_req, ref_req = _validate_both("request", data)
    assert type(our_req).__name__ == type(ref_req).__name__
    assert normalize(our_req.model_dump(mode="json")) == normalize(ref_req.model_dump(mode="json"))
    assert ours.is_streaming_req(our_req) == ref.is_streaming_req(ref_req)


@pytest.mark.parametrize("data", INVALID_REQUESTS.values(), ids=INVALID_REQUESTS.keys())
def test_invalid_requests_are_rejected_alike(data: Any) -> None:
    assert schema_errors(REQUESTS_KEY, "*", data) != []
    with pytest.raises(ValidationError):
        adapter(ref.ChatKitReq).validate_python(copy.deepcopy(data))
    with pytest.raises(ValidationError):
        adapter(ours.ChatKitReq).validate_python(copy.deepcopy(data))
    # The same from raw JSON bytes, as the server reads them.
    with pytest.raises(ValidationError):
        adapter(ours.ChatKitReq).validate_json(json.dumps(data))


@pytest.mark.parametrize(
    ("data", "ours_accepts", "reason"),
    REQUEST_DIFFERENCES.values(),
    ids=REQUEST_DIFFERENCES.keys(),
)
def test_deliberate_request_differences(data: Any, ours_accepts: bool, reason: str) -> None:
    def accepts(tp: Any) -> bool:
        try:
            adapter(tp).validate_python(copy.deepcopy(data))
        except ValidationError:
            return False
        return True

    assert accepts(ours.ChatKitReq) is ours_accepts, reason
    assert accepts(ref.ChatKitReq) is not ours_accepts, f"no longer a difference: {reason}"


def test_requests_from_json_bytes_match_python_validation() -> None:
    for data in VALID_REQUESTS.values():
        from_json = adapter(ours.ChatKitReq).validate_json(json.dumps(data))
        from_python = adapter(ours.ChatKitReq).validate_python(copy.deepcopy(data))
        assert from_json == from_python


# ---------------------------------------------------------------------------
# Smart-mode unions pick the same member when `type` is missing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        pytest.param("annotation", {"source": {"title": "t", "url": "https://x"}}, id="url"),
        pytest.param("annotation", {"source": {"title": "t", "filename": "f.txt"}}, id="file"),
        pytest.param("update", {"content_index": 0, "delta": "hi"}, id="text-delta"),
        pytest.param(
            "update", {"component_id": "c", "delta": "x", "done": True}, id="widget-delta"
        ),
    ],
)
def test_untagged_data_resolves_like_the_reference(kind: str, data: Any) -> None:
    our_obj, ref_obj = _validate_both(kind, data)
    assert type(our_obj).__name__ == type(ref_obj).__name__
    assert_same_wire(our_obj, ref_obj)


# ---------------------------------------------------------------------------
# Structure: same models as the reference, field for field
# ---------------------------------------------------------------------------

# $defs entries whose JSON Schema deliberately differs from the reference's.
SCHEMA_DIFFERENCES: dict[str, str] = {
    "Action_str_Any_": "our Action requires `type` (chatkit_asgi.actions)",
    "ErrorCode": "ErrorEvent.code is a plain string, so the enum never appears",
    "ErrorEvent": "code is a plain string: integrations send their own codes",
    "ThreadListParams": "limit rejects negatives",
    "ItemsListParams": "limit rejects negatives",
    "AttachmentCreateParams": "size rejects negatives",
    "UserMessageInput": "attachments and inference_options default when missing",
}

# The schema file was written with the `title`/`description` annotations stripped,
# which also dropped properties of those names (they survive in `required`).
STRIPPED_PROPERTY_NAMES = {"title", "description"}

_ANNOTATION_KEYWORDS = {"title", "description", "deprecated"}


def _without_annotations(value: Any, names: bool = False) -> Any:
    """A JSON Schema without docs; `names` marks a mapping keyed by names."""
    if isinstance(value, dict):
        return {
            key: _without_annotations(item, names=key in ("properties", "$defs") and not names)
            for key, item in value.items()
            if names or key not in _ANNOTATION_KEYWORDS
        }
    if isinstance(value, list):
        return [_without_annotations(item) for item in value]
    return value


def _is_schema_type(tp: Any) -> bool:
    return (isinstance(tp, type) and issubclass(tp, BaseModel)) or is_typeddict(tp)


def _all_defs(get: Any, names: list[str], mode: str) -> dict[str, Any]:
    """Every model and TypedDict reachable from `names`, by `$defs` name."""
    found: dict[str, Any] = {}
    for name in names:
        tp = get(name)
        if not _is_schema_type(tp):
            continue
        schema = adapter(tp).json_schema(mode=mode)  # type: ignore[arg-type]
        for def_name, definition in schema.pop("$defs", {}).items():
            found.setdefault(def_name, _without_annotations(definition))
        if "$ref" not in schema:
            found.setdefault(name, _without_annotations(schema))
    return found


def _reference_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    for module in (ref_actions, ref_widgets, ref):
        namespace.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    return namespace


@pytest.mark.filterwarnings(
    # The reference's Action defaults `type` to a TypeVar, which its schema cannot show.
    "ignore:Default value ~TType is not JSON serializable"
    ":pydantic.json_schema.PydanticJsonSchemaWarning"
)
@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_models_have_the_reference_json_schema(mode: str) -> None:
    """Field names, types, defaults and optionality of every shared model match."""
    theirs = _reference_namespace()
    # The bare generic reference Action has no schema (its default is a TypeVar);
    # it is compared as used, Action[str, Any] ("Action_str_Any_").
    shared = [name for name in ours.__all__ if name in theirs and name != "Action"]
    our_defs = _all_defs(lambda name: getattr(ours, name), shared, mode)
    ref_defs = _all_defs(theirs.__getitem__, shared, mode)
    assert len(ref_defs) > 120
    differing = {
        name
        for name in our_defs.keys() | ref_defs.keys()
        if our_defs.get(name) != ref_defs.get(name)
    }
    unexpected = {name: (our_defs.get(name), ref_defs.get(name)) for name in differing}
    for name in SCHEMA_DIFFERENCES:
        unexpected.pop(name, None)
    assert unexpected == {}
    assert differing == set(SCHEMA_DIFFERENCES), "a documented difference is gone"


def _our_export(def_name: str) -> Any:
    for prefix in ("Page_", "Action_"):
        if def_name.startswith(prefix):
            return getattr(ours, prefix[:-1])
    return getattr(ours, def_name, None)


def _our_structure(tp: Any, mode: str) -> tuple[set[str], set[str]]:
    schema = adapter(tp).json_schema(mode=mode)  # type: ignore[arg-type]
    if "$ref" in schema:  # recursive models are emitted as a reference
        schema = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return set(schema.get("properties", {})), set(schema.get("required", []))


@pytest.mark.parametrize(
    ("section", "mode"),
    [(REQUESTS_KEY, "validation"), (RESPONSES_KEY, "serialization")],
    ids=["requests", "responses"],
)
def test_models_have_the_schema_files_properties(
    wire_schema: dict[str, Any], section: str, mode: str
) -> None:
    """A structural diff against tests/data/wire-schema.json."""
    problems: list[str] = []
    compared = 0
    for def_name, definition in wire_schema[section]["$defs"].items():
        if "properties" not in definition:
            continue  # enums (ErrorCode)
        tp = _our_export(def_name)
        assert _is_schema_type(tp), f"{def_name} has no counterpart in chatkit_asgi.types"
        names, required = _our_structure(tp, mode)
        expected_names = set(definition["properties"])
        expected_required = set(definition.get("required", []))
        compared += 1
        if not names - expected_names <= STRIPPED_PROPERTY_NAMES or expected_names - names:
            problems.append(f"{def_name}: properties {sorted(names ^ expected_names)} differ")
        allowed = {"type"} if def_name == "Action_str_Any_" else set()
        if def_name == "UserMessageInput":
            allowed = {"attachments", "inference_options"}
        if required ^ expected_required != allowed:
            problems.append(
                f"{def_name}: required differs on {sorted(required ^ expected_required)}"
            )
    assert problems == []
    assert compared >= (30 if section == REQUESTS_KEY else 100)


@pytest.mark.parametrize("name", sorted(set(ours.__all__) & set(_reference_namespace())))
def test_models_have_the_reference_fields_in_order(name: str) -> None:
    """Same field names in the same order (the wire key order follows it)."""
    tp, theirs = getattr(ours, name), _reference_namespace()[name]
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return
    assert list(tp.model_fields) == list(theirs.model_fields)
    for field_name, field in tp.model_fields.items():
        their_field = theirs.model_fields[field_name]
        if (name, field_name) in {("Action", "type")}:
            continue  # required on our side; the reference defaults it to a TypeVar
        if name == "UserMessageInput" and field_name in {"attachments", "inference_options"}:
            assert not field.is_required() and their_field.is_required()
            continue
        assert field.is_required() == their_field.is_required(), field_name
        if not field.is_required():
            ours_default = field.get_default(call_default_factory=True)
            their_default = their_field.get_default(call_default_factory=True)
            if isinstance(ours_default, BaseModel):
                ours_default, their_default = ours_default.model_dump(), their_default.model_dump()
            assert ours_default == their_default, field_name
