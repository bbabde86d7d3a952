"""The updates that turn one widget tree into the next, as openai-chatkit sends them.

`diff_widget(before, after)` walks both trees side by side and answers with:

* nothing, when the trees are the same;
* `widget.streaming_text.value_delta` for each `Text` / `Markdown` node with an
  `id` whose `value` only grew at its end (nothing else about it changed); its
  `done` is true unless the node is still `streaming` (the reference's rule);
* otherwise `widget.root.updated` with the whole new tree: any other change, the
  end of a stream (`streaming` turned off) included.

These are the reference's rules (`chatkit.server.diff_widget`), so the ChatKit UI
receives the same updates from a ported app. Where the reference loses a change
or raises, the whole tree is sent instead: text appended to a node without an
`id` (the reference sends nothing, so the UI never shows it), an `id`'d text
node removed or rewritten (the reference raises `ValueError`), and an `id` that
names more than one component (a delta would be ambiguous).

`widget.component.updated` is never emitted: no reference backend sends it, so
how the UI applies it is untested in the wild, and a streamed widget ends with
`thread.item.done` carrying the whole tree anyway. `apply_updates` still applies
it, for updates built by hand.

The comparison works on the models' attributes (no serialization), and subtrees
that are the very same objects in both states are skipped: build successive
states as copies (`model_copy(update=...)`) instead of mutating the state you
last yielded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from ..types.components import WidgetComponentBase, WidgetRoot
from ..types.events import WidgetComponentUpdated, WidgetRootUpdated, WidgetStreamingTextValueDelta

__all__ = ["WidgetUpdate", "apply_updates", "diff_widget"]

WidgetUpdate = WidgetStreamingTextValueDelta | WidgetComponentUpdated | WidgetRootUpdated
"""An update `diff_widget` emits for a widget item (`ThreadItemUpdatedEvent.update`)."""

_STREAMING_TEXT_TYPES = frozenset({"Text", "Markdown"})


def diff_widget(before: WidgetRoot, after: WidgetRoot) -> list[WidgetUpdate]:
    """The updates that turn `before` into `after` for a client showing `before`.

    Applying them in order (see `apply_updates`) gives a tree whose JSON is the
    JSON of `after`.
    """
    if before is after:
        return []
    updates: list[WidgetUpdate] = []
    if not _diff_node(before, after, updates):
        return [WidgetRootUpdated(widget=after)]
    if updates:
        addressed = {_component_id(update) for update in updates}
        if not (_named_once(before, addressed) and _named_once(after, addressed)):
            return [WidgetRootUpdated(widget=after)]
    return updates


def apply_updates(tree: WidgetRoot, updates: Iterable[WidgetUpdate]) -> WidgetRoot:
    """The tree a client shows after applying `updates` to `tree` (which is not changed).

    Id-addressed updates must name exactly one component, as the UI needs.
    """
    result: WidgetRoot = tree.model_copy(deep=True)
    for update in updates:
        if isinstance(update, WidgetRootUpdated):
            result = update.widget.model_copy(deep=True)
            continue
        parent, slot, node = _find(result, update.component_id)
        if isinstance(update, WidgetComponentUpdated):
            replacement = update.component.model_copy(deep=True)
            if parent is None:
                raise LookupError("the root is replaced with widget.root.updated, not by id")
            if slot is None:
                parent.children = replacement
            else:
                parent.children[slot] = replacement
        else:
            value = getattr(node, "value", None)
            if not isinstance(value, str):
                raise LookupError(f"component {update.component_id!r} has no text value")
            node.value = value + update.delta
    return result


# ---------------------------------------------------------------------------
# The walk
# ---------------------------------------------------------------------------


def _diff_node(before: Any, after: Any, out: list[WidgetUpdate]) -> bool:
    """Append the updates of one node pair to `out`; False when it must be replaced whole."""
    if before is after:
        return True
    if (
        type(before) is not type(after)
        or before.type != after.type
        or before.id != after.id
        or before.key != after.key
    ):
        return False
    text_node = before.type in _STREAMING_TEXT_TYPES and before.id is not None
    delta: str | None = None
    for props_before, props_after in (
        (before.__dict__, after.__dict__),
        (before.__pydantic_extra__ or {}, after.__pydantic_extra__ or {}),
    ):
        if props_before.keys() != props_after.keys():
            return False
        for name, value_before in props_before.items():
            if name == "children":
                continue
            value_after = props_after[name]
            # (`is` first: most props are None or shared, and this loop is the hot path.)
            if value_before is value_after or _same(value_before, value_after):
                continue
            if (
                name == "value"
                and text_node
                and type(value_before) is str
                and type(value_after) is str
                and value_after.startswith(value_before)
            ):
                delta = value_after[len(value_before) :]
                continue
            return False
    children_before = before.__dict__.get("children")
    children_after = after.__dict__.get("children")
    if children_before is not children_after:
        if isinstance(children_before, list) and isinstance(children_after, list):
            if len(children_before) != len(children_after):
                return False
            for child_before, child_after in zip(children_before, children_after, strict=True):
                if not _diff_child(child_before, child_after, out):
                    return False
        elif isinstance(children_before, WidgetComponentBase) and isinstance(
            children_after, WidgetComponentBase
        ):
            if not _diff_child(children_before, children_after, out):
                return False
        elif not _same(children_before, children_after):
            return False
    if delta is not None:
        out.append(
            WidgetStreamingTextValueDelta(
                component_id=after.id,
                delta=delta,
                done=not getattr(after, "streaming", None),
            )
        )
    return True


def _diff_child(before: Any, after: Any, out: list[WidgetUpdate]) -> bool:
    """Like `_diff_node`, for a child slot (which may hold a plain value)."""
    if before is after:
        return True
    if not (isinstance(before, WidgetComponentBase) and isinstance(after, WidgetComponentBase)):
        return _same(before, after)
    return _diff_node(before, after, out)


def _same(a: Any, b: Any) -> bool:
    """Whether two prop values write the same JSON (`1`, `1.0` and `True` differ)."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is str or kind is int or kind is bool or kind is float:
        return bool(a == b)
    if kind is dict:
        return len(a) == len(b) and all(k in b and _same(v, b[k]) for k, v in a.items())
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, BaseModel):
        return _same(a.__dict__, b.__dict__) and _same(
            a.__pydantic_extra__ or {}, b.__pydantic_extra__ or {}
        )
    return bool(a == b)


# ---------------------------------------------------------------------------
# Addressing by id
# ---------------------------------------------------------------------------


def _component_id(update: WidgetUpdate) -> str:
    assert not isinstance(update, WidgetRootUpdated)
    return update.component_id


def _nodes(tree: Any) -> Iterator[tuple[Any, int | None, Any]]:
    """Every component of `tree` as (parent, slot in parent's children, node), root first."""
    stack: list[tuple[Any, int | None, Any]] = [(None, None, tree)]
    while stack:
        parent, slot, node = stack.pop()
        yield parent, slot, node
        children = node.__dict__.get("children")
        if isinstance(children, list):
            stack.extend(
                (node, index, child)
                for index, child in reversed(list(enumerate(children)))
                if isinstance(child, WidgetComponentBase)
            )
        elif isinstance(children, WidgetComponentBase):
            stack.append((node, None, children))


def _named_once(tree: Any, ids: set[str]) -> bool:
    """Whether each of `ids` names exactly one component of `tree`."""
    # Runs on every streamed state: a bare loop, no per-node tuples or generators.
    counts = dict.fromkeys(ids, 0)
    stack = [tree]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        node = pop()
        node_id = getattr(node, "id", None)
        if node_id is not None and node_id in counts:
            if counts[node_id]:
                return False
            counts[node_id] = 1
        children = getattr(node, "__dict__", {}).get("children")
        if type(children) is list:
            extend(children)
        elif children is not None:
            push(children)
    return all(counts.values())


def _find(tree: Any, component_id: str) -> tuple[Any, int | None, Any]:
    matches: Sequence[tuple[Any, int | None, Any]] = [
        entry for entry in _nodes(tree) if entry[2].id == component_id
    ]
    if len(matches) != 1:
        raise LookupError(
            f"{len(matches)} components have the id {component_id!r}; an update needs exactly one"
        )
    return matches[0]
