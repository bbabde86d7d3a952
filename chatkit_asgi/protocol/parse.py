"""Request parsing: a body to a typed request, with precise errors and JSON hardening.

pydantic's JSON parser tolerates what JSON does not mean one way (duplicate keys,
NaN, numbers too large for a float); a gateway in front of us may read such a body
differently than we do, so those are refused too.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn, get_args

from pydantic import TypeAdapter, ValidationError

from ..errors import InvalidRequestError
from ..types import ChatKitReq

__all__ = ["REQUEST_MODELS", "parse_request"]

_REQUEST_ADAPTER: TypeAdapter[ChatKitReq] = TypeAdapter(ChatKitReq)


def _union_members(annotated: Any) -> tuple[type[Any], ...]:
    union = get_args(annotated)[0]  # Annotated[A | B | ..., Field(discriminator=...)]
    return get_args(union)


REQUEST_MODELS: tuple[type[Any], ...] = _union_members(ChatKitReq)
"""Every request model of the protocol, read from the request union."""

_KNOWN_TYPES = frozenset(model.model_fields["type"].default for model in REQUEST_MODELS)


def parse_request(body: bytes) -> ChatKitReq:
    """Validate a request body; `InvalidRequestError` says precisely what is wrong."""
    try:
        request = _REQUEST_ADAPTER.validate_json(body)
    except ValidationError as exc:
        # A body that is not JSON is reported as such, whatever else is wrong with it.
        _reject_ambiguous_json(body, other_errors=False)
        raise _describe(exc, body) from None
    _reject_ambiguous_json(body, other_errors=True)
    return request


def _describe(exc: ValidationError, body: bytes) -> InvalidRequestError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0] if errors else {"type": ""}
    if first["type"] == "json_invalid":
        return InvalidRequestError(
            "The request body is not valid JSON", code="invalid_json", details=errors
        )
    if first["type"] == "model_attributes_type" or first["type"] == "model_type":
        return InvalidRequestError(
            "The request body must be a JSON object", code="invalid_request", details=errors
        )
    if first["type"] in ("union_tag_invalid", "union_tag_not_found") and not first["loc"]:
        try:
            tag = json.loads(body).get("type")
        except (ValueError, AttributeError):
            tag = None
        if first["type"] == "union_tag_not_found":
            return InvalidRequestError(
                "The request has no `type`", code="invalid_request", details=errors
            )
        return InvalidRequestError(
            f"Unknown request type {tag!r}; known types: {', '.join(sorted(_KNOWN_TYPES))}",
            code="unknown_request_type",
            details=errors,
        )
    return InvalidRequestError(
        "The request does not match the schema of its type",
        code="invalid_request",
        details=errors,
    )


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _AmbiguousJSON(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> NoReturn:
    raise _AmbiguousJSON(f"{name} is not JSON")


class _AmbiguousJSON(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _AmbiguousJSON(f"{text} is too large for a JSON number")
    return value


def _reject_ambiguous_json(body: bytes, *, other_errors: bool) -> None:
    """Refuse what pydantic's parser tolerates but JSON does not mean one way.

    Duplicate keys are read differently by different parsers (a gateway may see
    another request than we run), and NaN/Infinity (also spelled 1e400) are not
    JSON numbers. With `other_errors`, any failure of this stdlib parse is invalid
    JSON; without (the body already failed pydantic), plain syntax errors are left
    to pydantic's more precise report.
    """
    try:
        json.loads(
            body,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError) as exc:
        if not isinstance(exc, _AmbiguousJSON | RecursionError) and not other_errors:
            return
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidRequestError(
            f"The request body is not valid JSON: {reason}", code="invalid_json"
        ) from None
