"""chatkit-asgi: a mountable ASGI backend for OpenAI's ChatKit web UI.

::

    from chatkit_asgi import ChatKitApp, Turn
    from chatkit_asgi.stores import SQLiteStore

    async def respond(turn: Turn):
        ...  # yield ThreadStreamEvents

    app = ChatKitApp(respond, store=SQLiteStore("chatkit.db"))
"""

from ._version import __version__ as __version__
from .admission import Admission, Refusal, TokenBucketLimiter
from .app import ChatKitApp, ContextFactory, DisconnectPolicy
from .errors import (
    ChatKitError,
    ConflictError,
    CustomStreamError,
    ErrorCode,
    InvalidRequestError,
    NotSupportedError,
    ResourceNotFoundError,
    StreamError,
)
from .logs import JSONFormatter
from .middleware import ChatKitMiddleware
from .responder import Responder, ResponderLike
from .store import AttachmentStore, NotFoundError, Store, StoreUnavailableError
from .turn import Turn

__all__ = [
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
    "ResourceNotFoundError",
    "Responder",
    "ResponderLike",
    "Store",
    "StoreUnavailableError",
    "StreamError",
    "TokenBucketLimiter",
    "Turn",
]
