"""An Agents SDK assistant behind ChatKit: a tool that shows a widget, and a client tool.

Run it with uvicorn (endpoint `/chatkit`)::

    uvicorn examples.agent.app:app --port 8000

With `OPENAI_API_KEY` set it uses a real OpenAI model (`CHATKIT_MODEL`, default
`gpt-4.1-mini`); without one, a scripted offline model that never touches the
network, so the demo works anywhere. Try "What's the weather in Lyon?" and
"Switch to the dark theme".

The page handles the client tool: ChatKit's `onClientTool` receives
`{name: "switch_theme", params: {theme}}` and returns `{theme}`.
"""

from __future__ import annotations

import os
import random
from typing import Literal

from agents import Agent, Model, RunContextWrapper, StopAtTools, function_tool, set_tracing_disabled
from agents.tool_context import ToolContext
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from chatkit_asgi import ChatKitApp
from chatkit_asgi.agents import AgentContext, AgentResponder, ClientToolCall
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.types import Badge, Caption, Card, Col, Row, Text, Title

from .offline import OfflineModel


@function_tool
async def show_weather(ctx: RunContextWrapper[AgentContext], city: str) -> str:
    """Show the current weather in a city on a card.

    Args:
        city: The city, e.g. "Lyon".
    """
    temperature = random.randint(8, 28)  # a stand-in for a weather service
    sky = random.choice(["Sunny", "Cloudy", "Light rain"])
    await ctx.context.progress_update(f"Looking up the weather in {city}")
    card = Card(
        children=[
            Row(children=[Title(value=city), Badge(label=sky, color="info")], justify="between"),
            Col(children=[Text(value=f"{temperature} °C"), Caption(value="Updated just now")]),
        ]
    )
    await ctx.context.stream_widget(card, copy_text=f"{city}: {sky}, {temperature} °C")
    return f"{city}: {sky}, {temperature} °C (shown to the user on a card)."


@function_tool
async def switch_theme(ctx: ToolContext[AgentContext], theme: Literal["light", "dark"]) -> str:
    """Switch the page between the light and the dark theme.

    Args:
        theme: "light" or "dark".
    """
    ctx.context.client_tool_call = ClientToolCall(
        name="switch_theme", arguments={"theme": theme}, call_id=ctx.tool_call_id
    )
    return "The page switches the theme."


INSTRUCTIONS = (
    "You are a concise assistant in a demo. Use show_weather for weather questions "
    "(the user sees the card, so do not repeat its numbers), and switch_theme when "
    "the user wants a light or dark page."
)


def default_model() -> str | Model:
    """A real OpenAI model when there is a key, else the offline script."""
    if os.environ.get("OPENAI_API_KEY"):
        return os.environ.get("CHATKIT_MODEL", "gpt-4.1-mini")
    set_tracing_disabled(True)  # nowhere to send traces without a key
    return OfflineModel()


def create_app(*, model: str | Model | None = None, db_path: str | None = None) -> FastAPI:
    """The demo: the agent behind ChatKit at `/chatkit`, threads in SQLite."""
    agent = Agent[AgentContext](
        name="Demo assistant",
        instructions=INSTRUCTIONS,
        model=model if model is not None else default_model(),
        tools=[show_weather, switch_theme],
        # The page runs switch_theme: stop there, the reply ends with the pending call.
        tool_use_behavior=StopAtTools(stop_at_tool_names=["switch_theme"]),
    )
    store = SQLiteStore(db_path or os.environ.get("CHATKIT_DB", "chatkit-demo.db"))
    chatkit = ChatKitApp(AgentResponder(agent), store=store)

    demo = FastAPI(title="ChatKit agent demo", lifespan=chatkit.lifespan)
    # The ChatKit UI usually runs on another origin during development.
    demo.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["POST"], allow_headers=["*"]
    )
    demo.mount("/chatkit", chatkit)
    return demo


app = create_app()
