"""Run an Agent on the thread and stream its reply: `run_agent` and `AgentResponder`.

::

    from agents import Agent
    from chatkit_asgi import ChatKitApp
    from chatkit_asgi.agents import AgentResponder

    agent = Agent(name="Assistant", instructions="Be brief.")
    app = ChatKitApp(AgentResponder(agent))
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from agents import Agent, RunConfig, RunHooks, Runner, TResponseInputItem

from ..turn import Turn
from ..types import ThreadStreamEvent
from ._stream_converter import DEFAULT_CONVERTER, ResponseStreamConverter
from .context import AgentContext
from .events import TRIPWIRES, stream_agent_response
from .input import ThreadItemConverter

__all__ = ["AgentResponder", "run_agent"]

DEFAULT_MAX_TURNS = 10
"""The Runner's default: model calls per reply before it gives up."""


async def run_agent(
    turn: Turn[Any],
    agent: Agent[Any],
    *,
    context: AgentContext[Any] | None = None,
    input: list[TResponseInputItem] | None = None,
    converter: ThreadItemConverter | None = None,
    stream_converter: ResponseStreamConverter | None = None,
    run_config: RunConfig | None = None,
    hooks: RunHooks[Any] | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> AsyncGenerator[ThreadStreamEvent, None]:
    """Run `agent` on the thread's history and yield the reply's events.

    `input` replaces the history; `converter` changes how the history reads to
    the model; `context` is the run context its tools get (an `AgentContext`
    for the turn by default). A guardrail tripwire ends the reply with the
    stream converter's `guardrail_error`. ::

        async def respond(turn: Turn):
            turn.thread.title = turn.thread.title or turn.input_text()[:40]
            async for event in run_agent(turn, agent):
                yield event
    """
    ctx = context if context is not None else AgentContext.from_turn(turn)
    if input is None:
        converter = converter or ThreadItemConverter.for_turn(turn)
        input = await converter.to_agent_input(await turn.history())
    result = Runner.run_streamed(
        agent, input, context=ctx, run_config=run_config, hooks=hooks, max_turns=max_turns
    )
    stream_converter = stream_converter or DEFAULT_CONVERTER
    try:
        async with aclosing(
            stream_agent_response(ctx, result, converter=stream_converter)
        ) as events:
            async for event in events:
                yield event
    except TRIPWIRES as tripwire:
        # The reply's items are taken back already; say why instead of failing.
        notice = stream_converter.guardrail_error(tripwire)
        if notice is not None:
            yield notice


class AgentResponder:
    """A ChatKit responder that answers every message with one Agent.

    Override `create_context` to give tools a richer `AgentContext` subclass, or
    `agent_input` to send the model something other than the whole history.
    """

    def __init__(
        self,
        agent: Agent[Any],
        *,
        converter: ThreadItemConverter | None = None,
        stream_converter: ResponseStreamConverter | None = None,
        run_config: RunConfig | None = None,
        hooks: RunHooks[Any] | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
    ) -> None:
        self.agent = agent
        self.converter = converter
        self.stream_converter = stream_converter
        self.run_config = run_config
        self.hooks = hooks
        self.max_turns = max_turns

    def create_context(self, turn: Turn[Any]) -> AgentContext[Any]:
        """The run context of a turn."""
        return AgentContext.from_turn(turn)

    async def agent_input(self, turn: Turn[Any]) -> list[TResponseInputItem]:
        """What the model reads: the whole thread, converted."""
        converter = self.converter or ThreadItemConverter.for_turn(turn)
        return await converter.to_agent_input(await turn.history())

    async def respond(self, turn: Turn[Any]) -> AsyncGenerator[ThreadStreamEvent, None]:
        """Run the agent for this turn and stream its reply."""
        events = run_agent(
            turn,
            self.agent,
            context=self.create_context(turn),
            input=await self.agent_input(turn),
            stream_converter=self.stream_converter,
            run_config=self.run_config,
            hooks=self.hooks,
            max_turns=self.max_turns,
        )
        async with aclosing(events):
            async for event in events:
                yield event
