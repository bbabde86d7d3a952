"""The playground: a page to talk to a ChatKit app and watch its raw events.

`ChatKitApp(..., playground=True)` serves it below the endpoint:

- `GET {mount}/`: the playground page (threads, messages, widgets, uploads, and a
  side panel with every SSE event and its timing);
- `GET {mount}/playground/<asset>`: its script and style sheet, and
  `chatkit.html`, a page embedding OpenAI's ChatKit web component (loaded from
  OpenAI's CDN, so only when online) pointed at this endpoint.

Everything is plain HTML, CSS and JavaScript shipped in this package: no CDN on
the playground page itself, no build step. It is a development tool; leave it
off in production (the default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from functools import cache
from importlib import resources
from typing import Any

from ..errors import ChatKitError

__all__ = ["ASSETS", "PlaygroundRoutes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob: http: https:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'self'; form-action 'none'"
)
# The ChatKit page loads the web component from OpenAI's CDN, which frames its
# own UI: a CSP would have to track their hosts, so this page sets none.

ASSETS: dict[str, tuple[str, str | None]] = {
    "index.html": ("text/html; charset=utf-8", _PAGE_CSP),
    "app.js": ("text/javascript; charset=utf-8", None),
    "app.css": ("text/css; charset=utf-8", None),
    "chatkit.html": ("text/html; charset=utf-8", None),
}
"""The files of the playground: name -> (media type, Content-Security-Policy)."""


@cache
def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


class PlaygroundRoutes:
    """Serves the playground page and its assets (GET and HEAD only)."""

    def matches(self, route: str, method: str) -> bool:
        """Whether `route` (the path below the mount, no trailing slash) is the playground's.

        The page shares its path with the protocol endpoint: only GET and HEAD
        there are the playground's, POST stays the endpoint's.
        """
        if route == "":
            return method in ("GET", "HEAD")
        return route == "/playground" or route.startswith("/playground/")

    async def handle(self, route: str, scope: Scope, send: Send) -> None:
        """Answer a request `matches` accepted."""
        if scope["method"] not in ("GET", "HEAD"):
            raise ChatKitError(
                f"Method {scope['method']} not allowed here",
                code="method_not_allowed",
                status_code=405,
                headers={"Allow": "GET, HEAD"},
            )
        if route == "":
            path: str = scope["path"]
            if not path.endswith("/"):
                # The page's relative URLs (assets, endpoint) resolve against the slash.
                query = scope.get("query_string", b"")
                location = path + "/" + ("?" + query.decode("latin-1") if query else "")
                await _respond(send, 307, b"", {"location": location}, scope)
                return
            name = "index.html"
        else:
            name = route.removeprefix("/playground").lstrip("/")
        if name not in ASSETS:
            raise ChatKitError("No such route", code="not_found", status_code=404)
        media, csp = ASSETS[name]
        headers = {
            "content-type": media,
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        }
        if csp is not None:
            headers["content-security-policy"] = csp
        await _respond(send, 200, _read(name), headers, scope)


async def _respond(
    send: Send, status: int, body: bytes, headers: dict[str, str], scope: Scope
) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
