"""The ChatKit wire models, under the same names as openai-chatkit.

Moving from openai-chatkit is an import change: `from chatkit.types import X`
becomes `from chatkit_asgi.types import X`.
"""

from ..actions import Action, ActionConfig
from ..errors import ErrorCode
from ._base import Page, UtcDatetime
from .attachments import *  # noqa: F403
from .attachments import __all__ as _attachment_names
from .components import *  # noqa: F403
from .components import __all__ as _component_names
from .events import *  # noqa: F403
from .events import __all__ as _event_names
from .icons import IconName, LucideIconName, VendorIconName
from .items import *  # noqa: F403
from .items import __all__ as _item_names
from .requests import *  # noqa: F403
from .requests import __all__ as _request_names
from .sources import *  # noqa: F403
from .sources import __all__ as _source_names

__all__ = [
    "Action",
    "ActionConfig",
    "ErrorCode",
    "IconName",
    "LucideIconName",
    "Page",
    "UtcDatetime",
    "VendorIconName",
    *_attachment_names,
    *_component_names,
    *_event_names,
    *_item_names,
    *_request_names,
    *_source_names,
]
