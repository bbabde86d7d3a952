"""Checks and settings `ChatKitApp` applies once, when it is built."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Protocol, runtime_checkable

from .responder import ResponderLike
from .store import AttachmentStore, Store

__all__ = ["ServerLike", "checked_stores", "configure_logging"]


@runtime_checkable
class ServerLike(Protocol):
    """A `chatkit_asgi.server.ChatKitServer`, which `ChatKitApp` serves with its stores.

    Recognised by this method rather than by class, so app.py never imports server.py:
    the compatibility layer sits on top of the engine and the framing, as the app does,
    and an import from the app down to it would be the start of an import circle (and
    would load the layer for apps that do not use it).
    """

    def _chatkit_mount(
        self, store: Store[Any] | None, attachment_store: AttachmentStore[Any] | None
    ) -> tuple[ResponderLike, Store[Any], AttachmentStore[Any] | None]: ...


def checked_stores(
    responder: ResponderLike | ServerLike,
    store: Store[Any] | None,
    attachment_store: AttachmentStore[Any] | None,
) -> tuple[ResponderLike, Store[Any], AttachmentStore[Any] | None]:
    """The responder and the stores the app serves: a `ChatKitServer`'s own, the
    default SQLite store when none is given, each checked to be a store."""
    # A class passes the ServerLike check (it has the method); BoundResponder says why not.
    if isinstance(responder, ServerLike) and not inspect.isclass(responder):
        # a ChatKitServer: its responder face, its stores
        responder, store, attachment_store = responder._chatkit_mount(store, attachment_store)
    if store is None:
        from .stores.sqlite import SQLiteStore

        store = SQLiteStore("chatkit.db")
    _check_store(store, "store", Store, 'store=SQLiteStore("chatkit.db")')
    if attachment_store is not None:
        _check_store(
            attachment_store,
            "attachment_store",
            AttachmentStore,
            'attachment_store=FileSystemAttachmentStore("uploads")',
        )
    return responder, store, attachment_store


def configure_logging() -> None:
    """Apply `LOG_LEVEL` from the environment to the library's logger."""
    level = os.environ.get("LOG_LEVEL")
    if not level:
        return
    library = logging.getLogger("chatkit_asgi")
    library.setLevel(level.upper())
    if not library.handlers and not logging.getLogger().handlers:
        # Python's last-resort handler drops everything below WARNING; asking for
        # a level should make it visible.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        library.addHandler(handler)


def _check_store(value: object, argument: str, base: type[Any], example: str) -> None:
    """Refuse a store of the wrong kind now, rather than with a 500 at the first request."""
    if isinstance(value, base):
        return
    kind = base.__name__
    if inspect.isclass(value) and issubclass(value, base):
        hint = f"{value.__name__} is the class: call it, {argument}={value.__name__}(...)"
    elif isinstance(value, (str, os.PathLike)):
        hint = f"a path is not a store: open one, e.g. {example}"
    else:
        hint = f"pass an instance of a {kind} subclass, e.g. {example}"
    raise TypeError(f"{argument} must be a chatkit_asgi {kind}, not {value!r}: {hint}")
