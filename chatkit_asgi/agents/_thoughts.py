"""Reasoning summaries as thought tasks of the open workflow.

The first thought of a reasoning workflow streams; the others are shown whole
when done (openai-chatkit's rule: one moving line at a time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..types import ThoughtTask, ThreadStreamEvent, Workflow

if TYPE_CHECKING:
    from .context import AgentContext

__all__ = ["StreamingThoughtTracker", "Thoughts"]


class StreamingThoughtTracker(BaseModel):
    """The thought that is streaming: the first one of a reasoning workflow.

    `stream_agent_response` keeps one while such a thought streams (the name
    and fields are openai-chatkit's): `item_id` names the model's reasoning
    item, `index` its summary part, and `task` is the thought on the client's
    screen.
    """

    item_id: str
    index: int
    task: ThoughtTask


class Thoughts:
    """The thoughts of one reply, and the one streaming now (if any)."""

    def __init__(self, context: AgentContext[Any]) -> None:
        self.ctx = context
        self.streaming: StreamingThoughtTracker | None = None

    def part(
        self,
        key: str,
        summary: int,
        text: str,
        *,
        final: bool,
        sink: Callable[[ThreadStreamEvent], None],
    ) -> None:
        """Text of summary part `summary` of the reasoning item `key`: a delta, or the
        part's whole text when `final`."""
        ctx = self.ctx
        workflow = ctx.workflow_item
        if workflow is None:
            if not text:
                return
            # A summary whose reasoning item was never announced.
            workflow = ctx._open_workflow(Workflow(type="reasoning", tasks=[]), sink)
        tasks = workflow.workflow.tasks
        tracker = self.streaming
        # Where the streaming thought is now, if it is this one and still shown
        # (by identity: app code may have replaced it, or closed its workflow).
        position = (
            next((i for i, task in enumerate(tasks) if task is tracker.task), None)
            if tracker is not None and (tracker.item_id, tracker.index) == (key, summary)
            else None
        )
        if tracker is not None and position is not None:
            if final:
                self.streaming = None
            elif not text:
                return
            content = text if final else tracker.task.content + text
            tracker.task = tracker.task.model_copy(update={"content": content})
            # Sent even when the final text adds nothing, as openai-chatkit does.
            ctx._update_task(tracker.task, position, sink)
        elif not text:
            return
        elif final:
            ctx._add_task(ThoughtTask(content=text), sink)
        elif workflow.workflow.type == "reasoning" and not tasks:
            task = ThoughtTask(content=text)
            ctx._add_task(task, sink)
            self.streaming = StreamingThoughtTracker(item_id=key, index=summary, task=task)
