"""Points every `chatkit.*` import of openai-chatkit's tests at chatkit-asgi.

This file is copied to the root of the unpacked reference test tree; nothing else
there is edited. The reference tests import `helpers.mock_store` and
`tests._types`, so the tests folder goes on `sys.path` as in the reference repo.
"""

import importlib
import sys
from pathlib import Path

from chatkit_modules import MODULES  # copied beside this file by the runner

for _name, _target in MODULES.items():
    sys.modules[_name] = importlib.import_module(_target)

sys.path.insert(0, str(Path(__file__).parent / "tests"))
