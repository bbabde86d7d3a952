"""Building blocks of scripted turns, as plain JSON data (see `_script`)."""

from __future__ import annotations

from typing import Any

Step = dict[str, Any]

WIDGET: dict[str, Any] = {
    "type": "Card",
    "children": [
        {"type": "Text", "id": "greeting", "value": "Hello"},
        {
            "type": "Button",
            "label": "Go",
            "onClickAction": {"type": "go", "payload": {"n": 1}},
        },
    ],
}

URL_ANNOTATION: dict[str, Any] = {
    "type": "annotation",
    "source": {"type": "url", "title": "Docs", "url": "https://example.com/docs"},
    "index": 5,
}

ENTITY_ANNOTATION: dict[str, Any] = {
    "type": "annotation",
    "source": {
        "type": "entity",
        "id": "ent_1",
        "title": "Ada",
        "icon": "profile",
        "data": {"k": "v"},
    },
}


def item(kind: str, name: str, id_kind: str = "message", /, **fields: Any) -> dict[str, Any]:
    """An item of type `kind` with a fresh id (of `id_kind`) remembered as `name`."""
    return {
        "type": kind,
        "id": f"$new:{id_kind}:{name}",
        "thread_id": "$thread",
        "created_at": "$now",
        **fields,
    }


def done(data: dict[str, Any]) -> Step:
    return {"type": "thread.item.done", "item": data}


def added(data: dict[str, Any]) -> Step:
    return {"type": "thread.item.added", "item": data}


def update(name: str, data: dict[str, Any]) -> Step:
    return {"type": "thread.item.updated", "item_id": f"$id:{name}", "update": data}


def text(value: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": value, "annotations": annotations or []}


def assistant(name: str, value: str) -> dict[str, Any]:
    return item("assistant_message", name, content=[text(value)])


def streamed_assistant_message(name: str) -> list[Step]:
    """added, content part added, two deltas, an annotation, content part done, done."""
    final = text("Hello world", [URL_ANNOTATION, ENTITY_ANNOTATION])
    return [
        added(item("assistant_message", name, content=[])),
        update(
            name,
            {
                "type": "assistant_message.content_part.added",
                "content_index": 0,
                "content": text(""),
            },
        ),
        update(
            name,
            {
                "type": "assistant_message.content_part.text_delta",
                "content_index": 0,
                "delta": "Hello ",
            },
        ),
        update(
            name,
            {
                "type": "assistant_message.content_part.text_delta",
                "content_index": 0,
                "delta": "world",
            },
        ),
        update(
            name,
            {
                "type": "assistant_message.content_part.annotation_added",
                "content_index": 0,
                "annotation_index": 0,
                "annotation": URL_ANNOTATION,
            },
        ),
        update(
            name,
            {
                "type": "assistant_message.content_part.annotation_added",
                "content_index": 0,
                "annotation_index": 1,
                "annotation": ENTITY_ANNOTATION,
            },
        ),
        update(
            name,
            {"type": "assistant_message.content_part.done", "content_index": 0, "content": final},
        ),
        done(item("assistant_message", name, content=[final])),
    ]


def widget(name: str, copy_text: str | None = "Hello") -> dict[str, Any]:
    fields: dict[str, Any] = {"widget": WIDGET}
    if copy_text is not None:
        fields["copy_text"] = copy_text
    return item("widget", name, **fields)


def workflow_steps(name: str) -> list[Step]:
    """A workflow added, a task added then updated, then the workflow done."""
    loading = {
        "type": "thought",
        "title": "Thinking",
        "content": "hmm",
        "status_indicator": "loading",
    }
    complete = {**loading, "status_indicator": "complete"}
    search = {
        "type": "web_search",
        "title": "Search",
        "queries": ["chatkit"],
        "sources": [{"type": "url", "title": "Result", "url": "https://example.com/r"}],
    }
    return [
        added(item("workflow", name, "workflow", workflow={"type": "custom", "tasks": []})),
        update(name, {"type": "workflow.task.added", "task_index": 0, "task": loading}),
        update(name, {"type": "workflow.task.updated", "task_index": 0, "task": complete}),
        update(name, {"type": "workflow.task.added", "task_index": 1, "task": search}),
        done(
            item(
                "workflow",
                name,
                "workflow",
                workflow={
                    "type": "reasoning",
                    "tasks": [complete, search],
                    "summary": {"duration": 3},
                    "expanded": True,
                },
            )
        ),
    ]


def client_tool_call(name: str, call_id: str = "call_1") -> dict[str, Any]:
    return item(
        "client_tool_call",
        name,
        "tool_call",
        status="pending",
        call_id=call_id,
        name="get_location",
        arguments={"precise": True},
    )


def hidden(name: str) -> dict[str, Any]:
    return item("hidden_context_item", name, content={"memo": "the user likes tea"})


def sdk_hidden(name: str) -> dict[str, Any]:
    return item("sdk_hidden_context", name, "sdk_hidden_context", content="internal note")


def structured_input(name: str) -> dict[str, Any]:
    return item(
        "structured_input",
        name,
        inputs=[
            {
                "type": "multiple_choice",
                "id": "color",
                "question": "Which color?",
                "options": [{"value": "red"}, {"value": "blue"}],
            },
            {
                "type": "multiple_choice",
                "id": "toppings",
                "question": "Which toppings?",
                "options": [{"value": "ham"}, {"value": "olives"}, {"value": "basil"}],
                "multiple": True,
            },
            {
                "type": "freeform",
                "id": "name",
                "question": "Your name?",
                "description": "As on your card",
            },
            {"type": "freeform", "id": "note", "question": "Anything else?"},
        ],
    )


def title(value: str | None) -> Step:
    return {"$title": value}


def progress(value: str, icon: str | None = None) -> Step:
    step: Step = {"type": "progress_update", "text": value}
    if icon is not None:
        step["icon"] = icon
    return step


def notice(level: str, message: str, title_: str | None = None) -> Step:
    step: Step = {"type": "notice", "level": level, "message": message}
    if title_ is not None:
        step["title"] = title_
    return step


def client_effect(name: str, data: dict[str, Any] | None = None) -> Step:
    step: Step = {"type": "client_effect", "name": name}
    if data is not None:
        step["data"] = data
    return step


def removed(name: str) -> Step:
    return {"type": "thread.item.removed", "item_id": f"$id:{name}"}


def replaced(data: dict[str, Any]) -> Step:
    return {"type": "thread.item.replaced", "item": data}


def raise_(kind: str, **fields: Any) -> Step:
    return {"$raise": kind, **fields}


def user_input(value: str, **fields: Any) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": value}],
        "attachments": [],
        "inference_options": {},
        **fields,
    }
