"""The OpenAI Agents SDK bridge (extra `chatkit-asgi[agents]`).

The shortest agent backend::

    from agents import Agent
    from chatkit_asgi import ChatKitApp
    from chatkit_asgi.agents import AgentResponder

    agent = Agent(name="Assistant", instructions="Be brief.", model="gpt-4.1-mini")
    app = ChatKitApp(AgentResponder(agent))

The parts, for responders that do more:

- `AgentContext`: the run context tools see, with helpers that add widgets,
  workflows, tasks, progress lines and client effects to the reply;
- `stream_agent_response(context, result)`: a `Runner.run_streamed` result as
  ChatKit events;
- `ThreadItemConverter` / `simple_to_agent_input`: thread history as agent input;
- `run_agent(turn, agent)`: the three together for one turn;
- `accumulate_text`: re-exported from `chatkit_asgi.widgets`, where openai-chatkit had it.

Names follow openai-chatkit's `chatkit.agents`, so moving is a change of imports.
"""

from ..widgets.streaming import accumulate_text
from .context import AgentContext, ClientToolCall
from .events import ResponseStreamConverter, StreamingThoughtTracker, stream_agent_response
from .input import ThreadItemConverter, simple_to_agent_input
from .responder import AgentResponder, run_agent

__all__ = [
    "AgentContext",
    "AgentResponder",
    "ClientToolCall",
    "ResponseStreamConverter",
    "StreamingThoughtTracker",
    "ThreadItemConverter",
    "accumulate_text",
    "run_agent",
    "simple_to_agent_input",
    "stream_agent_response",
]
