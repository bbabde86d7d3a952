"""Widgets: typed component models, `.widget` templates, diffing and streaming of trees."""

from typing import TYPE_CHECKING, Any

# `chatkit_asgi.types` re-exports the components and its item/event models use
# them; loading it first keeps the import order the same whichever package a
# program imports first (components -> types.icons would otherwise re-enter a
# half-initialized `chatkit_asgi.types`).
import chatkit_asgi.types  # noqa: F401

from .components import *  # noqa: F403
from .components import __all__ as _component_names

if TYPE_CHECKING:
    from .diff import WidgetUpdate as WidgetUpdate
    from .diff import apply_updates as apply_updates
    from .diff import diff_widget as diff_widget
    from .streaming import accumulate_text as accumulate_text
    from .streaming import replace_widget as replace_widget
    from .streaming import stream_widget as stream_widget
    from .streaming import text_deltas as text_deltas
    from .templates import WidgetDataError as WidgetDataError
    from .templates import WidgetTemplate as WidgetTemplate
    from .templates import WidgetTemplateError as WidgetTemplateError

# Loaded on first use: `diff` and `streaming` need the event and item types, which
# are still being defined while `chatkit_asgi.types` imports the components above,
# and `templates` needs the optional `widgets` extra (jinja2, jsonschema).
_LAZY = {
    "WidgetUpdate": "diff",
    "apply_updates": "diff",
    "diff_widget": "diff",
    "accumulate_text": "streaming",
    "replace_widget": "streaming",
    "stream_widget": "streaming",
    "text_deltas": "streaming",
    "WidgetDataError": "templates",
    "WidgetTemplate": "templates",
    "WidgetTemplateError": "templates",
}

__all__ = [*_component_names, *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
