"""What the diff and streaming helpers emit, for every component type, reads the same in
openai-chatkit 1.6.5 (tests/types proves the component JSON itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import TypeAdapter

from chatkit_asgi.types import ThreadItemUpdatedEvent, ThreadMetadata, WidgetComponentUpdated
from chatkit_asgi.widgets import (
    Card,
    StrictWidgetComponent,
    StrictWidgetRoot,
    WidgetComponent,
    WidgetComponentBase,
    WidgetRoot,
    diff_widget,
    stream_widget,
)

from ._support import assert_reference_reads

pytestmark = pytest.mark.filterwarnings(
    "ignore:Direct usage of named widget classes is deprecated:DeprecationWarning"
)

TREES: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "widget-trees.json").read_text()
)
ROOTS: TypeAdapter[Any] = TypeAdapter(WidgetRoot)
COMPONENTS: TypeAdapter[Any] = TypeAdapter(WidgetComponent)


def components_by_type() -> dict[str, Any]:
    """One validated component of every type found in the shared sample trees."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, WidgetComponentBase):
            found.setdefault(node.type, node)
            children = node.__dict__.get("children")
            for child in children if isinstance(children, list) else [children]:
                walk(child)

    for tree in TREES.values():
        walk(ROOTS.validate_python(tree))
    return found


SAMPLES = components_by_type()


def type_names(union: Any) -> list[str]:
    """The `type` literal of every class of an annotated discriminated union."""
    classes = get_args(get_args(union)[0])
    return sorted(get_args(cls.model_fields["type"].annotation)[0] for cls in classes)


TYPED_COMPONENTS = type_names(StrictWidgetComponent)
TYPED_ROOTS = type_names(StrictWidgetRoot)


def test_the_samples_cover_every_typed_component_and_root() -> None:
    assert set(TYPED_COMPONENTS) | set(TYPED_ROOTS) <= set(SAMPLES)


@pytest.mark.parametrize("kind", TYPED_COMPONENTS)
def test_an_update_of_every_component_type_reads_the_same(kind: str) -> None:
    component = SAMPLES[kind].model_copy(update={"id": "target"})
    before = Card(children=[component.model_copy(update={"key": "old"})])
    after = Card(children=[component])

    [update] = diff_widget(before, after)

    assert update.type == "widget.root.updated"  # as the reference's diff_widget
    assert_reference_reads(ThreadItemUpdatedEvent(item_id="msg_1", update=update))
    by_hand = WidgetComponentUpdated(component_id="target", component=component)
    assert_reference_reads(ThreadItemUpdatedEvent(item_id="msg_1", update=by_hand))


@pytest.mark.parametrize("name", sorted(TREES))
async def test_streaming_every_sample_tree_reads_the_same(name: str) -> None:
    tree = ROOTS.validate_python(TREES[name])
    empty = ROOTS.validate_python({"type": "Basic", "children": []})

    async def states() -> Any:
        yield empty
        yield tree

    thread = ThreadMetadata(id="thr_1", created_at="2025-01-01T00:00:00Z")
    events = [event async for event in stream_widget(thread, states())]

    assert [event.type for event in events] == [
        "thread.item.added",
        "thread.item.updated",
        "thread.item.done",
    ]
    for event in events:
        assert_reference_reads(event)
