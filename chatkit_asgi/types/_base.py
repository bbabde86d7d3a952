"""Shared building blocks of the wire models: aware datetimes and pages."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel

__all__ = ["Page", "UtcDatetime", "to_wire_json"]

T = TypeVar("T")


def _to_utc(value: datetime) -> datetime:
    # Naive datetimes (datetime.now() in user code, or the reference's stores) are
    # local time; the wire carries aware UTC so every client reads the same instant.
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
"""A datetime normalized to timezone-aware UTC on the way in."""


class Page(BaseModel, Generic[T]):
    """One page of a listing: `data`, whether more follow, and the cursor to continue."""

    data: list[T] = []  # pydantic copies defaults per instance
    has_more: bool = False
    after: str | None = None


_WIRE_CONTEXT = {"wire": True}


def to_wire_json(model: BaseModel) -> bytes:
    """JSON as the ChatKit UI expects it: aliases, no `None` fields, no attachment metadata."""
    # The serializer writes bytes directly; model_dump_json would decode them to str first.
    return model.__pydantic_serializer__.to_json(
        model, by_alias=True, exclude_none=True, context=_WIRE_CONTEXT
    )
