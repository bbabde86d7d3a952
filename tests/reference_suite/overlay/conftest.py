"""Points every `chatkit.*` import of openai-chatkit's tests at chatkit-asgi.

This file is copied to the root of the unpacked reference test tree; nothing else
there is edited. The reference tests import `helpers.mock_store` and
`tests._types`, so the tests folder goes on `sys.path` as in the reference repo.
"""

import importlib
import sys
from pathlib import Path

_OURS = {
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

for _name, _target in _OURS.items():
    sys.modules[_name] = importlib.import_module(_target)

sys.path.insert(0, str(Path(__file__).parent / "tests"))
