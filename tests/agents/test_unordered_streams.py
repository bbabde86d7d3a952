"""Model streams that are not in Responses API order map as openai-chatkit maps them.

Chat Completions models go through the SDK's own stream handler (the one LiteLLM and
other providers share): every item has the same placeholder id, and citations exist
only on the final message. Other models may send the deltas, content parts and
annotations of an item that was never announced. The user must see the same reply,
and the store must keep the same thread, as with a Responses model.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, RunContextWrapper, StopAtTools, function_tool

from chatkit_asgi import Store
from chatkit_asgi.agents import AgentContext, AgentResponder, ClientToolCall
from chatkit_asgi.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    FileSource,
    URLSource,
)

from ._chat_completions import Reply, call, chat_completions, refuse, say, think, url_citation
from ._script import Output, ScriptedModel, file_citation, refusal, text
from ._script import url_citation as responses_url_citation
from .conftest import Ids, client_for, thread_id_of, timeline

# -- Chat Completions through the SDK's own handler ------------------------------------------


@function_tool
def track(order_id: str) -> str:
    """Track an order."""
    return "shipped"


async def test_a_chat_completions_reply_streams_and_keeps_its_citations(
    store: Store[Any],
) -> None:
    tracking = "https://parcels.example/A1"
    endpoint = chat_completions(
        Reply(
            [
                *think("Looking ", "it up"),
                *say("Let me ", "check."),
                *call("track", '{"order_id": "A1"}', "call_track"),
            ],
            finish_reason="tool_calls",
        ),
        say("It has ", "shipped.", citations=[url_citation(tracking, "Tracking", 7, 15)]),
    )
    agent = Agent(name="Support", model=endpoint.model(), tools=[track])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Where is A1?")
        thread = await client.get_thread(thread_id_of(events))

    ids = Ids()
    assert timeline(events, ids)[3:] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'Looking '",
        "update wf#1 task_updated[0] thought 'Looking it up'",
        "done workflow wf#1 reasoning [thought 'Looking it up'] summary=duration",
        "added assistant_message msg#2 []",
        "update msg#2 part_added[0] ''",
        "update msg#2 text_delta[0] 'Let me '",
        "update msg#2 text_delta[0] 'check.'",
        "done assistant_message msg#2 ['Let me check.']",
        "added assistant_message msg#3 []",
        "update msg#3 part_added[0] ''",
        "update msg#3 text_delta[0] 'It has '",
        "update msg#3 text_delta[0] 'shipped.'",
        # No annotation event streamed it: the citation is on the final message only.
        f"done assistant_message msg#3 ['It has shipped.' +url:{tracking}@15]",
    ]
    assert len(endpoint.requests) == 2
    _, _, checking, answer = thread.items.data
    assert isinstance(checking, AssistantMessageItem)
    assert isinstance(answer, AssistantMessageItem)
    assert answer.content == [
        AssistantMessageContent(
            text="It has shipped.",
            annotations=[Annotation(source=URLSource(url=tracking, title="Tracking"), index=15)],
        )
    ]
    # Both messages came with the SDK's placeholder id: each got one of the store's.
    assert checking.id != answer.id
    assert checking.id.startswith("msg_") and answer.id.startswith("msg_")
    assert "__fake_id__" not in {checking.id, answer.id}


async def test_a_chat_completions_conversation_goes_on_over_turns(store: Store[Any]) -> None:
    endpoint = chat_completions(say("Paris."), say("Lyon."))
    agent = Agent(name="Geographer", model=endpoint.model())

    async with client_for(AgentResponder(agent), store) as client:
        first = await client.create_thread("Capital of France?")
        thread_id = thread_id_of(first)
        await client.add_message(thread_id, "And the second city?")
        thread = await client.get_thread(thread_id)

    # The SDK's Chat Completions converter reads the stored history back.
    assert endpoint.requests[1]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": [{"type": "text", "text": "And the second city?"}]},
    ]
    answers = [item for item in thread.items.data if isinstance(item, AssistantMessageItem)]
    assert [answer.content[0].text for answer in answers] == ["Paris.", "Lyon."]
    assert answers[0].id != answers[1].id, "the placeholder id is never reused"


async def test_a_chat_completions_refusal_is_shown_and_kept(store: Store[Any]) -> None:
    endpoint = chat_completions(refuse("I can't ", "help with that."))
    agent = Agent(name="Careful", model=endpoint.model())

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Something dubious")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "added assistant_message msg#2 []",
        "update msg#2 part_added[0] ''",
        'update msg#2 text_delta[0] "I can\'t "',
        "update msg#2 text_delta[0] 'help with that.'",
        'done assistant_message msg#2 ["I can\'t help with that."]',
    ]
    _, answer = thread.items.data
    assert isinstance(answer, AssistantMessageItem)
    assert [part.text for part in answer.content] == ["I can't help with that."]


async def test_a_chat_completions_client_tool_call_takes_an_id_of_the_store(
    store: Store[Any],
) -> None:
    @function_tool
    async def pick_color(ctx: RunContextWrapper[AgentContext], palette: str) -> str:
        """Ask the page for a color."""
        ctx.context.client_tool_call = ClientToolCall(
            name="pick_color", arguments={"palette": palette}
        )
        return "asked"

    endpoint = chat_completions(
        Reply(call("pick_color", '{"palette": "warm"}', "call_pick"), finish_reason="tool_calls")
    )
    agent = Agent(
        name="Painter",
        model=endpoint.model(),
        tools=[pick_color],
        tool_use_behavior=StopAtTools(stop_at_tool_names=["pick_color"]),
    )

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Pick a color")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "done client_tool_call tc#1 pick_color {'palette': 'warm'} pending call=call_pick",
    ]
    waiting = thread.items.data[-1]
    assert isinstance(waiting, ClientToolCallItem)
    assert waiting.id.startswith("tc_"), "the model's call item had only the placeholder id"
    assert waiting.call_id == "call_pick"


# -- items that were never announced ---------------------------------------------------------


def unannounced(output: Output) -> Output:
    """The item without `output_item.added` and `content_part.added`."""
    skipped = {"response.output_item.added", "response.content_part.added"}
    return Output([e for e in output.events if e["type"] not in skipped], output.final)


def cited_only_at_the_end(output: Output) -> Output:
    """The item without its `annotation.added` events: the final message has them."""
    skipped = {"response.output_text.annotation.added"}
    return Output([e for e in output.events if e["type"] not in skipped], output.final)


async def test_items_never_announced_stream_and_keep_their_citations(store: Store[Any]) -> None:
    wiki = "https://en.wikipedia.org/wiki/Paris"
    model = ScriptedModel(
        [
            [
                unannounced(
                    text(
                        ["Paris is ", "the capital."],
                        annotations=[responses_url_citation(wiki, "Paris", 0, 5)],
                        item_id="msg_unannounced",
                    )
                ),
                cited_only_at_the_end(
                    text(
                        "See the atlas.",
                        annotations=[file_citation("atlas.pdf", 8)],
                        item_id="msg_cited_at_the_end",
                    )
                ),
                unannounced(refusal("No more.", item_id="msg_refusal")),
            ]
        ]
    )
    agent = Agent(name="Geographer", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Capital of France?")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "update msg#2 text_delta[0] 'Paris is '",
        "update msg#2 text_delta[0] 'the capital.'",
        f"update msg#2 annotation[0][0] url:{wiki}@5",
        "update msg#2 part_done[0] 'Paris is the capital.' annotations=1",
        f"done assistant_message msg#2 ['Paris is the capital.' +url:{wiki}@5]",
        "added assistant_message msg#3 []",
        "update msg#3 part_added[0] ''",
        "update msg#3 text_delta[0] 'See the atlas.'",
        "update msg#3 part_done[0] 'See the atlas.' annotations=0",
        "done assistant_message msg#3 ['See the atlas.' +file:atlas.pdf@8]",
        "update msg#4 text_delta[0] 'No more.'",
        "update msg#4 part_done[0] 'No more.' annotations=0",
        "done assistant_message msg#4 ['No more.']",
    ]
    _, capital, atlas, refused = thread.items.data
    # Real model ids are kept, as openai-chatkit keeps them.
    assert [capital.id, atlas.id, refused.id] == [
        "msg_unannounced",
        "msg_cited_at_the_end",
        "msg_refusal",
    ]
    assert isinstance(capital, AssistantMessageItem)
    assert capital.content[0].annotations == [
        Annotation(source=URLSource(url=wiki, title="Paris"), index=5)
    ]
    assert isinstance(atlas, AssistantMessageItem)
    assert atlas.content[0].annotations == [
        Annotation(source=FileSource(filename="atlas.pdf", title="atlas.pdf"), index=8)
    ]
    assert isinstance(refused, AssistantMessageItem)
    assert refused.content[0].text == "No more."
