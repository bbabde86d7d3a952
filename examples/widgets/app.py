"""A weather assistant built from widgets, actions, a question and a client tool.

- any city name: streams a weather card (from `weather.widget`) whose summary
  arrives word by word, as text deltas;
- its "Refresh" button is a server action: the card is updated in place
  (`thread.item.replaced`) and the assistant says so;
- its "Like" button is a sync action (`streaming: false`): the answer is the
  card with one more like, saved as well;
- "plan a trip": a structured question (multiple choice and free text); the
  answers come back through `threads.add_structured_input`;
- "here": asks the page to run its `get_location` client tool, then shows the
  weather where the user is.

Run it with `uvicorn examples.widgets.app:app` and point the ChatKit UI's
`api.url` at http://127.0.0.1:8000/chatkit (register a `get_location` client
tool in the page for the last flow).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from chatkit_asgi import ChatKitApp, Turn
from chatkit_asgi.stores import SQLiteStore
from chatkit_asgi.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    SyncCustomActionResponse,
    ThreadItemDoneEvent,
    ThreadStreamEvent,
    WidgetItem,
)
from chatkit_asgi.widgets import (
    DynamicWidgetRoot,
    WidgetTemplate,
    accumulate_text,
    replace_widget,
)

WEATHER = WidgetTemplate.from_file("weather.widget")


def weather_card(
    city: str, degrees: int, *, summary: str = "", streaming: bool = False, likes: int = 0
) -> DynamicWidgetRoot:
    """The weather card for `city` (`weather.widget` checks the data)."""
    return WEATHER.build(
        {
            "city": city,
            "degrees": degrees,
            "summary": summary,
            "streaming": streaming,
            "likes": likes,
        }
    )


def forecast(city: str) -> tuple[int, str]:
    """A made-up forecast: degrees and a sentence (stands in for a weather API)."""
    degrees = 12 + sum(map(ord, city.lower())) % 18
    mood = "warm and sunny" if degrees > 20 else "mild with a few clouds"
    return degrees, f"**{city}** will be {mood} today, around {degrees} °C."


async def words(text: str, pause: float = 0.03) -> AsyncIterator[str]:
    """`text` in word-sized pieces, the way a model streams it."""
    for index, word in enumerate(text.split(" ")):
        yield word if index == 0 else " " + word
        if pause:
            await anyio.sleep(pause)


def say(turn: Turn, text: str) -> ThreadItemDoneEvent:
    """A finished assistant message."""
    return ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=text)],
        )
    )


class WeatherAssistant:
    """The responder: one object for replies, widget actions and sync actions."""

    def __init__(self, pause: float = 0.03) -> None:
        self.pause = pause

    async def respond(self, turn: Turn) -> AsyncIterator[ThreadStreamEvent]:
        """Answer a message, a completed client tool call, or answered questions."""
        if turn.input is None:
            # Resumed after the client ran its tool or the user answered our questions.
            last = (await turn.history())[-1]
            if isinstance(last, ClientToolCallItem):
                city = str((last.output or {}).get("city") or "Paris")
                async for event in self.stream_weather(turn, city):
                    yield event
            elif isinstance(last, StructuredInputItem):
                yield say(turn, trip_summary(last))
            return

        text = turn.input_text().strip()
        if turn.thread.title is None:
            turn.thread.title = text[:40] or "Weather"
        if text.lower().startswith("plan"):
            yield ThreadItemDoneEvent(item=trip_questions(turn))
        elif text.lower() in {"here", "where am i", "my location"}:
            # The reply ends with the pending call; the page answers with the tool output.
            yield turn.client_tool_call("get_location", {"precision": "city"})
        else:
            async for event in self.stream_weather(turn, text or "Paris"):
                yield event

    async def stream_weather(self, turn: Turn, city: str) -> AsyncIterator[ThreadStreamEvent]:
        """Stream the card for `city`, its summary arriving as text deltas."""
        degrees, summary = forecast(city)
        card = weather_card(city, degrees, streaming=True)
        states = accumulate_text(words(summary, self.pause), card, component_id="summary")
        async for event in turn.stream_widget(states, copy_text=summary):
            yield event

    async def action(
        self, turn: Turn, action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """The "Refresh" button: update the card in place."""
        if action.type != "weather.refresh" or sender is None:
            yield say(turn, f"I do not know the action {action.type!r}.")
            return
        city = str(action.payload["city"])
        degrees = int(action.payload["degrees"]) + 1  # the weather changed a little
        summary = f"Refreshed: **{city}** is now at {degrees} °C."
        yield replace_widget(sender, weather_card(city, degrees, summary=summary), summary)
        yield say(turn, f"I refreshed the weather for {city}.")

    async def sync_action(
        self, turn: Turn, action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        """The "Like" button: answer at once with the card showing one more like."""
        if action.type != "weather.like" or sender is None:
            return SyncCustomActionResponse()
        payload = action.payload
        card = weather_card(
            str(payload["city"]),
            int(payload["degrees"]),
            summary=sender.copy_text or "",
            likes=int(payload["likes"]) + 1,
        )
        return SyncCustomActionResponse(updated_item=sender.model_copy(update={"widget": card}))


def trip_questions(turn: Turn) -> StructuredInputItem:
    """Questions for planning a trip: one choice, several choices, free text."""
    return StructuredInputItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        inputs=[
            StructuredInputMultipleChoice(
                id="kind",
                question="What kind of trip?",
                options=[
                    StructuredInputMultipleChoiceOption(value=value)
                    for value in ("Beach", "Mountains", "City")
                ],
            ),
            StructuredInputMultipleChoice(
                id="company",
                question="Who is coming?",
                multiple=True,
                options=[
                    StructuredInputMultipleChoiceOption(value=value)
                    for value in ("Friends", "Family", "Just me")
                ],
            ),
            StructuredInputFreeform(id="notes", question="Anything else we should know?"),
        ],
    )


def trip_summary(item: StructuredInputItem) -> str:
    """What the assistant says once the questions are answered (or skipped)."""
    if item.status == "skipped":
        return "No problem, ask me about the weather any time."
    parts = [
        f"{question.question} {', '.join(question.answer.values)}"
        for question in item.inputs
        if question.answer is not None and not question.answer.skipped
    ]
    return "Noted. " + " ".join(parts) if parts else "Noted, nothing in particular then."


chatkit = ChatKitApp(
    WeatherAssistant(),
    store=SQLiteStore(os.environ.get("CHATKIT_DB", "chatkit-widgets-demo.db")),
)

app = Starlette(
    routes=[Mount("/chatkit", app=chatkit)],
    middleware=[
        # The ChatKit UI usually runs on another origin during development.
        Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["POST"], allow_headers=["*"])
    ],
    lifespan=chatkit.lifespan,
)
