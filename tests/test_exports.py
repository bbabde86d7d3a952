"""The public surface is deliberate: these names and no others."""

import inspect
from typing import TypeVar

import chatkit_asgi
import chatkit_asgi.types


def test_top_level_public_names() -> None:
    assert sorted(chatkit_asgi.__all__) == sorted(
        [
            "Admission",
            "AttachmentStore",
            "ChatKitApp",
            "ChatKitError",
            "ChatKitMiddleware",
            "ConflictError",
            "ContextFactory",
            "CustomStreamError",
            "DisconnectPolicy",
            "ErrorCode",
            "InvalidRequestError",
            "JSONFormatter",
            "NotFoundError",
            "NotSupportedError",
            "Refusal",
            "Responder",
            "ResponderLike",
            "ResourceNotFoundError",
            "Store",
            "StoreUnavailableError",
            "StreamError",
            "TokenBucketLimiter",
            "Turn",
        ]
    )
    for name in chatkit_asgi.__all__:
        value = getattr(chatkit_asgi, name)
        if inspect.isclass(value) or inspect.isfunction(value):  # aliases carry no docstring
            assert value.__doc__, f"{name} has no docstring"


def test_types_keep_the_reference_names() -> None:
    import chatkit.types as reference

    ours = set(chatkit_asgi.types.__all__)
    theirs = {
        name
        for name, value in vars(reference).items()
        if not name.startswith("_")
        and not isinstance(value, TypeVar)
        and getattr(value, "__module__", "").startswith("chatkit")
    }
    # Everything a migrating user imports from chatkit.types exists under the same name.
    assert theirs - ours == set()
