"""`stream_agent_response`: what an Agent run looks like to the ChatKit UI.

Every test runs the real `Runner.run_streamed` with a scripted model that replays
Responses API events, behind the real ASGI app, and checks the exact events the
client receives and the thread the store keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    ModelRefusalError,
    OutputGuardrailTripwireTriggered,
    RunContextWrapper,
    Runner,
    StopAtTools,
    function_tool,
    input_guardrail,
    output_guardrail,
)
from agents.tool_context import ToolContext

from chatkit_asgi import Store
from chatkit_asgi.agents import (
    AgentContext,
    AgentResponder,
    ClientToolCall,
    ResponseStreamConverter,
    stream_agent_response,
)
from chatkit_asgi.types import (
    Annotation,
    AssistantMessageItem,
    Card,
    ClientToolCallItem,
    CustomSummary,
    CustomTask,
    DurationSummary,
    ErrorEvent,
    FileSource,
    GeneratedImageItem,
    Text,
    ThreadMetadata,
    ThreadStreamEvent,
    URLSource,
    UserMessageItem,
    WidgetItem,
    Workflow,
    WorkflowItem,
)

from ._script import (
    ScriptedModel,
    Step,
    container_file_citation,
    file_citation,
    function_call,
    image_generation,
    reasoning,
    refusal,
    text,
    url_citation,
)
from .conftest import Ids, client_for, thread_id_of, timeline

OPENING = ["thread.created", "done user_message msg#1 {!r}", "stream_options cancel=True"]


def opening(question: str) -> list[str]:
    """The first events of every `threads.create` reply."""
    return [line.format(question) for line in OPENING]


def message_lines(ref: str, chunks: list[str]) -> list[str]:
    """The events of an assistant message without citations."""
    whole = "".join(chunks)
    return [
        f"added assistant_message {ref} []",
        f"update {ref} part_added[0] ''",
        *[f"update {ref} text_delta[0] {chunk!r}" for chunk in chunks],
        f"update {ref} part_done[0] {whole!r} annotations=0",
        f"done assistant_message {ref} [{whole!r}]",
    ]


# -- messages ---------------------------------------------------------------------------


async def test_a_message_streams_with_its_citations_as_sources(store: Store[Any]) -> None:
    wiki = "https://en.wikipedia.org/wiki/Paris"
    model = ScriptedModel(
        [
            [
                text(
                    ["Paris is ", "the capital", " of France."],
                    annotations=[
                        url_citation(wiki, "Paris - Wikipedia", 0, 5),
                        # A generated-file path has no ChatKit source: dropped, no gap left.
                        {"type": "file_path", "file_id": "file-xyz", "index": 3},
                        file_citation("atlas.pdf", 21),
                        container_file_citation("population.csv", 9, 20),
                    ],
                    item_id="msg_from_the_model",
                )
            ]
        ]
    )
    agent = Agent(name="Geographer", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("What is the capital of France?")
        thread = await client.get_thread(thread_id_of(events))

    whole = "Paris is the capital of France."
    sources = f"+url:{wiki}@5 +file:atlas.pdf@21 +file:population.csv@20"
    assert timeline(events) == [
        *opening("What is the capital of France?"),
        "added assistant_message msg#2 []",
        "update msg#2 part_added[0] ''",
        "update msg#2 text_delta[0] 'Paris is '",
        "update msg#2 text_delta[0] 'the capital'",
        "update msg#2 text_delta[0] ' of France.'",
        f"update msg#2 annotation[0][0] url:{wiki}@5",
        "update msg#2 annotation[0][1] file:atlas.pdf@21",
        "update msg#2 annotation[0][2] file:population.csv@20",
        f"update msg#2 part_done[0] {whole!r} annotations=3",
        f"done assistant_message msg#2 [{whole!r} {sources}]",
    ]
    user, answer = thread.items.data
    assert isinstance(user, UserMessageItem)
    assert isinstance(answer, AssistantMessageItem)
    assert answer.content[0].text == whole
    assert answer.content[0].annotations == [
        Annotation(source=URLSource(url=wiki, title="Paris - Wikipedia"), index=5),
        Annotation(source=FileSource(filename="atlas.pdf", title="atlas.pdf"), index=21),
        Annotation(source=FileSource(filename="population.csv", title="population.csv"), index=20),
    ]
    assert answer.id == "msg_from_the_model", "a real model id is kept, as in openai-chatkit"


async def test_a_refusal_is_shown_as_the_assistant_text(store: Store[Any]) -> None:
    model = ScriptedModel([[refusal("I can't help with that.")]])
    agent = Agent(name="Careful", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Something dubious")

    assert timeline(events)[3:] == message_lines("msg#2", ["I can't help with that."])


async def test_a_refusal_the_sdk_dropped_is_still_shown(store: Store[Any]) -> None:
    # The SDK ends a refusing run with ModelRefusalError and drops the events it
    # still holds when the run ends first; the user sees the refusal all the same.
    class DroppedEverything:
        async def stream_events(self) -> AsyncIterator[Any]:
            raise ModelRefusalError("I can't help with that.")
            yield

        def cancel(self) -> None:
            pass

    thread = ThreadMetadata(id="thr_refused", created_at=AgentContext.now())
    await store.save_thread(thread, None)
    ctx: AgentContext[Any] = AgentContext(thread=thread, store=store, request_context=None)

    events = [e async for e in stream_agent_response(ctx, DroppedEverything())]  # type: ignore[arg-type]

    assert timeline(events) == ['done assistant_message msg#1 ["I can\'t help with that."]']


async def test_several_model_calls_make_several_messages(store: Store[Any]) -> None:
    @function_tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return "shipped"

    model = ScriptedModel(
        [
            [text("Let me check."), function_call("lookup", '{"order_id": "A1"}')],
            [text(["It has ", "shipped."])],
        ]
    )
    agent = Agent(name="Support", model=model, tools=[lookup])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Where is my order?")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        *message_lines("msg#2", ["Let me check."]),
        *message_lines("msg#3", ["It has ", "shipped."]),
    ]
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "assistant_message",
        "assistant_message",
    ]


# -- reasoning ----------------------------------------------------------------------------


async def test_reasoning_summaries_become_a_workflow_closed_by_the_answer(
    store: Store[Any],
) -> None:
    model = ScriptedModel(
        [[reasoning(["Looking at ", "the question"], "Checking facts"), text("Forty-two.")]]
    )
    agent = Agent(name="Thinker", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("The answer?")
        thread = await client.get_thread(thread_id_of(events))

    tasks = "thought 'Looking at the question'; thought 'Checking facts'"
    assert timeline(events)[3:] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'Looking at '",
        "update wf#1 task_updated[0] thought 'Looking at the question'",
        # The streamed thought is sent whole once done, as openai-chatkit does; the
        # next thoughts of the workflow are shown whole, not streamed.
        "update wf#1 task_updated[0] thought 'Looking at the question'",
        "update wf#1 task_added[1] thought 'Checking facts'",
        f"done workflow wf#1 reasoning [{tasks}] summary=duration",
        *message_lines("msg#2", ["Forty-two."]),
    ]
    _, workflow, answer = thread.items.data
    assert isinstance(workflow, WorkflowItem)
    assert isinstance(workflow.workflow.summary, DurationSummary)
    assert 0 <= workflow.workflow.summary.duration < 60
    assert workflow.workflow.expanded is False
    assert isinstance(answer, AssistantMessageItem)


async def test_reasoning_without_a_summary_still_shows_the_time_spent(
    store: Store[Any],
) -> None:
    model = ScriptedModel([[reasoning(), text("Done.")]])
    agent = Agent(name="Quiet thinker", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Think hard")

    assert timeline(events)[3:] == [
        "added workflow wf#1 reasoning []",
        "done workflow wf#1 reasoning [] summary=duration",
        *message_lines("msg#2", ["Done."]),
    ]


async def test_a_workflow_still_open_when_the_run_ends_is_closed(store: Store[Any]) -> None:
    model = ScriptedModel([[reasoning("Nothing to say")]])
    agent = Agent(name="Mute", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Hello?")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'Nothing to say'",
        "update wf#1 task_updated[0] thought 'Nothing to say'",
        "done workflow wf#1 reasoning [thought 'Nothing to say'] summary=duration",
    ]
    workflow = thread.items.data[-1]
    assert isinstance(workflow, WorkflowItem)
    assert workflow.workflow.summary is not None


# -- tools --------------------------------------------------------------------------------


@function_tool
def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    return f"order {order_id}: shipped"


def support_model() -> ScriptedModel:
    return ScriptedModel(
        [
            [function_call("lookup_order", '{"order_id": "A1"}')],
            [text("It has shipped.")],
        ]
    )


async def test_function_calls_can_be_shown_as_tasks(store: Store[Any]) -> None:
    agent = Agent(name="Support", model=support_model(), tools=[lookup_order])
    responder = AgentResponder(
        agent, stream_converter=ResponseStreamConverter(show_tool_calls=True)
    )

    async with client_for(responder, store) as client:
        events = await client.create_thread("Where is A1?")

    assert timeline(events)[3:] == [
        "added workflow wf#1 custom [custom 'lookup_order' [loading]]",
        "update wf#1 task_updated[0] custom 'lookup_order' [complete]",
        "done workflow wf#1 custom [custom 'lookup_order' [complete]] summary=duration",
        *message_lines("msg#2", ["It has shipped."]),
    ]


async def test_function_calls_are_not_shown_by_default(store: Store[Any]) -> None:
    agent = Agent(name="Support", model=support_model(), tools=[lookup_order])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Where is A1?")

    assert timeline(events)[3:] == message_lines("msg#2", ["It has shipped."])


async def test_tools_add_to_the_reply_through_the_context_in_order(store: Store[Any]) -> None:
    seen: dict[str, Any] = {}

    @function_tool
    async def show_forecast(ctx: RunContextWrapper[AgentContext], city: str) -> str:
        """Show the forecast for a city."""
        agent_context = ctx.context
        await agent_context.progress_update("Fetching the forecast")
        # Tools may change the thread; the client hears of it at once.
        agent_context.thread.title = f"Weather in {city}"
        # What the tool sees is what the client has seen: the reasoning workflow.
        seen["open workflow"] = agent_context.workflow_item.workflow.type  # type: ignore[union-attr]
        await agent_context.add_workflow_task(CustomTask(title="Forecast", content=city))
        widget = Card(children=[Text(id="sky", value="Sunny")])
        item = await agent_context.stream_widget(widget, copy_text=f"Sunny in {city}")
        seen["widget id"] = item.id
        await agent_context.client_effect("highlight", {"city": city})
        return "shown"

    model = ScriptedModel(
        [
            [
                reasoning("The user wants the weather"),
                function_call("show_forecast", '{"city": "Paris"}'),
            ],
            [text("Here it is.")],
        ]
    )
    agent = Agent(name="Weather", model=model, tools=[show_forecast])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Weather in Paris?")
        thread = await client.get_thread(thread_id_of(events))

    ids = Ids()
    tasks = "thought 'The user wants the weather'; custom 'Forecast' 'Paris'"
    assert timeline(events, ids)[3:] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'The user wants the weather'",
        "update wf#1 task_updated[0] thought 'The user wants the weather'",
        "progress 'Fetching the forecast'",
        "thread.updated title='Weather in Paris'",
        "update wf#1 task_added[1] custom 'Forecast' 'Paris'",
        f"done workflow wf#1 reasoning [{tasks}] summary=duration",
        "done widget msg#2 Card",
        "client_effect highlight {'city': 'Paris'}",
        *message_lines("msg#3", ["Here it is."]),
    ]
    assert seen["open workflow"] == "reasoning"
    assert ids(seen["widget id"]) == "msg#2"
    assert thread.title == "Weather in Paris"
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "workflow",
        "widget",
        "assistant_message",
    ]
    widget_item = thread.items.data[2]
    assert isinstance(widget_item, WidgetItem)
    assert widget_item.copy_text == "Sunny in Paris"


async def test_a_tool_can_run_its_own_workflow_and_show_tasks(store: Store[Any]) -> None:
    @function_tool
    async def research(ctx: RunContextWrapper[AgentContext], topic: str) -> str:
        """Research a topic."""
        agent_context = ctx.context
        await agent_context.start_workflow(Workflow(type="custom", tasks=[]))
        first = await agent_context.add_workflow_task(
            CustomTask(title="Searching", status_indicator="loading")
        )
        await agent_context.update_workflow_task(
            CustomTask(title="Searched", content=topic, status_indicator="complete"), first
        )
        await agent_context.end_workflow(CustomSummary(title="Researched"), expanded=True)
        await agent_context.show_task(CustomTask(title="Saved notes"))
        return "done"

    model = ScriptedModel([[function_call("research", '{"topic": "tides"}')], [text("Tides!")]])
    agent = Agent(name="Researcher", model=model, tools=[research])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Tell me about tides")

    assert timeline(events)[3:] == [
        # A custom workflow shows once it has a task.
        "added workflow wf#1 custom [custom 'Searching' [loading]]",
        "update wf#1 task_updated[0] custom 'Searched' 'tides' [complete]",
        "done workflow wf#1 custom [custom 'Searched' 'tides' [complete]] summary='Researched'"
        " expanded",
        "done task tsk#1 custom 'Saved notes'",
        *message_lines("msg#2", ["Tides!"]),
    ]


# -- client tools ---------------------------------------------------------------------------


@function_tool
async def pick_color(ctx: ToolContext[AgentContext], palette: str) -> str:
    """Ask the user to pick a color on the page."""
    ctx.context.client_tool_call = ClientToolCall(
        name="pick_color", arguments={"palette": palette}, call_id=ctx.tool_call_id
    )
    return "The page asks the user."


async def test_a_client_tool_call_ends_the_reply_and_its_output_continues_it(
    store: Store[Any],
) -> None:
    model = ScriptedModel(
        [
            [
                reasoning("The user wants a color"),
                function_call("pick_color", '{"palette": "warm"}', call_id="call_pick"),
            ],
            [reasoning("Got the color"), text("Orange it is.")],
        ]
    )
    agent = Agent(
        name="Painter",
        model=model,
        tools=[pick_color],
        tool_use_behavior=StopAtTools(stop_at_tool_names=["pick_color"]),
    )
    ids = Ids()

    async with client_for(AgentResponder(agent), store) as client:
        first = await client.create_thread("Pick a color for me")
        thread_id = thread_id_of(first)
        waiting = await client.get_thread(thread_id)
        second = await client.stream(
            "threads.add_client_tool_output", thread_id=thread_id, result={"color": "#ff8800"}
        )
        thread = await client.get_thread(thread_id)

    assert timeline(first, ids)[3:] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'The user wants a color'",
        "update wf#1 task_updated[0] thought 'The user wants a color'",
        # The item keeps the id of the model's function call item, as in openai-chatkit.
        "done client_tool_call fc#1 pick_color {'palette': 'warm'} pending call=call_pick",
    ]
    # The workflow stays open while the page works; it is saved as the client shows it.
    assert [item.type for item in waiting.items.data] == [
        "user_message",
        "workflow",
        "client_tool_call",
    ]
    open_workflow = waiting.items.data[1]
    assert isinstance(open_workflow, WorkflowItem)
    assert open_workflow.workflow.summary is None

    # The next reply carries on in the same workflow, and the model sees the call answered.
    tasks = "thought 'The user wants a color'; thought 'Got the color'"
    assert timeline(second, ids) == [
        "stream_options cancel=True",
        "update wf#1 task_added[1] thought 'Got the color'",
        f"done workflow wf#1 reasoning [{tasks}] summary=duration",
        *message_lines("msg#2", ["Orange it is."]),
    ]
    assert model.inputs[1][-2:] == [
        {
            "type": "function_call",
            "call_id": "call_pick",
            "name": "pick_color",
            "arguments": '{"palette": "warm"}',
        },
        {"type": "function_call_output", "call_id": "call_pick", "output": '{"color": "#ff8800"}'},
    ]
    assert [item.type for item in thread.items.data] == [
        "user_message",
        "workflow",
        "client_tool_call",
        "assistant_message",
    ]
    call = thread.items.data[2]
    assert isinstance(call, ClientToolCallItem)
    assert (call.status, call.output) == ("completed", {"color": "#ff8800"})


async def test_a_client_tool_call_without_a_call_id_takes_the_model_s(store: Store[Any]) -> None:
    @function_tool
    async def open_map(ctx: RunContextWrapper[AgentContext], place: str) -> str:
        """Open the map on the page."""
        ctx.context.client_tool_call = ClientToolCall(name="open_map", arguments={"place": place})
        return "opened"

    model = ScriptedModel([[function_call("open_map", '{"place": "Lyon"}', call_id="call_map")]])
    agent = Agent(
        name="Guide",
        model=model,
        tools=[open_map],
        tool_use_behavior=StopAtTools(stop_at_tool_names=["open_map"]),
    )

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Show me Lyon")

    assert timeline(events)[3:] == [
        "done client_tool_call fc#1 open_map {'place': 'Lyon'} pending call=call_map",
    ]


# -- images ---------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
JPEG = "/9j/4AAQSkZJRgABAQAAAQABAAD"


async def test_a_generated_image_streams_its_partial_images_with_progress(
    store: Store[Any],
) -> None:
    model = ScriptedModel(
        [[image_generation(PNG + "final", partials=[JPEG + "one", PNG + "two"]), text("Voilà.")]]
    )
    agent = Agent(name="Painter", model=model)
    responder = AgentResponder(agent, stream_converter=ResponseStreamConverter(partial_images=2))

    async with client_for(responder, store) as client:
        events = await client.create_thread("Paint a cat")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "added generated_image msg#2 (empty)",
        f"update msg#2 image data:image/jpeg;base64,{JPEG}one progress=0.0",
        f"update msg#2 image data:image/png;base64,{PNG}two progress=0.5",
        f"done generated_image msg#2 data:image/png;base64,{PNG}final",
        *message_lines("msg#3", ["Voilà."]),
    ]
    image = thread.items.data[1]
    assert isinstance(image, GeneratedImageItem)
    assert image.image is not None
    assert image.image.id.startswith("ig_"), "the image keeps the model's image id"


async def test_a_failed_image_generation_takes_its_item_away(store: Store[Any]) -> None:
    failed = image_generation("", partials=[PNG])
    failed.final["status"] = "failed"
    failed.final["result"] = None
    model = ScriptedModel([[failed, text("Sorry, no image.")]])
    agent = Agent(name="Painter", model=model)

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Paint a dog")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "added generated_image msg#2 (empty)",
        f"update msg#2 image data:image/png;base64,{PNG} progress=0.0",
        "removed msg#2",
        *message_lines("msg#3", ["Sorry, no image."]),
    ]
    assert [item.type for item in thread.items.data] == ["user_message", "assistant_message"]


# -- guardrails -----------------------------------------------------------------------------


@input_guardrail(run_in_parallel=False)
async def no_homework(ctx: RunContextWrapper[Any], agent: Agent[Any], input: Any) -> Any:
    return GuardrailFunctionOutput(output_info="homework", tripwire_triggered=True)


@output_guardrail
async def no_secrets(ctx: RunContextWrapper[Any], agent: Agent[Any], output: Any) -> Any:
    return GuardrailFunctionOutput(output_info="secret", tripwire_triggered="secret" in output)


async def test_an_input_guardrail_ends_the_reply_with_an_error(store: Store[Any]) -> None:
    model = ScriptedModel([[text("Here is your homework.")]])
    agent = Agent(name="Tutor", model=model, input_guardrails=[no_homework])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Do my homework")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events) == [
        *opening("Do my homework"),
        'error custom "Sorry, I can\'t help with that request." retry=False',
    ]
    assert model.inputs == [], "a blocking guardrail stops the run before the model"
    assert [item.type for item in thread.items.data] == ["user_message"]


async def test_an_output_guardrail_takes_back_what_the_reply_showed(store: Store[Any]) -> None:
    model = ScriptedModel([[reasoning("Hmm"), text(["The secret ", "is 42."])]])
    agent = Agent(name="Keeper", model=model, output_guardrails=[no_secrets])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Tell me the secret")
        thread = await client.get_thread(thread_id_of(events))

    assert timeline(events)[3:] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'Hmm'",
        "update wf#1 task_updated[0] thought 'Hmm'",
        "done workflow wf#1 reasoning [thought 'Hmm'] summary=duration",
        *message_lines("msg#2", ["The secret ", "is 42."]),
        "removed wf#1",
        "removed msg#2",
        'error custom "Sorry, I couldn\'t give an answer that passed the safety checks."'
        " retry=True",
    ]
    assert [item.type for item in thread.items.data] == ["user_message"]


async def test_a_parallel_input_guardrail_takes_back_a_reply_already_streaming(
    store: Store[Any],
) -> None:
    decided = asyncio.Event()

    @input_guardrail
    async def slow_check(ctx: RunContextWrapper[Any], agent: Agent[Any], input: Any) -> Any:
        await decided.wait()
        return GuardrailFunctionOutput(output_info="off-topic", tripwire_triggered=True)

    calls = 0

    async def decide_after_the_first_item() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            decided.set()
            for _ in range(20):  # let the guardrail's verdict land
                await asyncio.sleep(0)

    model = ScriptedModel(
        [Step([text("Sure, here goes"), text("more")], before_item=decide_after_the_first_item)]
    )
    agent = Agent(name="Chatty", model=model, input_guardrails=[slow_check])

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Off-topic question")
        thread = await client.get_thread(thread_id_of(events))

    lines = timeline(events)
    assert lines[3:8] == message_lines("msg#2", ["Sure, here goes"]), "streamed before the verdict"
    shown = {line.split()[2] for line in lines if line.startswith(("added ", "done "))}
    removed = {line.split()[1] for line in lines if line.startswith("removed ")}
    assert removed == shown - {"msg#1"}, "everything the reply showed is taken back"
    assert lines[-1] == 'error custom "Sorry, I can\'t help with that request." retry=False'
    assert [item.type for item in thread.items.data] == ["user_message"]


async def test_by_hand_the_tripwire_is_raised_after_the_reply_is_taken_back(
    store: Store[Any],
) -> None:
    # As openai-chatkit's: code that catches the tripwire itself keeps working.
    model = ScriptedModel([[text("The secret is 42.")]])
    agent = Agent(name="Keeper", model=model, output_guardrails=[no_secrets])
    thread = ThreadMetadata(id="thr_tripped", created_at=AgentContext.now())
    await store.save_thread(thread, None)
    ctx: AgentContext[Any] = AgentContext(thread=thread, store=store, request_context=None)
    result = Runner.run_streamed(agent, "The secret?", context=ctx)

    events: list[ThreadStreamEvent] = []
    with pytest.raises(OutputGuardrailTripwireTriggered):
        async for event in stream_agent_response(ctx, result):
            events.append(event)

    assert timeline(events)[-2:] == [
        "done assistant_message msg#1 ['The secret is 42.']",
        "removed msg#1",
    ]


async def test_the_guardrail_error_can_be_changed(store: Store[Any]) -> None:
    class Polite(ResponseStreamConverter):
        def guardrail_error(self, error: Exception) -> ThreadStreamEvent | None:
            return ErrorEvent(code="custom", message="Let's talk about something else.")

    agent = Agent(name="Tutor", model=ScriptedModel([]), input_guardrails=[no_homework])
    responder = AgentResponder(agent, stream_converter=Polite())

    async with client_for(responder, store) as client:
        events = await client.create_thread("Do my homework")

    assert timeline(events)[-1] == 'error custom "Let\'s talk about something else." retry=False'


# -- failures and cancellation ---------------------------------------------------------------


class Broken(ScriptedModel):
    async def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        async for event in super().stream_response(*args, **kwargs):
            yield event
        raise RuntimeError("the model went away")


async def test_a_failing_run_ends_in_the_usual_stream_error(store: Store[Any]) -> None:
    agent = Agent(name="Flaky", model=Broken([[text("Half an answer")]]))

    async with client_for(AgentResponder(agent), store) as client:
        events = await client.create_thread("Hi")

    assert timeline(events)[-1] == "error stream.error None retry=True"


async def test_closing_the_stream_early_cancels_the_run(store: Store[Any]) -> None:
    never = asyncio.Event()
    stopped = asyncio.Event()

    async def hang() -> None:
        try:
            await never.wait()
        finally:
            stopped.set()

    held = {"calls": 0}

    async def hold_second_item() -> None:
        held["calls"] += 1
        if held["calls"] == 2:
            await hang()

    model = ScriptedModel([Step([text("first"), text("never sent")], before_item=hold_second_item)])
    thread = ThreadMetadata(id="thr_1", created_at=AgentContext.now())
    await store.save_thread(thread, None)
    ctx: AgentContext[Any] = AgentContext(thread=thread, store=store, request_context=None)
    result = Runner.run_streamed(Agent(name="Slow", model=model), "hi", context=ctx)

    events = stream_agent_response(ctx, result)
    seen = [await anext(events) for _ in range(5)]
    await events.aclose()

    assert timeline(seen)[-1] == "done assistant_message msg#1 ['first']"
    await asyncio.wait_for(stopped.wait(), 5)
    assert result.is_complete


async def test_events_emitted_before_the_stream_starts_come_first(store: Store[Any]) -> None:
    thread = ThreadMetadata(id="thr_2", created_at=AgentContext.now())
    await store.save_thread(thread, None)
    ctx: AgentContext[Any] = AgentContext(thread=thread, store=store, request_context=None)
    await ctx.progress_update("Warming up")
    result = Runner.run_streamed(
        Agent(name="Quick", model=ScriptedModel([[text("Hi")]])), "hi", context=ctx
    )

    events = [event async for event in stream_agent_response(ctx, result)]

    assert timeline(events) == ["progress 'Warming up'", *message_lines("msg#1", ["Hi"])]
