"""Icon names the ChatKit UI knows, plus `vendor:` and `lucide:` icons."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

__all__ = ["IconName", "LucideIconName", "VendorIconName"]

VendorIconName = Annotated[str, StringConstraints(pattern=r"^vendor:")]
"""An icon from the integrator's own set, written `vendor:<name>`."""

LucideIconName = Annotated[str, StringConstraints(pattern=r"^lucide:")]
"""An icon from the Lucide set, written `lucide:<name>`."""

IconName = (
    Literal[
        "agent",
        "analytics",
        "atom",
        "batch",
        "bolt",
        "book-open",
        "book-closed",
        "book-clock",
        "bug",
        "calendar",
        "chart",
        "check",
        "check-circle",
        "check-circle-filled",
        "chevron-left",
        "chevron-right",
        "circle-question",
        "clock",
        "compass",
        "confetti",
        "cube",
        "desktop",
        "document",
        "dot",
        "dots-horizontal",
        "dots-vertical",
        "empty-circle",
        "external-link",
        "globe",
        "keys",
        "lab",
        "images",
        "info",
        "lifesaver",
        "lightbulb",
        "mail",
        "map-pin",
        "maps",
        "mobile",
        "name",
        "notebook",
        "notebook-pencil",
        "page-blank",
        "phone",
        "play",
        "plus",
        "profile",
        "profile-card",
        "reload",
        "star",
        "star-filled",
        "search",
        "sparkle",
        "sparkle-double",
        "square-code",
        "square-image",
        "square-text",
        "suitcase",
        "settings-slider",
        "user",
        "wreath",
        "write",
        "write-alt",
        "write-alt2",
    ]
    | VendorIconName
    | LucideIconName
)
"""Any icon name the UI renders."""
