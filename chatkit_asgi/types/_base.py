"""Shared building blocks of the wire models: aware datetimes and pages."""

from __future__ import annotations

import copy
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel

__all__ = ["Page", "UtcDatetime", "copy_model", "to_wire_json"]

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


M = TypeVar("M", bound=BaseModel)

_IMMUTABLE = (str, int, float, bool, type(None), bytes, datetime, date, time, timedelta, Enum)
_set_attr = object.__setattr__


def copy_model(model: M) -> M:
    """A deep copy of a wire model, equal to `model.model_copy(deep=True)`.

    About three times faster (it runs once per reply and per streamed item):
    JSON-like values are copied by type instead of through `copy.deepcopy`'s memo
    and reduce protocol; anything else still goes through `copy.deepcopy`.
    """
    return _copy_value(model)  # type: ignore[no-any-return]


def _copy_value(value: Any) -> Any:
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, BaseModel):
        cls = type(value)
        new = cls.__new__(cls)
        # The same four slots pydantic's own model_copy fills.
        _set_attr(new, "__dict__", {k: _copy_value(v) for k, v in value.__dict__.items()})
        _set_attr(new, "__pydantic_extra__", _copy_value(value.__pydantic_extra__))
        _set_attr(new, "__pydantic_fields_set__", set(value.__pydantic_fields_set__))
        _set_attr(new, "__pydantic_private__", _copy_value(value.__pydantic_private__))
        return new
    if type(value) is list:
        return [_copy_value(v) for v in value]
    if type(value) is dict:
        return {k: _copy_value(v) for k, v in value.items()}
    return copy.deepcopy(value)
