"""The widget component models, under the path they first had.

They are wire models, defined in `chatkit_asgi.types.components` with the item
and event models that hold them; every name there is re-exported here as the
same object (`chatkit_asgi.widgets.components.Card is chatkit_asgi.types.Card`),
so imports, `isinstance` checks and pickles made under this path keep working.
"""

from ..actions import ActionConfig as ActionConfig
from ..types.components import *  # noqa: F403
from ..types.components import __all__ as _component_names
from ..types.icons import IconName as IconName

__all__ = [*_component_names]
