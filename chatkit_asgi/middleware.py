"""`ChatKitMiddleware`: the ChatKit endpoint at one path of an existing ASGI app."""

from __future__ import annotations

from typing import Any

from ._app_setup import ServerLike
from ._asgi import ASGIApp, Message, Receive, Scope, Send, route_path
from .app import ChatKitApp
from .responder import ResponderLike

__all__ = ["ChatKitMiddleware"]


class ChatKitMiddleware:
    """Serves the ChatKit protocol at one path of an existing ASGI app.

    ::

        app = Starlette(routes=[...], middleware=[
            Middleware(ChatKitMiddleware, path="/chatkit", responder=respond, store=store),
        ])

    Every other path passes through to the wrapped app untouched. Pass a ready
    `ChatKitApp` as `chatkit=`, or a `responder` and any `ChatKitApp` options.
    """

    def __init__(
        self,
        app: ASGIApp,
        responder: ResponderLike | ServerLike | None = None,
        *,
        path: str = "/chatkit",
        chatkit: ChatKitApp | None = None,
        **options: Any,
    ) -> None:
        if chatkit is None:
            if responder is None:
                raise TypeError("ChatKitMiddleware needs a responder or a chatkit= app")
            chatkit = ChatKitApp(responder, **options)
        self.app = app
        self.chatkit = chatkit
        self.path = "/" + path.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] == "http":
            path = route_path(scope)
            if path == self.path or path.startswith(self.path + "/"):
                # Like a Mount: the ChatKit app sees its own paths below `root_path`.
                root_path = scope.get("root_path", "") + self.path
                await self.chatkit({**scope, "root_path": root_path}, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The wrapped app runs its own lifespan; the ChatKit app's runs around it:
        # it is started first (nothing to open: the stores connect on first use) and
        # shut down last, once the wrapped app's shutdown is over, so the site's own
        # cleanup may still use the ChatKit stores.
        self.chatkit._lifespan_seen = True

        async def send_after_chatkit(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.chatkit.aclose()
            await send(message)

        await self.app(scope, receive, send_after_chatkit)
