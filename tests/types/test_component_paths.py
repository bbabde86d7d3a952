"""Widget component models: one home in `chatkit_asgi.types`, the same objects on every path."""

from __future__ import annotations

import ast
import base64
import pickle
from datetime import datetime, timezone
from pathlib import Path

import pytest

import chatkit_asgi.types
import chatkit_asgi.types.components
import chatkit_asgi.widgets
import chatkit_asgi.widgets.components
from chatkit_asgi.types import WidgetItem

COMPONENT_NAMES = chatkit_asgi.types.components.__all__

# A `WidgetItem` holding `Card(children=[Title(value="Paris"), Text(value="21 °C",
# streaming=False)])`, pickled (protocol 5) by the release that defined the component
# models in `chatkit_asgi.widgets.components`: the pickle names that module.
PICKLED_BEFORE_THE_MOVE = base64.b64decode(
    "gAWVFAMAAAAAAACMGGNoYXRraXRfYXNnaS50eXBlcy5pdGVtc5SMCldpZGdldEl0ZW2Uk5QpgZR9lCiMCF9f"
    "ZGljdF9flH2UKIwCaWSUjAVtc2dfMZSMCXRocmVhZF9pZJSMBXRocl8xlIwKY3JlYXRlZF9hdJSMCGRhdGV0"
    "aW1llIwIZGF0ZXRpbWWUk5RDCgfqAQIAAAAAAACUaAyMCHRpbWV6b25llJOUaAyMCXRpbWVkZWx0YZSTlEsA"
    "SwBLAIeUUpSFlFKUhpRSlIwEdHlwZZSMBndpZGdldJRoG4wfY2hhdGtpdF9hc2dpLndpZGdldHMuY29tcG9u"
    "ZW50c5SMBENhcmSUk5QpgZR9lChoBX2UKIwDa2V5lE5oB05oGmgdjAZhc0Zvcm2UTowIY2hpbGRyZW6UXZQo"
    "aByMBVRpdGxllJOUKYGUfZQoaAV9lChoIk5oB05oGmgmjAV2YWx1ZZSMBVBhcmlzlIwFY29sb3KUTowGd2Vp"
    "Z2h0lE6MBHNpemWUTowJdGV4dEFsaWdulE6MCHRydW5jYXRllE6MCG1heExpbmVzlE51jBJfX3B5ZGFudGlj"
    "X2V4dHJhX1+UTowXX19weWRhbnRpY19maWVsZHNfc2V0X1+Uj5QoaCuQjBRfX3B5ZGFudGljX3ByaXZhdGVf"
    "X5ROdWJoHIwEVGV4dJSTlCmBlH2UKGgFfZQoaCJOaAdOaBpoN2grjAYyMSDCsEOUjAlzdHJlYW1pbmeUiYwG"
    "aXRhbGljlE6MC2xpbmVUaHJvdWdolE5oLU5oLk6MBXdpZHRolE5oL05oME5oMU6MCG1pbkxpbmVzlE5oMk6M"
    "CGVkaXRhYmxllE51aDNOaDSPlChoPWgrkGg2TnViZYwKYmFja2dyb3VuZJROaC9OjAdwYWRkaW5nlE6MBnN0"
    "YXR1c5ROjAljb2xsYXBzZWSUTowHY29uZmlybZROjAZjYW5jZWyUTowFdGhlbWWUTnVoM05oNI+UKGgkkGg2"
    "TnVijAljb3B5X3RleHSUaCx1aDNOaDSPlChoCWgHaAtoTGgbkGg2TnViLg=="
)


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_every_component_name_is_one_object_on_every_path(name: str) -> None:
    defined = getattr(chatkit_asgi.types.components, name)
    assert getattr(chatkit_asgi.types, name) is defined
    assert getattr(chatkit_asgi.widgets, name) is defined
    assert getattr(chatkit_asgi.widgets.components, name) is defined


def test_every_path_lists_the_component_names() -> None:
    assert set(COMPONENT_NAMES) <= set(chatkit_asgi.types.__all__)
    assert set(COMPONENT_NAMES) <= set(chatkit_asgi.widgets.__all__)
    assert list(chatkit_asgi.widgets.components.__all__) == list(COMPONENT_NAMES)


def test_classes_are_defined_with_the_types() -> None:
    assert chatkit_asgi.widgets.Card.__module__ == "chatkit_asgi.types.components"


def test_a_pickle_from_before_the_move_loads_into_the_same_classes() -> None:
    assert b"chatkit_asgi.widgets.components" in PICKLED_BEFORE_THE_MOVE
    item = pickle.loads(PICKLED_BEFORE_THE_MOVE)
    assert isinstance(item, WidgetItem)
    assert type(item.widget) is chatkit_asgi.widgets.Card
    assert [type(child) for child in item.widget.children] == [
        chatkit_asgi.types.Title,
        chatkit_asgi.types.Text,
    ]
    assert item.widget.model_dump(exclude_none=True) == {
        "type": "Card",
        "children": [
            {"type": "Title", "value": "Paris"},
            {"type": "Text", "value": "21 °C", "streaming": False},
        ],
    }


def test_a_widget_item_pickles_round_trip() -> None:
    w = chatkit_asgi.widgets
    item = WidgetItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
        widget=w.Card(children=[w.Title(value="Paris"), w.Text(value="21 °C")]),
    )
    again = pickle.loads(pickle.dumps(item))
    assert again == item
    assert type(again.widget) is w.Card


def _imported_modules(package: Path) -> dict[str, set[str]]:
    """Each module of `package` with the absolute names it imports, wherever written
    (top level, `if TYPE_CHECKING:`, inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = ["chatkit_asgi", *path.relative_to(package.parent).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
        found[".".join(parts)] = names
    return found


def test_types_import_nothing_from_widgets() -> None:
    types_dir = Path(chatkit_asgi.types.__file__).parent
    upward = {
        module: sorted(name for name in names if name.startswith("chatkit_asgi.widgets"))
        for module, names in _imported_modules(types_dir).items()
    }
    assert {module: names for module, names in upward.items() if names} == {}


def test_widget_streaming_does_not_import_the_core() -> None:
    # `chatkit_asgi.turn` calls into `widgets.streaming`, so an import back from it
    # (or from the engine behind it) would close an import circle.
    widgets_dir = Path(chatkit_asgi.widgets.__file__).parent
    imported = _imported_modules(widgets_dir)["chatkit_asgi.widgets.streaming"]
    allowed = ("chatkit_asgi.store", "chatkit_asgi.types", "chatkit_asgi.widgets")
    assert (
        sorted(n for n in imported if n.startswith("chatkit_asgi") and not n.startswith(allowed))
        == []
    )
