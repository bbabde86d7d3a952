"""The table from request model to the function that answers it.

Each handler module keeps a `Handlers` and registers one function per request
type with `@handlers.on(Model)`; `Engine` merges them and checks the result
against the request union, so a request type without a handler (or with two)
fails at import, not at the first request of that type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from .._reply import JSONResult, StreamPlan
from .services import Call, Services

__all__ = ["Handler", "Handlers", "merge"]

Answer = JSONResult | StreamPlan
Handler = Callable[[Services, Any, Call], Awaitable[Answer]]
"""`handler(services, request, call)`: what answers one request type."""

H = TypeVar("H", bound=Handler)


class Handlers:
    """The handlers of one module, by request model."""

    def __init__(self) -> None:
        self.table: dict[type[Any], Handler] = {}

    def on(self, model: type[Any]) -> Callable[[H], H]:
        """Register the decorated function as the handler of `model`."""

        def register(handler: H) -> H:
            if model in self.table:
                raise TypeError(f"two handlers for {model.__name__}")
            self.table[model] = handler
            return handler

        return register


def merge(groups: Iterable[Handlers], models: Iterable[type[Any]]) -> dict[type[Any], Handler]:
    """One table of every group's handlers; exactly one per model of the request union."""
    table: dict[type[Any], Handler] = {}
    for group in groups:
        for model, handler in group.table.items():
            if model in table:
                raise TypeError(f"two handlers for {model.__name__}")
            table[model] = handler
    expected = set(models)
    missing = sorted(model.__name__ for model in expected - set(table))
    unknown = sorted(model.__name__ for model in set(table) - expected)
    if missing or unknown:
        raise TypeError(f"request handlers: missing {missing}, not requests {unknown}")
    return table
