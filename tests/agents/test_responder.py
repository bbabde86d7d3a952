"""`AgentResponder` and `run_agent`: an Agent behind ChatKit in a few lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from agents import Agent, RunContextWrapper, function_tool

from chatkit_asgi import ChatKitApp, Store, Turn
from chatkit_asgi.agents import AgentContext, AgentResponder, run_agent
from chatkit_asgi.testing import ChatKitTestClient
from chatkit_asgi.types import (
    AssistantMessageItem,
    ImageAttachment,
    SDKHiddenContextItem,
    ThreadStreamEvent,
)

from ._script import ScriptedModel, Step, function_call, text
from .conftest import client_for, thread_id_of, timeline
from .test_input import PNG, BytesStore, b64


async def test_an_agent_answers_in_five_lines(store: Store[Any]) -> None:
    model = ScriptedModel([[text("Hello! How can I help?")], [text("Paris.")]])
    agent = Agent(name="Assistant", instructions="Be brief.", model=model)
    app = ChatKitApp(AgentResponder(agent), store=store)

    async with ChatKitTestClient(app) as client:
        first = await client.create_thread("Hi")
        thread_id = thread_id_of(first)
        await client.add_message(thread_id, "Capital of France?")
        thread = await client.get_thread(thread_id)

    assert [
        (item.type, getattr(item.content[0], "text", None))  # type: ignore[union-attr]
        for item in thread.items.data
    ] == [
        ("user_message", "Hi"),
        ("assistant_message", "Hello! How can I help?"),
        ("user_message", "Capital of France?"),
        ("assistant_message", "Paris."),
    ]
    assert model.inputs[1] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "role": "assistant", "content": "Hello! How can I help?"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Capital of France?"}],
        },
    ]


class ShopContext(AgentContext[Any]):
    """What this app's tools get besides the thread: the shopper's id."""

    shopper: str


@function_tool
async def whoami(ctx: RunContextWrapper[ShopContext]) -> str:
    """The shopper's id."""
    return ctx.context.shopper


async def test_run_agent_fits_in_a_responder_of_your_own(store: Store[Any]) -> None:
    model = ScriptedModel([[function_call("whoami", "{}")], [text("You are shopper 7.")]])
    agent = Agent(name="Shop", model=model, tools=[whoami])

    async def respond(turn: Turn[Any]) -> AsyncIterator[ThreadStreamEvent]:
        turn.thread.title = turn.thread.title or turn.input_text()[:20]
        context = ShopContext.from_turn(turn, shopper="shopper-7")
        async for event in run_agent(turn, agent, context=context):
            yield event

    async with client_for(respond, store) as client:
        events = await client.create_thread("Who am I?")

    assert model.inputs[1][-1] == {
        "type": "function_call_output",
        "call_id": model.inputs[1][-2]["call_id"],
        "output": "shopper-7",
    }
    assert timeline(events)[3:] == [
        "added assistant_message msg#2 []",
        "thread.updated title='Who am I?'",  # announced after the event it came with
        "update msg#2 part_added[0] ''",
        "update msg#2 text_delta[0] 'You are shopper 7.'",
        "update msg#2 part_done[0] 'You are shopper 7.' annotations=0",
        "done assistant_message msg#2 ['You are shopper 7.']",
    ]


class Instructed(AgentResponder):
    """Sends only the latest message, with a reminder first."""

    async def agent_input(self, turn: Turn[Any]) -> list[Any]:
        return [
            {"role": "user", "content": "Reminder: answer in French."},
            {"role": "user", "content": turn.input_text()},
        ]


async def test_what_the_model_reads_can_be_chosen(store: Store[Any]) -> None:
    model = ScriptedModel([[text("Bonjour !")]])

    async with client_for(Instructed(Agent(name="Français", model=model)), store) as client:
        await client.create_thread("Hello")

    assert model.inputs == [
        [
            {"role": "user", "content": "Reminder: answer in French."},
            {"role": "user", "content": "Hello"},
        ]
    ]


async def test_attachments_reach_the_model_from_the_attachment_store(store: Store[Any]) -> None:
    photo = ImageAttachment(
        id="atc_cat", name="cat.png", mime_type="image/png", preview_url="https://cdn.test/cat.png"
    )
    await store.save_attachment(photo, None)
    model = ScriptedModel([[text("A cat.")]])

    async with client_for(
        AgentResponder(Agent(name="Eyes", model=model)),
        store,
        attachment_store=BytesStore({"atc_cat": PNG}),
    ) as client:
        await client.create_thread("What is this?", attachments=["atc_cat"])

    assert model.inputs[0][0]["content"] == [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "detail": "auto", "image_url": f"data:image/png;base64,{b64(PNG)}"},
    ]


# -- a reply the user stops --------------------------------------------------------------


class StoppingClient:
    """An ASGI peer that posts one request and leaves after the first text delta."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = json.dumps(body).encode()
        self.sent_body = False
        self.gone = asyncio.Event()
        self.received = b""

    async def receive(self) -> MutableMapping[str, Any]:
        if not self.sent_body:
            self.sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            self.received += message.get("body", b"")
            if b"text_delta" in self.received:
                self.gone.set()


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def test_a_stopped_reply_cancels_the_run_and_the_next_turn_knows(store: Store[Any]) -> None:
    stopped = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    calls = {"n": 0}

    async def stall_after_first_item() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            await hang()

    model = ScriptedModel(
        [
            Step([text(["Once upon ", "a time"]), text("never sent")], stall_after_first_item),
            [text("Sure, something else.")],
        ]
    )
    app = ChatKitApp(AgentResponder(Agent(name="Storyteller", model=model)), store=store)
    peer = StoppingClient(
        {
            "type": "threads.create",
            "params": {"input": {"content": [{"type": "input_text", "text": "A story"}]}},
        }
    )

    await asyncio.wait_for(app(scope(), peer.receive, peer.send), 10)
    await asyncio.wait_for(stopped.wait(), 5)

    threads = await store.load_threads(10, None, "desc", None)
    thread_id = threads.data[0].id
    async with client_for(AgentResponder(Agent(name="Storyteller", model=model)), store) as client:
        await client.add_message(thread_id, "Something else")
        thread = await client.get_thread(thread_id)

    kept = [item for item in thread.items.data if isinstance(item, AssistantMessageItem)]
    assert kept[0].content[0].text == "Once upon a time", "the text the user saw is kept"
    assert model.inputs[1][1:] == [
        {"type": "message", "role": "assistant", "content": "Once upon a time"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "Hidden context for the agent (not shown to the user):\n"
                    "<HiddenContext>\nThe user cancelled the stream. Stop responding to the "
                    "prior request.\n</HiddenContext>",
                }
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Something else"}],
        },
    ]
    items = await store.load_thread_items(thread_id, None, 20, "asc", None)
    assert any(isinstance(item, SDKHiddenContextItem) for item in items.data)
