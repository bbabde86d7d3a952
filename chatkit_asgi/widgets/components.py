"""Widget component models: the tree a `WidgetItem` carries.

PLACEHOLDER: the full typed component set is being written; the names below are
the stable public contract.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "DynamicWidgetComponent",
    "DynamicWidgetRoot",
    "WidgetComponent",
    "WidgetComponentBase",
    "WidgetRoot",
]


class WidgetComponentBase(BaseModel):
    """Fields every component has."""

    key: str | None = None
    id: str | None = None
    type: str


class DynamicWidgetComponent(WidgetComponentBase):
    """A component whose extra fields are kept as given (template output)."""

    model_config = ConfigDict(extra="allow")
    children: DynamicWidgetComponent | list[DynamicWidgetComponent] | None = None


class DynamicWidgetRoot(DynamicWidgetComponent):
    """A root component of a dynamic tree."""

    type: Literal["Card", "ListView", "Basic"]  # type: ignore[assignment]


WidgetComponent = DynamicWidgetComponent
WidgetRoot = DynamicWidgetRoot
