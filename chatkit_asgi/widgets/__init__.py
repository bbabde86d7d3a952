"""Widgets: typed component models, `.widget` templates, diffing and streaming of trees.

The component models are wire models and live in `chatkit_asgi.types`; they are
re-exported here (the same objects) beside the tools that build on them.
"""

from typing import TYPE_CHECKING, Any

from .components import *  # noqa: F403
from .components import __all__ as _component_names
from .diff import WidgetUpdate, apply_updates, diff_widget
from .streaming import accumulate_text, replace_widget, stream_widget, text_deltas

if TYPE_CHECKING:
    from .templates import WidgetDataError as WidgetDataError
    from .templates import WidgetTemplate as WidgetTemplate
    from .templates import WidgetTemplateError as WidgetTemplateError

# Templates need the optional `widgets` extra (jinja2, jsonschema), and loading it
# costs about a fifth of `import chatkit_asgi`: they load on first use, so that
# `import chatkit_asgi.widgets` works without the extra and stays cheap.
_TEMPLATE_NAMES = ("WidgetDataError", "WidgetTemplate", "WidgetTemplateError")

__all__ = [
    *_component_names,
    "WidgetUpdate",
    "accumulate_text",
    "apply_updates",
    "diff_widget",
    "replace_widget",
    "stream_widget",
    "text_deltas",
    *_TEMPLATE_NAMES,
]


def __getattr__(name: str) -> Any:
    if name not in _TEMPLATE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import templates

    value = getattr(templates, name)
    globals()[name] = value
    return value
