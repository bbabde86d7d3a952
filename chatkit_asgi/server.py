"""The openai-chatkit compatibility layer: `ChatKitServer` and its results (in progress)."""

from .widgets.diff import diff_widget
from .widgets.streaming import stream_widget

__all__ = ["diff_widget", "stream_widget"]
