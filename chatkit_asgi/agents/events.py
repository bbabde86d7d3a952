"""`stream_agent_response`: an Agents SDK streamed run, as ChatKit events.

What the model streams becomes what the ChatKit UI draws:

- output messages: assistant message items, with text deltas, content parts and
  citations (file, URL and container-file citations become sources);
- reasoning summaries: a reasoning workflow with one thought task per summary
  part (the first thought of a workflow streams, the others appear whole),
  closed with its duration when a visible item follows it;
- function calls: workflow tasks, when the converter says so (`show_tool_calls`);
- image generation: a generated image item, updated with each partial image;
- a tool that sets `AgentContext.client_tool_call`: a pending client tool call
  item that ends the reply;
- a guardrail tripwire: the items of the reply are removed and the tripwire is
  raised again (`run_agent` turns it into an error the user sees).

Events are read by their `type`, not their class, and need not come in Responses
API order: Chat Completions models (the SDK's own handler, LiteLLM...) may send
deltas, content parts and annotations of an item that was never announced, and
give every item the same placeholder id. Items keep the model's ids, as in
openai-chatkit, except placeholder or repeated ones, which get the store's.

Events that tools emit through the `AgentContext` are merged in, in order.

The parts: `_stream_converter` (how model output becomes items, overridable),
`_translation` (the mapping, event by event), `_item_ids` (which item an event is
about) and `_thoughts` (reasoning summaries as thought tasks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from agents import (
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    RunResultStreaming,
)
from agents import exceptions as sdk_exceptions

from ..types import ThreadStreamEvent
from ._stream_converter import DEFAULT_CONVERTER, ResponseStreamConverter
from ._thoughts import StreamingThoughtTracker
from ._translation import Translation
from .context import AgentContext, _Barrier, _End, _FromContext, _FromSDK, _Outbox

__all__ = ["ResponseStreamConverter", "StreamingThoughtTracker", "stream_agent_response"]


# Tool guardrails arrived in later SDK releases; trip them the same way when present.
TRIPWIRES: tuple[type[Exception], ...] = (
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    *(
        error
        for name in ("ToolInputGuardrailTripwireTriggered", "ToolOutputGuardrailTripwireTriggered")
        if isinstance(error := getattr(sdk_exceptions, name, None), type)
        and issubclass(error, Exception)
    ),
)

# Recent SDKs raise this after a refusal the user has already been shown: the
# reply is complete, not failed.
_REFUSAL: tuple[type[Exception], ...] = tuple(
    error
    for error in [getattr(sdk_exceptions, "ModelRefusalError", None)]
    if isinstance(error, type) and issubclass(error, Exception)
)


async def _pump(result: RunResultStreaming, outbox: _Outbox) -> None:
    """Move the SDK's events into the outbox as soon as they exist."""
    try:
        async for event in result.stream_events():
            outbox.put(_FromSDK(event))
    except Exception as error:
        outbox.put(_End(error))
    else:
        outbox.put(_End(None))


async def stream_agent_response(
    context: AgentContext[Any],
    result: RunResultStreaming,
    *,
    converter: ResponseStreamConverter | None = None,
) -> AsyncGenerator[ThreadStreamEvent, None]:
    """The ChatKit events of a streamed Agents SDK run, with what tools emitted.

    ::

        ctx = AgentContext.from_turn(turn)
        result = Runner.run_streamed(agent, input_items, context=ctx)
        async for event in stream_agent_response(ctx, result):
            yield event

    A guardrail tripwire removes the items this reply produced, then is raised
    again, as openai-chatkit does (`run_agent` shows the converter's
    `guardrail_error` instead); any other run error propagates too. Closing the
    iterator early cancels the run.
    """
    translation = Translation(context, converter or DEFAULT_CONVERTER)
    outbox = context._outbox
    # Consume the SDK's stream before anything else: when a run fails, the SDK
    # drops the events it still holds. A plain task rather than a task group: a
    # task group's scope cannot stay open across the `yield`s of an async
    # generator that its consumer may abandon.
    pump = asyncio.ensure_future(_pump(result, outbox))
    outbox.attach()
    error: BaseException | None = None
    try:
        if context.workflow_item is None:
            await translation.adopt_open_workflow()
        while True:
            entry = await outbox.get()
            if isinstance(entry, _Barrier):
                entry.reached.set()
            elif isinstance(entry, _FromContext):
                translation.ids.track(entry.event)
                yield entry.event
            elif isinstance(entry, _FromSDK):
                for event in await translation.handle(entry.event):
                    translation.ids.track(event)
                    yield event
            else:
                error = entry.error
                break
        # What tools emitted after the SDK's last event (nothing waits for it now).
        late: list[ThreadStreamEvent] = []
        for entry in outbox.drain():
            if isinstance(entry, _Barrier):
                entry.reached.set()
            elif isinstance(entry, _FromContext):
                late.append(entry.event)
        outbox.detach()
        if isinstance(error, TRIPWIRES):
            for event in translation.tripped():
                yield event
            raise error
        if isinstance(error, _REFUSAL):
            late += translation.refused(str(getattr(error, "refusal", "")))
        elif error is not None:
            raise error
        for event in [*late, *await translation.finish()]:
            translation.ids.track(event)
            yield event
    finally:
        if not pump.done():
            # Stopped early (cancelled, or closed by the consumer): stop the run too.
            result.cancel()
            pump.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await asyncio.wait([pump])
        outbox.detach()
