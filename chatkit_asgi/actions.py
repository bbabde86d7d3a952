"""Widget actions: what a widget asks the server (or the client) to do when used."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel

__all__ = [
    "DEFAULT_HANDLER",
    "DEFAULT_LOADING_BEHAVIOR",
    "Action",
    "ActionConfig",
    "Handler",
    "LoadingBehavior",
]

Handler = Literal["client", "server"]
"""Who handles an action: the server (`threads.custom_action`) or the client page."""

LoadingBehavior = Literal["auto", "none", "self", "container"]
"""How the UI shows that an action is in flight."""

DEFAULT_HANDLER: Handler = "server"
DEFAULT_LOADING_BEHAVIOR: LoadingBehavior = "auto"

TType = TypeVar("TType", bound=str)
TPayload = TypeVar("TPayload")


class ActionConfig(BaseModel):
    """An action attached to a widget (button click, form submit, select change).

    Field names are camelCase because that is how the widget tree is written on
    the wire; defaults are always written out, as the reference does.
    """

    type: str
    payload: Any = None
    handler: Handler = DEFAULT_HANDLER
    loadingBehavior: LoadingBehavior = DEFAULT_LOADING_BEHAVIOR
    streaming: bool = True


class Action(BaseModel, Generic[TType, TPayload]):
    """An action as the client sends it back: its type and payload.

    Subclass with a literal type to get a typed action and a `create` builder::

        class Vote(Action[Literal["vote"], dict[str, str]]): ...

        button = Button(label="Yes", onClickAction=Vote.create({"choice": "yes"}))
    """

    type: TType
    payload: TPayload = None  # type: ignore[assignment]  # no-payload actions are common

    @classmethod
    def create(
        cls,
        payload: Any = None,
        handler: Handler = DEFAULT_HANDLER,
        loading_behavior: LoadingBehavior = DEFAULT_LOADING_BEHAVIOR,
        streaming: bool = True,
    ) -> ActionConfig:
        """Build the `ActionConfig` for this action type (needs a single-literal `type`)."""
        annotation = cls.model_fields["type"].annotation
        literals = get_args(annotation) if get_origin(annotation) is Literal else ()
        if len(literals) != 1 or not isinstance(literals[0], str):
            raise TypeError(
                f"{cls.__name__}.create() needs a subclass whose type is a single string "
                "Literal, e.g. Action[Literal['vote'], dict[str, str]]"
            )
        return ActionConfig(
            type=literals[0],
            payload=payload,
            handler=handler,
            loadingBehavior=loading_behavior,
            streaming=streaming,
        )
