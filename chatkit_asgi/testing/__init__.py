"""Testing helpers: a typed client for ChatKit apps and the store contract suite.

`ChatKitTestClient` needs httpx (extra `chatkit-asgi[testing]`); the store
contract suite in `chatkit_asgi.testing.store_contract` needs pytest.
"""

try:
    from ._client import ChatKitTestClient, ProtocolHTTPError, parse_sse, user_input
except ImportError as exc:  # the extra is missing: say which one, not just "no httpx"
    if exc.name is None or exc.name.startswith("chatkit_asgi"):
        raise
    raise ImportError(
        f"chatkit_asgi.testing needs {exc.name}, which is not installed: "
        "pip install 'chatkit-asgi[testing]'",
        name=exc.name,
    ) from exc

__all__ = ["ChatKitTestClient", "ProtocolHTTPError", "parse_sse", "user_input"]
