from .components import *  # noqa: F403
