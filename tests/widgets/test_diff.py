"""`diff_widget`: the updates between two trees, proven by applying them.

Property-based: random trees, random edits; applying the emitted updates to the
old tree always gives the new tree (compared as the JSON the UI receives). The
updates are the reference's: text deltas, else the whole root (compared with
`chatkit.server.diff_widget` where the reference answers).
"""

from __future__ import annotations

import json
from typing import Any

import chatkit.widgets as ref_widgets
import pytest
from chatkit.server import diff_widget as reference_diff_widget
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from chatkit_asgi.types import (
    ActionConfig,
    ThreadItemUpdatedEvent,
    WidgetRootUpdated,
    WidgetStreamingTextValueDelta,
)
from chatkit_asgi.widgets import (
    Badge,
    BasicRoot,
    Box,
    Button,
    Card,
    Col,
    DynamicWidgetComponent,
    DynamicWidgetRoot,
    ListView,
    ListViewItem,
    Markdown,
    Row,
    Text,
    Title,
    Transition,
    WidgetComponentBase,
    WidgetUpdate,
    apply_updates,
    diff_widget,
)

from ._support import assert_reference_reads

pytestmark = pytest.mark.filterwarnings(
    "ignore:Direct usage of named widget classes is deprecated:DeprecationWarning"
)

WIDGET_UPDATES: TypeAdapter[Any] = TypeAdapter(WidgetUpdate)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def dump(tree: BaseModel) -> Any:
    return json.loads(tree.model_dump_json(exclude_none=True))


def check(before: Any, after: Any) -> list[Any]:
    """The updates from `before` to `after`, proven to rebuild `after`."""
    updates = diff_widget(before, after)
    assert dump(apply_updates(before, updates)) == dump(after)
    return updates


REFERENCE_ROOTS: TypeAdapter[Any] = TypeAdapter(ref_widgets.WidgetRoot)


def as_reference(tree: Any) -> Any:
    """The same tree as openai-chatkit's own classes (read from its JSON)."""
    return REFERENCE_ROOTS.validate_python(dump(tree))


def summary(updates: list[Any]) -> list[Any]:
    """Updates as JSON, whichever library's classes they are."""
    return [json.loads(update.model_dump_json(exclude_none=True)) for update in updates]


# ---------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------


def test_equal_trees_need_no_update() -> None:
    card = Card(children=[Text(id="t", value="hi")])
    assert diff_widget(card, card) == []
    assert diff_widget(card, card.model_copy(deep=True)) == []


def test_appended_text_is_a_value_delta() -> None:
    before = Card(children=[Markdown(id="md", value="Hello", streaming=True)])
    after = Card(children=[Markdown(id="md", value="Hello, world", streaming=True)])

    assert check(before, after) == [
        WidgetStreamingTextValueDelta(component_id="md", delta=", world", done=False)
    ]


def test_a_delta_is_done_when_the_node_is_not_streaming() -> None:
    before = Card(children=[Text(id="t", value="a")])
    after = Card(children=[Text(id="t", value="ab")])
    assert check(before, after) == [
        WidgetStreamingTextValueDelta(component_id="t", delta="b", done=True)
    ]


def test_deltas_for_several_nodes_and_dynamic_text() -> None:
    before = DynamicWidgetRoot(
        type="Card",
        children=[
            DynamicWidgetComponent(type="Text", id="a", value="1"),
            DynamicWidgetComponent(type="Markdown", id="b", value="x", streaming=True),
        ],
    )
    after = DynamicWidgetRoot(
        type="Card",
        children=[
            DynamicWidgetComponent(type="Text", id="a", value="12"),
            DynamicWidgetComponent(type="Markdown", id="b", value="xy", streaming=True),
        ],
    )
    assert check(before, after) == [
        WidgetStreamingTextValueDelta(component_id="a", delta="2", done=True),
        WidgetStreamingTextValueDelta(component_id="b", delta="y", done=False),
    ]


def test_end_of_streaming_replaces_the_root_as_in_the_reference() -> None:
    before = Card(children=[Markdown(id="md", value="Hello", streaming=True)])
    after = Card(children=[Markdown(id="md", value="Hello, world", streaming=False)])
    assert check(before, after) == [WidgetRootUpdated(widget=after)]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # one changed component with an id
        (
            Card(children=[Title(value="Votes"), Row(children=[Badge(id="n", label="1")])]),
            Card(children=[Title(value="Votes"), Row(children=[Badge(id="n", label="2")])]),
        ),
        # a change below an ancestor with an id
        (
            Card(children=[Row(id="row", children=[Badge(label="1"), Badge(label="x")])]),
            Card(children=[Row(id="row", children=[Badge(label="2"), Badge(label="x")])]),
        ),
        # an append to one text node and another change elsewhere
        (
            Card(children=[Text(id="t", value="a"), Badge(id="b", label="1")]),
            Card(children=[Text(id="t", value="ab"), Badge(id="b", label="2")]),
        ),
    ],
)
def test_any_change_but_a_text_append_replaces_the_root(before: Any, after: Any) -> None:
    # `widget.component.updated` is never sent: no reference backend sends it.
    assert check(before, after) == [WidgetRootUpdated(widget=after)]
    theirs = reference_diff_widget(as_reference(before), as_reference(after))
    assert [update.type for update in theirs] == ["widget.root.updated"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # a child added or removed: the shape changed
        (Card(children=[Text(value="a")]), Card(children=[Text(value="a"), Text(value="b")])),
        # the root's own props changed
        (Card(children=[], size="sm"), Card(children=[], size="lg")),
        # a component changed type where no ancestor has an id
        (Card(children=[Text(value="a")]), Card(children=[Title(value="a")])),
        # text appended to a node without id cannot be addressed (the reference
        # sends nothing: the UI would never show it)
        (Card(children=[Text(value="a")]), Card(children=[Text(value="ab")])),
        # text rewritten, not appended (the reference raises ValueError)
        (Card(children=[Text(id="t", value="Hello")]), Card(children=[Text(id="t", value="Bye")])),
        # a text node with an id removed (the reference raises ValueError)
        (Card(children=[Text(id="t", value="a")]), Card(children=[Text(id="u", value="a")])),
        # an id that is not unique cannot be addressed
        (
            Card(children=[Text(id="t", value="a"), Text(id="t", value="b")]),
            Card(children=[Text(id="t", value="ab"), Text(id="t", value="b")]),
        ),
        # a different root class with the same JSON type
        (Card(children=[]), DynamicWidgetRoot(type="Card", children=[])),
    ],
)
def test_shape_changes_replace_the_root(before: Any, after: Any) -> None:
    assert check(before, after) == [WidgetRootUpdated(widget=after)]


def test_json_distinct_values_are_changes() -> None:
    # 1 == True and 1 == 1.0 in Python, but the UI receives different JSON.
    for old, new in [(1, True), (1, 1.0), ({"a": 1}, {"a": True}), ([1], (1,))]:
        before = Card(children=[Button(id="b", onClickAction=ActionConfig(type="x", payload=old))])
        after = Card(children=[Button(id="b", onClickAction=ActionConfig(type="x", payload=new))])
        assert len(check(before, after)) == 1


def test_unchanged_shared_subtrees_are_not_walked() -> None:
    shared = Row(children=[Text(value=str(i)) for i in range(50)])
    before = Card(children=[shared, Text(id="t", value="a")])
    after = Card(children=[shared, Text(id="t", value="ab")])
    assert check(before, after) == [
        WidgetStreamingTextValueDelta(component_id="t", delta="b", done=True)
    ]


def test_every_update_kind_is_valid_for_the_reference() -> None:
    before = Card(children=[Text(id="t", value="a"), Badge(id="b", label="1")])
    after = Card(children=[Text(id="t", value="ab"), Badge(id="b", label="1")])
    updates = [*check(before, after), WidgetRootUpdated(widget=after)]
    assert {update.type for update in updates} == {
        "widget.streaming_text.value_delta",
        "widget.root.updated",
    }
    for update in updates:
        assert_reference_reads(ThreadItemUpdatedEvent(item_id="msg_1", update=update))


def test_apply_updates_still_applies_component_updates_built_by_hand() -> None:
    from chatkit_asgi.types import WidgetComponentUpdated

    tree = Card(children=[Row(children=[Badge(id="n", label="1")])])
    update = WidgetComponentUpdated(component_id="n", component=Badge(id="n", label="2"))
    assert dump(apply_updates(tree, [update])) == dump(
        Card(children=[Row(children=[Badge(id="n", label="2")])])
    )


def test_apply_updates_refuses_ambiguous_or_missing_ids() -> None:
    tree = Card(children=[Text(id="t", value="a"), Text(id="t", value="b")])
    with pytest.raises(LookupError, match="2 components"):
        apply_updates(tree, [WidgetStreamingTextValueDelta(component_id="t", delta="x", done=True)])
    with pytest.raises(LookupError, match="0 components"):
        apply_updates(tree, [WidgetStreamingTextValueDelta(component_id="u", delta="x", done=True)])


def test_apply_updates_leaves_the_tree_alone() -> None:
    tree = Card(children=[Text(id="t", value="a")])
    apply_updates(tree, [WidgetStreamingTextValueDelta(component_id="t", delta="b", done=True)])
    assert tree.children[0].value == "a"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------
# Random trees
# ---------------------------------------------------------------------------

IDS = st.one_of(st.none(), st.none(), st.sampled_from(["a", "b", "c", "d", "e", "f"]))
WORDS = st.text(alphabet='ab "\\é\n', max_size=5)
STREAMING = st.sampled_from([None, True, False])
PAYLOADS = st.one_of(
    st.none(),
    st.integers(0, 2),
    st.booleans(),
    st.sampled_from([1.0, 0.5]),
    st.dictionaries(st.sampled_from(["k", "n"]), st.integers(0, 1) | st.booleans(), max_size=2),
)

texts = st.builds(
    Text, id=IDS, value=WORDS, streaming=STREAMING, size=st.sampled_from([None, "sm"])
)
markdowns = st.builds(Markdown, id=IDS, value=WORDS, streaming=STREAMING)
badges = st.builds(Badge, id=IDS, label=WORDS, color=st.sampled_from([None, "success", "danger"]))
buttons = st.builds(
    Button,
    id=IDS,
    label=WORDS,
    onClickAction=st.none() | st.builds(ActionConfig, type=st.just("act"), payload=PAYLOADS),
)
dynamic_texts = st.builds(
    lambda id_, value, streaming: DynamicWidgetComponent(
        type="Text", id=id_, value=value, streaming=streaming
    ),
    IDS,
    WORDS,
    STREAMING,
)
dynamic_leaves = st.builds(
    lambda id_, glow: DynamicWidgetComponent(type="Sparkle", id=id_, glow=glow), IDS, PAYLOADS
)
leaves = st.one_of(texts, markdowns, badges, buttons, dynamic_leaves)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    lists = st.lists(children, max_size=3)
    return st.one_of(
        st.builds(Row, id=IDS, children=lists, gap=st.sampled_from([None, 1, 2])),
        st.builds(Col, id=IDS, children=lists),
        st.builds(Box, id=IDS, children=st.none() | lists),
        st.builds(Transition, id=IDS, children=st.none() | children),
        st.builds(
            lambda id_, kids: DynamicWidgetComponent(type="Stack", id=id_, children=kids),
            IDS,
            st.lists(st.one_of(dynamic_texts, dynamic_leaves), max_size=3),
        ),
    )


components = st.recursive(leaves, _containers, max_leaves=8)
list_view_items = st.builds(ListViewItem, id=IDS, children=st.lists(components, max_size=2))
roots = st.one_of(
    st.builds(
        Card, id=IDS, children=st.lists(components, max_size=4), size=st.sampled_from([None, "sm"])
    ),
    st.builds(BasicRoot, children=st.lists(st.one_of(dynamic_texts, dynamic_leaves), max_size=3)),
    st.builds(
        ListView, children=st.lists(list_view_items, max_size=3), limit=st.none() | st.just(2)
    ),
)

# ---------------------------------------------------------------------------
# Random edits: copy-on-write along the edited path, so untouched nodes are shared
# ---------------------------------------------------------------------------

Path = list[tuple[Any, Any]]  # (node, slot in the parent's children: index, "single" or None)


def paths(tree: Any) -> list[Path]:
    found: list[Path] = []

    def walk(node: Any, path: Path) -> None:
        found.append(path)
        children = node.__dict__.get("children")
        if isinstance(children, list):
            for index, child in enumerate(children):
                walk(child, [*path, (child, index)])
        elif isinstance(children, WidgetComponentBase):
            walk(children, [*path, (children, "single")])

    walk(tree, [(tree, None)])
    return found


def rebuild(path: Path, new_node: Any) -> Any:
    """The tree with the last node of `path` replaced, sharing everything else."""
    node = new_node
    for depth in range(len(path) - 1, 0, -1):
        slot = path[depth][1]
        parent = path[depth - 1][0]
        if slot == "single":
            children: Any = node
        else:
            children = list(parent.children)
            children[slot] = node
        node = parent.model_copy(update={"children": children})
    return node


def child_strategy(parent: Any) -> st.SearchStrategy[Any]:
    """What may stand in `parent`'s children, by the parent's field types."""
    if isinstance(parent, ListView):
        return list_view_items
    if type(parent) in (DynamicWidgetComponent, BasicRoot):
        return st.one_of(dynamic_texts, dynamic_leaves)
    return components


def text_value(node: Any) -> str | None:
    value = getattr(node, "value", None)
    if node.type in {"Text", "Markdown"} and isinstance(value, str):
        return value
    return None


def edit(tree: Any, data: st.DataObject) -> Any:
    candidates = paths(tree)
    if len(candidates) > 1 and data.draw(st.integers(0, 3)):
        candidates = candidates[1:]  # mostly below the root, where updates can be small
    path = data.draw(st.sampled_from(candidates))
    node = path[-1][0]
    parent = path[-2][0] if len(path) > 1 else None
    choices = ["prop", "id", "key", "replace"]
    if text_value(node) is not None:
        choices += ["append", "append", "streaming"]
    if isinstance(node.__dict__.get("children"), list):
        choices += ["insert", "remove"]
    kind = data.draw(st.sampled_from(choices))
    if kind == "append":
        return rebuild(path, node.model_copy(update={"value": text_value(node) + data.draw(WORDS)}))
    if kind == "streaming":
        return rebuild(path, node.model_copy(update={"streaming": data.draw(STREAMING)}))
    if kind == "id":
        return rebuild(path, node.model_copy(update={"id": data.draw(IDS)}))
    if kind == "key":
        return rebuild(path, node.model_copy(update={"key": data.draw(st.none() | st.just("k"))}))
    if kind == "prop":
        if text_value(node) is not None:
            return rebuild(path, node.model_copy(update={"value": data.draw(WORDS)}))
        if isinstance(node, Button):
            action = data.draw(
                st.none() | st.builds(ActionConfig, type=st.just("act"), payload=PAYLOADS)
            )
            return rebuild(path, node.model_copy(update={"onClickAction": action}))
        if isinstance(node, DynamicWidgetComponent) and node.type == "Sparkle":
            return rebuild(path, node.model_copy(update={"glow": data.draw(PAYLOADS)}))
        return rebuild(path, node.model_copy(update={"key": "prop"}))
    if kind == "insert":
        children = list(node.children)
        index = data.draw(st.integers(0, len(children)))
        children.insert(index, data.draw(child_strategy(node)))
        return rebuild(path, node.model_copy(update={"children": children}))
    if kind == "remove":
        children = list(node.children)
        if children:
            del children[data.draw(st.integers(0, len(children) - 1))]
        return rebuild(path, node.model_copy(update={"children": children}))
    # replace: a whole new node of a kind that fits the slot
    if parent is None:
        return data.draw(roots)
    if path[-1][1] == "single":
        return rebuild(path, data.draw(components))
    return rebuild(path, data.draw(child_strategy(parent)))


@PROPERTY
@given(tree=roots, data=st.data())
def test_applying_the_updates_always_rebuilds_the_new_tree(tree: Any, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        tree = unique_ids(tree)  # addressable everywhere, as a careful author writes them
    after = tree
    for _ in range(data.draw(st.integers(1, 3))):
        after = edit(after, data)
    if data.draw(st.booleans()):
        after = after.model_copy(deep=True)  # nothing shared: equality, not identity
    updates = check(tree, after)
    event(" + ".join(sorted({update.type for update in updates})) or "no update")


@PROPERTY
@given(tree=roots, data=st.data())
def test_a_tree_against_itself_or_its_copy_needs_nothing(tree: Any, data: st.DataObject) -> None:
    assert diff_widget(tree, tree) == []
    assert diff_widget(tree, tree.model_copy(deep=True)) == []


def unique_ids(tree: Any, *, texts_only: bool = False) -> Any:
    """`tree` with unique ids on every component (or on text nodes only, others cleared)."""
    for number in range(1, len(paths(tree))):
        path = paths(tree)[number]  # (the shape stays the same, only ids change)
        node = path[-1][0]
        wanted = not texts_only or text_value(node) is not None
        tree = rebuild(path, node.model_copy(update={"id": f"n{number}" if wanted else None}))
    return tree


@PROPERTY
@given(tree=roots, data=st.data())
def test_text_appends_are_value_deltas_only(tree: Any, data: st.DataObject) -> None:
    before = unique_ids(tree, texts_only=True)
    text_paths = [path for path in paths(before) if text_value(path[-1][0]) is not None]
    assume(text_paths)
    chosen = data.draw(st.lists(st.sampled_from(text_paths), unique_by=id, min_size=1, max_size=3))
    appended: dict[str, str] = {}
    after = before
    for path in chosen:
        node = path[-1][0]
        suffix = data.draw(st.text(alphabet='ab "\\é\n', min_size=1, max_size=5))
        appended[node.id] = suffix
        current = next(p for p in paths(after) if p[-1][0].id == node.id)
        after = rebuild(current, node.model_copy(update={"value": node.value + suffix}))

    updates = check(before, after)
    event(f"{len(updates)} deltas")

    assert all(isinstance(update, WidgetStreamingTextValueDelta) for update in updates)
    assert {update.component_id: update.delta for update in updates} == appended


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=roots, data=st.data())
def test_random_updates_are_valid_for_the_reference(tree: Any, data: st.DataObject) -> None:
    after = edit(tree, data)
    for update in check(tree, after):
        assert_reference_reads(ThreadItemUpdatedEvent(item_id="msg_1", update=update))


@PROPERTY
@given(tree=roots, data=st.data())
def test_where_the_reference_loses_nothing_the_updates_are_the_reference_s(
    tree: Any, data: st.DataObject
) -> None:
    before = unique_ids(tree, texts_only=data.draw(st.booleans()))
    after = before
    for _ in range(data.draw(st.integers(1, 2))):
        after = edit(after, data)
    # Both trees as the reference's classes: its diff compares its own component types.
    before_json, after_json = as_reference(before), as_reference(after)
    try:
        theirs = reference_diff_widget(before_json, after_json)
    except (ValueError, AttributeError):  # (AttributeError: an unset dynamic prop)
        event("the reference raises")
        assume(False)
    ours = check(before, after)
    rebuilt_by_theirs = REFERENCE_ROOTS.validate_python(
        dump(apply_updates(before, [*map(WIDGET_UPDATES.validate_python, summary(theirs))]))
    )
    # (Where the reference's updates do not rebuild the new tree, it lost a change.)
    assume(dump(rebuilt_by_theirs) == dump(after))
    event(" + ".join(sorted({update.type for update in ours})) or "no update")

    assert summary(ours) == summary(theirs)
