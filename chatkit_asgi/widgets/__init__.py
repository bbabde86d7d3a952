"""Widget components: typed models of the trees a `WidgetItem` carries."""

# `chatkit_asgi.types` re-exports the components and its item/event models use
# them; loading it first keeps the import order the same whichever package a
# program imports first (components -> types.icons would otherwise re-enter a
# half-initialized `chatkit_asgi.types`).
import chatkit_asgi.types  # noqa: F401

from .components import *  # noqa: F403
from .components import __all__ as __all__
