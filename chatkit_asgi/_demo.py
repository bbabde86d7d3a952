"""The demo assistant behind `chatkit-asgi demo` (and the playground's browser test).

It shows each kind of reply the playground renders, with no model and no key:

- any text: echoed back word by word, so the UI visibly streams;
- `widget`: a card with a button; clicking it sends the `demo.replace` action,
  which replaces the card with an updated one and adds a short message;
- `slow`: a long answer streamed slowly enough to be stopped midway;
- a message with attachments: their names and sizes (read back from the store).

The first message of a thread becomes its title.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

from .actions import ActionConfig
from .turn import Turn
from .types import (
    Action,
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemReplacedEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
    WidgetItem,
)
from .widgets import Button, Card, Text, Title

__all__ = ["REPLACE_ACTION", "DemoAssistant", "counter_card"]

REPLACE_ACTION = "demo.replace"
"""The type of the action the demo card's button sends."""

WORD_DELAY = 0.02
"""Seconds between streamed words of an ordinary answer."""

SLOW_WORD_DELAY = 0.25
"""Seconds between streamed words of the `slow` answer (about a minute in all)."""

_SLOW_WORDS = 240


def counter_card(clicks: int = 0) -> Card:
    """The demo widget: a title, a line of text and a button sending `demo.replace`."""
    return Card(
        children=[
            Title(value="Demo widget"),
            Text(id="status", value=f"Clicked {clicks} time(s)" if clicks else "Not clicked yet"),
            Button(
                label="Click me",
                onClickAction=ActionConfig(type=REPLACE_ACTION, payload={"clicks": clicks + 1}),
            ),
        ]
    )


class DemoAssistant:
    """An echo assistant with a widget, a slow answer and attachment receipts."""

    def __init__(
        self, *, word_delay: float = WORD_DELAY, slow_word_delay: float = SLOW_WORD_DELAY
    ) -> None:
        self.word_delay = word_delay
        self.slow_word_delay = slow_word_delay

    async def respond(self, turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        """Answer a user message (see the module docs for what each input does)."""
        text = turn.input_text().strip()
        if turn.thread.title is None:
            turn.thread.title = text[:40] or "New chat"
        command = text.lower()
        if command == "widget":
            yield ThreadItemDoneEvent(
                item=WidgetItem(
                    id=turn.new_id("message"),
                    thread_id=turn.thread.id,
                    created_at=turn.now(),
                    widget=counter_card(),
                    copy_text="Demo widget",
                )
            )
            return
        if command == "slow":
            words = [f"word{n}" for n in range(1, _SLOW_WORDS + 1)]
            async for event in self._stream(turn, ["Slow:", *words], self.slow_word_delay):
                yield event
            return
        reply = f"Echo: {text}"
        attachments = turn.input.attachments if turn.input is not None else []
        if attachments:
            names = []
            for attachment in attachments:
                size = await self._size(turn, attachment.id)
                names.append(f"{attachment.name} ({size} bytes)" if size >= 0 else attachment.name)
            reply += " | attachments: " + ", ".join(names)
        async for event in self._stream(turn, reply.split(" "), self.word_delay):
            yield event

    async def action(
        self, turn: Turn[Any], action: Action[str, Any], sender: WidgetItem | None
    ) -> AsyncIterator[ThreadStreamEvent]:
        """`demo.replace`: swap the card for one counting the clicks, then say so."""
        if action.type != REPLACE_ACTION or sender is None:
            async for event in self._stream(turn, f"Unknown action {action.type}".split(" "), 0.0):
                yield event
            return
        payload = action.payload if isinstance(action.payload, dict) else {}
        clicks = int(payload.get("clicks", 1))
        yield ThreadItemReplacedEvent(
            item=sender.model_copy(update={"widget": counter_card(clicks)})
        )
        async for event in self._stream(turn, f"Button clicked ({clicks})".split(" "), 0.0):
            yield event

    async def _stream(
        self, turn: Turn[Any], words: list[str], delay: float
    ) -> AsyncIterator[ThreadStreamEvent]:
        message = AssistantMessageItem(
            id=turn.new_id("message"),
            thread_id=turn.thread.id,
            created_at=turn.now(),
            content=[AssistantMessageContent(text="")],
        )
        yield ThreadItemAddedEvent(item=message)
        text = ""
        for index, word in enumerate(words):
            delta = word if index == 0 else " " + word
            text += delta
            yield ThreadItemUpdatedEvent(
                item_id=message.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=delta),
            )
            if delay:
                await anyio.sleep(delay)
        message.content = [AssistantMessageContent(text=text)]
        yield ThreadItemDoneEvent(item=message)

    @staticmethod
    async def _size(turn: Turn[Any], attachment_id: str) -> int:
        """The stored size of an attachment, -1 when it cannot be read."""
        if turn.attachment_store is None:
            return -1
        try:
            return len(await turn.read_attachment(attachment_id))
        except Exception:
            return -1
