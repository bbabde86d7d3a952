"""openai-chatkit's modules and ours of the same role: a migration changes one to the other.

Shared by the test that every public name has a counterpart and by the conftest
that runs the reference's own tests against us (copied beside it in the work dir).
"""

MODULES = {
    "chatkit": "chatkit_asgi",
    "chatkit.actions": "chatkit_asgi.actions",
    "chatkit.agents": "chatkit_asgi.agents",
    "chatkit.errors": "chatkit_asgi.errors",
    "chatkit.icons": "chatkit_asgi.types.icons",
    "chatkit.server": "chatkit_asgi.server",
    "chatkit.store": "chatkit_asgi.store",
    "chatkit.types": "chatkit_asgi.types",
    "chatkit.widgets": "chatkit_asgi.widgets",
}
