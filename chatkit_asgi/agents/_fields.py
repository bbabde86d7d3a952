"""Reading the Agents SDK's stream events field by field.

The events are not always the openai classes: the SDK's Chat Completions handler,
LiteLLM and tests send look-alike objects, and replayed input items are dicts. So
fields are read by name, and a missing or odd value reads as empty.
"""

from __future__ import annotations

from typing import Any

__all__ = ["field_of", "index_of", "text_of"]


def text_of(value: object) -> str:
    """A text field: "" unless it is a string."""
    return value if isinstance(value, str) else ""


def index_of(value: object) -> int:
    """An index field: 0 unless it is an integer."""
    return value if isinstance(value, int) else 0


def field_of(obj: object, name: str) -> Any:
    """A field of a model object or of its dict form."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
