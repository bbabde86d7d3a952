"""Widget components: None-dropping, defaults, strict-vs-dynamic resolution, round trips."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import chatkit.actions as ref_actions
import chatkit.types as ref_types
import chatkit.widgets as ref_widgets
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import chatkit_asgi.types.components as components
from chatkit_asgi.actions import ActionConfig
from chatkit_asgi.types import ThreadItemDoneEvent, WidgetComponentUpdated, WidgetItem
from chatkit_asgi.widgets import (
    BasicRoot,
    Box,
    Button,
    Card,
    Chart,
    DynamicWidgetComponent,
    DynamicWidgetRoot,
    Form,
    ListView,
    ListViewItem,
    Markdown,
    Row,
    Text,
    Transition,
    WidgetComponent,
    WidgetComponentBase,
    WidgetRoot,
)

pytestmark = pytest.mark.filterwarnings(
    # The reference deprecates direct use of its widget classes; used here only to compare.
    "ignore:Direct usage of named widget classes is deprecated:DeprecationWarning"
)

DATA = Path(__file__).resolve().parent.parent / "data"
WIDGET_TREES: dict[str, Any] = json.loads((DATA / "widget-trees.json").read_text())
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

ROOTS: TypeAdapter[Any] = TypeAdapter(WidgetRoot)
COMPONENTS: TypeAdapter[Any] = TypeAdapter(WidgetComponent)
REF_ROOTS: TypeAdapter[Any] = TypeAdapter(ref_widgets.WidgetRoot)
REF_COMPONENTS: TypeAdapter[Any] = TypeAdapter(ref_widgets.WidgetComponent)


def shape(node: Any) -> Any:
    """The class of every node of a validated tree, nested like the tree."""
    if not isinstance(node, BaseModel):
        return repr(node)
    children = getattr(node, "children", None)
    if isinstance(children, list):
        return [type(node).__name__, [shape(child) for child in children]]
    if isinstance(children, BaseModel):
        return [type(node).__name__, shape(children)]
    return type(node).__name__


# ---------------------------------------------------------------------------
# None is never written inside a widget tree
# ---------------------------------------------------------------------------


def test_none_props_are_dropped_without_exclude_none() -> None:
    text = Text(value="hi", color=None, size="sm")
    assert text.model_dump() == {"type": "Text", "value": "hi", "size": "sm"}
    assert json.loads(text.model_dump_json()) == {"type": "Text", "value": "hi", "size": "sm"}


def test_nested_none_in_untyped_values_is_dropped() -> None:
    action = ActionConfig(
        type="save", payload={"id": 1, "note": None, "tags": ["a", None, {"x": None}]}
    )
    button = Button(label="Save", onClickAction=action)
    expected_action = {
        "type": "save",
        "payload": {"id": 1, "tags": ["a", {}]},
        "handler": "server",
        "loadingBehavior": "auto",
        "streaming": True,
    }
    for dumped in (
        button.model_dump(),
        button.model_dump(exclude_none=True),
        json.loads(button.model_dump_json()),
        json.loads(button.model_dump_json(exclude_none=True)),
    ):
        assert dumped == {"type": "Button", "label": "Save", "onClickAction": expected_action}
    # The action on its own is not a widget: it keeps what it was given.
    assert action.model_dump()["payload"]["note"] is None


def test_a_none_payload_is_dropped_and_defaults_are_written() -> None:
    card = Card(children=[], confirm={"label": "OK", "action": ActionConfig(type="ok")})
    assert card.model_dump(exclude_none=True)["confirm"] == {
        "label": "OK",
        "action": {"type": "ok", "handler": "server", "loadingBehavior": "auto", "streaming": True},
    }


def test_children_key_survives_as_null_like_the_reference() -> None:
    # The reference keeps a `children: null` (at any depth) unless exclude_none is set.
    box = Box()
    assert box.model_dump() == {"children": None, "type": "Box"}
    assert box.model_dump(exclude_none=True) == {"type": "Box"}
    dynamic = DynamicWidgetComponent(type="Custom", data={"children": None, "other": None})
    assert dynamic.model_dump() == {"type": "Custom", "children": None, "data": {"children": None}}


def test_dynamic_components_keep_their_extra_props() -> None:
    node = DynamicWidgetComponent.model_validate(
        {
            "type": "Carousel",
            "items": [{"src": "a.png", "alt": None}, None],
            "autoplay": True,
            "speed": None,
            "children": [{"type": "Slide", "index": 1}],
        }
    )
    expected = {
        "type": "Carousel",
        "children": [{"type": "Slide", "index": 1}],
        "items": [{"src": "a.png"}],
        "autoplay": True,
    }
    assert node.model_dump(exclude_none=True) == expected
    # Without exclude_none only the `children: null` of the leaf survives (reference rule).
    expected["children"] = [{"type": "Slide", "children": None, "index": 1}]
    assert json.loads(node.model_dump_json()) == expected


def test_custom_subclasses_get_the_same_cleaning() -> None:
    class Gauge(WidgetComponentBase):
        """A component an integration adds."""

        type: Literal["Gauge"] = "Gauge"
        value: float
        meta: dict[str, Any] = {}

    gauge = Gauge(value=0.5, meta={"unit": None, "max": 1})
    assert gauge.model_dump(exclude_none=True) == {
        "type": "Gauge",
        "value": 0.5,
        "meta": {"max": 1},
    }
    assert gauge.model_dump() == {"type": "Gauge", "value": 0.5, "meta": {"max": 1}}


def test_typed_trees_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    original = components._drop_none

    def counting(value: Any) -> Any:
        calls.append(value)
        return original(value)

    monkeypatch.setattr(components, "_drop_none", counting)
    tree = Card(children=[Row(children=[Text(value="a", color=None), Markdown(value="b")])])
    tree.model_dump_json(exclude_none=True)
    assert calls == []  # nothing untyped: pydantic's own exclude_none did all the work
    Button(onClickAction=ActionConfig(type="x", payload={"a": None})).model_dump_json(
        exclude_none=True
    )
    assert calls[0]["payload"] == {"a": None}  # only the action is swept


# ---------------------------------------------------------------------------
# `type` is always written
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"exclude_defaults": True},
        {"exclude_unset": True},
        {"exclude": {"type"}},
        {"exclude_none": True, "exclude_defaults": True},
    ],
    ids=["exclude_defaults", "exclude_unset", "exclude-type", "exclude_none+defaults"],
)
def test_type_is_always_written(options: dict[str, Any]) -> None:
    tree = Card(children=[Text(value="a"), BasicRoot(children=[])])
    dumped = tree.model_dump(**options)
    assert dumped["type"] == "Card"
    assert [child["type"] for child in dumped["children"]] == ["Text", "Basic"]


def test_type_cannot_be_reassigned() -> None:
    text = Text(value="a")
    with pytest.raises(ValidationError):
        text.type = "Title"  # type: ignore[misc, assignment]


# ---------------------------------------------------------------------------
# Same output as the reference under every dump option
# ---------------------------------------------------------------------------

DUMP_OPTIONS: list[dict[str, Any]] = [
    {},
    {"mode": "json"},
    {"exclude_none": True},
    {"exclude_defaults": True},
    {"exclude_unset": True},
    {"mode": "json", "exclude_none": True, "by_alias": True},
]


@pytest.mark.parametrize("name", WIDGET_TREES)
def test_dumps_like_the_reference_under_every_option(name: str) -> None:
    ours, theirs = (
        ROOTS.validate_python(WIDGET_TREES[name]),
        REF_ROOTS.validate_python(WIDGET_TREES[name]),
    )
    for options in DUMP_OPTIONS:
        assert ours.model_dump(**options) == theirs.model_dump(**options), options
    for options in ({}, {"exclude_none": True}, {"exclude_defaults": True}):
        assert ours.model_dump_json(**options) == theirs.model_dump_json(**options), options


# ---------------------------------------------------------------------------
# Validation: strict class when it fits, dynamic otherwise (smart-mode union)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", WIDGET_TREES)
def test_trees_resolve_to_the_same_classes_as_the_reference(name: str) -> None:
    assert shape(ROOTS.validate_python(WIDGET_TREES[name])) == shape(
        REF_ROOTS.validate_python(WIDGET_TREES[name])
    )
    assert shape(ROOTS.validate_json(json.dumps(WIDGET_TREES[name]))) == shape(
        REF_ROOTS.validate_json(json.dumps(WIDGET_TREES[name]))
    )


COMPONENT_INPUTS: dict[str, dict[str, Any]] = {
    "typed": {"type": "Text", "value": "hi"},
    "typed-with-unknown-prop": {"type": "Text", "value": "hi", "glow": True},
    "typed-missing-required": {"type": "Text"},
    "typed-bad-literal": {"type": "Badge", "label": "x", "color": "chartreuse"},
    "unknown-type": {"type": "Sparkline", "values": [1, 2]},
    "root-type-as-component": {"type": "Card", "children": []},
    "button-with-action": {"type": "Button", "onClickAction": {"type": "go"}},
    "button-with-bad-action": {"type": "Button", "onClickAction": {"payload": 1}},
    "icon-vendor": {"type": "Icon", "name": "vendor:acme"},
    "icon-unknown": {"type": "Icon", "name": "acme"},
    "transition": {"type": "Transition", "children": {"type": "Text", "value": "x"}},
    "list-view-item-dynamic-child": {"type": "ListViewItem", "children": [{"type": "Foo"}]},
}


@pytest.mark.parametrize("data", COMPONENT_INPUTS.values(), ids=COMPONENT_INPUTS.keys())
def test_components_resolve_to_the_same_class_as_the_reference(data: dict[str, Any]) -> None:
    ours, theirs = COMPONENTS.validate_python(data), REF_COMPONENTS.validate_python(data)
    assert shape(ours) == shape(theirs)
    assert ours.model_dump() == theirs.model_dump()


def test_typed_classes_win_when_they_validate() -> None:
    tree = ROOTS.validate_python(WIDGET_TREES["kitchen-sink-card"])
    assert type(tree) is Card
    flat = json.dumps(shape(tree))
    assert "Dynamic" not in flat
    for name in ("Form", "Chart", "Transition", "Markdown", "Title", "Caption", "Image"):
        assert f'"{name}"' in flat


def test_dynamic_classes_catch_what_does_not_fit() -> None:
    assert type(ROOTS.validate_python({"type": "Card", "size": "huge", "children": []})) is (
        DynamicWidgetRoot
    )
    listview = ROOTS.validate_python(WIDGET_TREES["dynamic-list-view"])
    assert type(listview) is DynamicWidgetRoot
    assert type(ROOTS.validate_python({"type": "Basic", "children": []})) is BasicRoot
    with pytest.raises(ValidationError):
        ROOTS.validate_python({"type": "Text", "value": "not a root"})
    with pytest.raises(ValidationError):
        COMPONENTS.validate_python({"value": "no type"})


def test_instances_are_kept_as_given() -> None:
    text = Text(value="a")
    dynamic = DynamicWidgetComponent(type="Text", value="looks typed")
    card = Card(children=[text, dynamic])
    assert card.children[0] is text
    assert card.children[1] is dynamic
    # A dynamic node whose type names a typed class serializes as itself, silently.
    assert card.model_dump(exclude_none=True)["children"][1] == {
        "type": "Text",
        "value": "looks typed",
    }


# ---------------------------------------------------------------------------
# Round trips through items and events
# ---------------------------------------------------------------------------


# exclude_none drops a required-but-null prop (Transition.children, a series label),
# so these read back as dynamic nodes -- with the reference as well.
LOSSY_TREES = {"transition-empty", "chart-null-series-label"}


@pytest.mark.parametrize("name", WIDGET_TREES)
def test_widget_item_round_trip(name: str) -> None:
    item = WidgetItem(
        id="itm_1", thread_id="thr_1", created_at=T0, widget=WIDGET_TREES[name], copy_text="c"
    )
    wire = item.model_dump_json(exclude_none=True)
    again = WidgetItem.model_validate_json(wire)
    assert again.model_dump_json(exclude_none=True) == wire
    if name not in LOSSY_TREES:
        assert shape(again.widget) == shape(item.widget)
    # A store that keeps Python dumps reads them back the same way.
    assert WidgetItem.model_validate(item.model_dump()).model_dump_json(exclude_none=True) == wire
    # And the reference reads what we write into the same tree.
    theirs = ref_types.WidgetItem.model_validate_json(wire)
    assert theirs.model_dump_json(exclude_none=True) == wire


def test_events_carry_components_and_roots() -> None:
    update = WidgetComponentUpdated(
        component_id="t", component={"type": "Text", "id": "t", "value": "x", "color": None}
    )
    assert type(update.component) is Text
    assert json.loads(update.model_dump_json()) == {
        "type": "widget.component.updated",
        "component_id": "t",
        "component": {"type": "Text", "id": "t", "value": "x"},
    }
    item = WidgetItem(
        id="i",
        thread_id="t",
        created_at=T0,
        widget=ListView(children=[ListViewItem(children=[Transition(children=None)])]),
    )
    event = json.loads(ThreadItemDoneEvent(item=item).model_dump_json(exclude_none=True))
    assert event["item"]["widget"] == {
        "type": "ListView",
        "children": [{"type": "ListViewItem", "children": [{"type": "Transition"}]}],
    }


def test_built_trees_match_the_reference() -> None:
    def build(w: Any, action: Any) -> Any:
        return w.Card(
            children=[
                w.Form(
                    onSubmitAction=action(type="submit"),
                    children=[
                        w.Chart(
                            data=[{"x": 1}],
                            series=[w.LineSeries(label=None, dataKey="x")],
                            xAxis="x",
                        )
                    ],
                )
            ]
        )

    ours, theirs = build(components, ActionConfig), build(ref_widgets, ref_actions.ActionConfig)
    assert ours.model_dump() == theirs.model_dump()
    assert ours.model_dump_json() == theirs.model_dump_json()
    assert isinstance(ours.children[0], Form)
    assert isinstance(ours.children[0].children[0], Chart)  # type: ignore[index]


# ---------------------------------------------------------------------------
# Module hygiene
# ---------------------------------------------------------------------------


def test_serialization_schema_describes_the_fields() -> None:
    schema = Text.model_json_schema(mode="serialization")
    assert {"type", "value", "color"} <= set(schema["properties"])


@pytest.mark.parametrize(
    "module",
    [
        "chatkit_asgi.widgets.components",
        "chatkit_asgi.widgets",
        "chatkit_asgi.types.components",
        "chatkit_asgi.types.items",
        "chatkit_asgi.types.events",
        "chatkit_asgi.types",
    ],
)
def test_imports_in_any_order(module: str) -> None:
    code = (
        f"import {module}\n"
        "from chatkit_asgi.widgets import Card, Text\n"
        "from chatkit_asgi.types import WidgetItem\n"
        "print(Card(children=[Text(value='x')]).model_dump_json())\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '{"type":"Card","children":[{"type":"Text","value":"x"}]}'


def test_every_public_name_is_documented() -> None:
    for name in components.__all__:
        value = getattr(components, name)
        if isinstance(value, type):
            assert value.__doc__, name


def test_every_reference_widget_name_exists() -> None:
    source = Path(ref_widgets.__file__).read_text()
    defined: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {name for name in defined if not name.startswith("_")}
    # WidgetTemplate (.widget files) lives elsewhere.
    assert public - {"WidgetTemplate"} - set(components.__all__) == set()
