"""Testing helpers: a typed client for ChatKit apps and the store contract suite.

`ChatKitTestClient` needs httpx (extra `chatkit-asgi[testing]`); the store
contract suite in `chatkit_asgi.testing.store_contract` needs pytest.
"""

from ._client import ChatKitTestClient, ProtocolHTTPError, parse_sse, user_input

__all__ = ["ChatKitTestClient", "ProtocolHTTPError", "parse_sse", "user_input"]
