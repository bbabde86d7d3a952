"""Helpers of the widget tests: a widget-minded responder and checks against the reference."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import chatkit.types as ref_types
from pydantic import BaseModel, TypeAdapter

from chatkit_asgi import Turn
from chatkit_asgi.types import (
    Action,
    ActionConfig,
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
from chatkit_asgi.widgets import Badge, Button, Card, Markdown, Row, Text, replace_widget

REFERENCE_EVENTS: TypeAdapter[Any] = TypeAdapter(ref_types.ThreadStreamEvent)


def wire(model: BaseModel) -> Any:
    """A model's JSON as the app writes it (aliases, no `None`), parsed."""
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


def assert_reference_reads(event: BaseModel) -> None:
    """openai-chatkit 1.6.5 parses the event and writes the very same JSON back."""
    data = wire(event)
    parsed = REFERENCE_EVENTS.validate_python(data)
    assert json.loads(parsed.model_dump_json(by_alias=True, exclude_none=True)) == data


def say(turn: Turn[Any], text: str) -> ThreadItemDoneEvent:
    """A finished assistant message."""
    return ThreadItemDoneEvent(
        item=AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text=text)],
        )
    )


def vote_card(votes: int = 0) -> Card:
    """The card the assistant shows: a vote count and buttons to change it."""
    return Card(
        children=[
            Text(id="question", value="Pineapple on pizza?"),
            Row(
                children=[
                    Badge(id="votes", label=f"{votes} votes"),
                    Button(
                        label="Vote",
                        onClickAction=ActionConfig(type="vote", payload={"votes": votes}),
                    ),
                    Button(
                        label="+1 (sync)",
                        onClickAction=ActionConfig(
                            type="count", payload={"votes": votes}, streaming=False
                        ),
                    ),
                ]
            ),
        ]
    )


def trip_questions(turn: Turn[Any]) -> StructuredInputItem:
    """One single-choice, one multiple-choice and one free-text question."""
    return StructuredInputItem(
        id=turn.new_id("message"),
        thread_id=turn.thread.id,
        created_at=turn.now(),
        inputs=[
            StructuredInputMultipleChoice(
                id="kind",
                question="What kind of trip?",
                options=[StructuredInputMultipleChoiceOption(value=v) for v in ("beach", "city")],
            ),
            StructuredInputMultipleChoice(
                id="company",
                question="Who comes along?",
                multiple=True,
                options=[
                    StructuredInputMultipleChoiceOption(value=v)
                    for v in ("friends", "family", "dog")
                ],
            ),
            StructuredInputFreeform(id="notes", question="Anything else?"),
        ],
    )


class WidgetAssistant:
    """Answers "card" with a vote card (streamed), "ask" with questions, "locate" with a
    client tool call; reacts to the card's actions; says what it found when resumed."""

    def __init__(self) -> None:
        self.actions: list[tuple[Action[str, Any], WidgetItem | None]] = []
        self.resumed_with: list[Any] = []

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        if turn.input is None:
            last = (await turn.history())[-1]
            self.resumed_with.append(last)
            if isinstance(last, ClientToolCallItem):
                yield say(turn, f"You are in {last.output['city']}.")
            elif isinstance(last, StructuredInputItem):
                answers = {
                    q.id: "skipped" if q.answer is None or q.answer.skipped else q.answer.values
                    for q in last.inputs
                }
                yield say(turn, f"answers: {answers}")
            return
        text = turn.input_text()
        if text == "card":
            async for event in turn.stream_widget(vote_card(), copy_text="0 votes"):
                yield event
        elif text == "streamed card":

            async def states() -> AsyncIterator[Card]:
                card = Card(children=[Markdown(id="md", value="", streaming=True)])
                yield card
                for text in ("Hello", "Hello, wor", "Hello, world"):
                    card = Card(children=[Markdown(id="md", value=text, streaming=True)])
                    yield card
                yield Card(children=[Markdown(id="md", value="Hello, world", streaming=False)])

            async for event in turn.stream_widget(states()):
                yield event
        elif text == "ask":
            yield ThreadItemDoneEvent(item=trip_questions(turn))
        elif text == "locate":
            yield turn.client_tool_call("get_location", {"precision": "city"}, call_id="call_1")
        else:
            yield say(turn, f"echo: {text}")

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        self.actions.append((action, sender))
        if action.type == "vote" and sender is not None:
            votes = action.payload["votes"] + 1
            yield replace_widget(sender, vote_card(votes), copy_text=f"{votes} votes")
        yield say(turn, f"action {action.type} from {sender.id if sender else None}")

    async def sync_action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> SyncCustomActionResponse:
        self.actions.append((action, sender))
        if action.type == "count" and sender is not None:
            card = vote_card(action.payload["votes"] + 1)
            return SyncCustomActionResponse(updated_item=sender.model_copy(update={"widget": card}))
        return SyncCustomActionResponse()
