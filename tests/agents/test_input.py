"""Thread history as agent input: what the model reads for each kind of item.

The expected values below are the documentation: this is exactly what a model is
sent for a stored thread. The round-trip tests prove the SDK takes it as input.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import chatkit.agents as ref_agents
import chatkit.types as ref_types
import pytest
from agents import Agent, RunContextWrapper, Runner, UserError, function_tool
from agents.models.chatcmpl_converter import Converter as ChatCompletionsConverter
from openai.types.responses import ResponseInputItemParam
from pydantic import TypeAdapter

from chatkit_asgi import AttachmentStore, NotFoundError, Store
from chatkit_asgi.agents import (
    AgentContext,
    AgentResponder,
    ThreadItemConverter,
    simple_to_agent_input,
)
from chatkit_asgi.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    Card,
    ClientToolCallItem,
    CustomTask,
    EndOfTurnItem,
    FileAttachment,
    GeneratedImage,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    InferenceOptions,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputAnswer,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    TaskItem,
    Text,
    ThoughtTask,
    ThreadItem,
    ThreadMetadata,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)

from ._script import ScriptedModel, function_call, text
from .conftest import client_for, thread_id_of

THREAD = "thr_history"
START = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
PDF = b"%PDF-1.7 fake document"


def at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class BytesStore(AttachmentStore[Any]):
    """A tiny attachment store: bytes in a dict, read back in small chunks."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def delete_attachment(self, attachment_id: str, context: Any) -> None:
        self.files.pop(attachment_id, None)

    async def open(self, attachment_id: str, context: Any) -> AsyncIterator[bytes]:  # type: ignore[override]
        if attachment_id not in self.files:
            raise NotFoundError(attachment_id)
        data = self.files[attachment_id]
        for start in range(0, len(data), 8):
            yield data[start : start + 8]


PHOTO = ImageAttachment(
    id="atc_photo",
    name="chart.png",
    mime_type="image/png",
    preview_url="https://cdn.test/chart.png",
)
NOTES = FileAttachment(id="atc_notes", name="notes.txt", mime_type="text/plain")
REPORT = FileAttachment(id="atc_report", name="report.pdf", mime_type="application/pdf")
GONE_PHOTO = ImageAttachment(
    id="atc_gone_photo",
    name="old.png",
    mime_type="image/png",
    preview_url="https://cdn.test/old.png",
)
GONE_FILE = FileAttachment(id="atc_gone_file", name="old.pdf", mime_type="application/pdf")

BYTES = {"atc_photo": PNG, "atc_notes": b"buy milk\nfix bike", "atc_report": PDF}


def history() -> list[ThreadItem]:
    """One stored thread with an item of every kind, oldest first."""
    return [
        UserMessageItem(
            id="msg_1",
            thread_id=THREAD,
            created_at=at(0),
            content=[
                UserMessageTextContent(text="Compare "),
                UserMessageTagContent(
                    id="cust_1", text="Acme", data={"tier": "gold"}, group="customers"
                ),
                UserMessageTextContent(text=" with "),
                UserMessageTagContent(
                    id="cust_1", text="Acme", data={"tier": "gold"}, group="customers"
                ),
                UserMessageTextContent(text=" last year"),
            ],
            quoted_text="Revenue grew 5%",
            attachments=[PHOTO, NOTES, REPORT, GONE_PHOTO, GONE_FILE],
            inference_options=InferenceOptions(),
        ),
        WorkflowItem(
            id="wf_1",
            thread_id=THREAD,
            created_at=at(1),
            workflow=Workflow(
                type="reasoning",
                tasks=[
                    ThoughtTask(content="The user wants a comparison"),
                    CustomTask(title="Loaded figures", content="2023 and 2024"),
                    SearchTask(
                        queries=["acme revenue 2024"],
                        sources=[URLSource(url="https://acme.test/ir", title="Acme IR")],
                    ),
                ],
            ),
        ),
        WidgetItem(
            id="msg_2",
            thread_id=THREAD,
            created_at=at(2),
            widget=Card(children=[Text(value="Revenue: +5%")]),
            copy_text="Revenue: +5%",
        ),
        AssistantMessageItem(
            id="msg_3",
            thread_id=THREAD,
            created_at=at(3),
            content=[
                AssistantMessageContent(text="Acme grew 5%."),
                AssistantMessageContent(text="Shall I chart it?"),
            ],
        ),
        ClientToolCallItem(
            id="tc_1",
            thread_id=THREAD,
            created_at=at(4),
            status="completed",
            call_id="call_theme",
            name="get_theme",
            arguments={"scope": "page"},
            output={"theme": "dark"},
        ),
        ClientToolCallItem(
            id="tc_2",
            thread_id=THREAD,
            created_at=at(5),
            call_id="call_dangling",
            name="get_theme",
            arguments={},
        ),
        TaskItem(
            id="tsk_1",
            thread_id=THREAD,
            created_at=at(6),
            task=CustomTask(title="Saved chart", content="chart.png"),
        ),
        StructuredInputItem(
            id="msg_4",
            thread_id=THREAD,
            created_at=at(7),
            status="answered",
            inputs=[
                StructuredInputMultipleChoice(
                    id="q1",
                    question="Chart type?",
                    options=[
                        StructuredInputMultipleChoiceOption(value="bar"),
                        StructuredInputMultipleChoiceOption(value="line"),
                    ],
                    answer=StructuredInputAnswer(values=["bar"]),
                ),
                StructuredInputFreeform(
                    id="q2", question="Title?", answer=StructuredInputAnswer(skipped=True)
                ),
            ],
        ),
        GeneratedImageItem(
            id="msg_5",
            thread_id=THREAD,
            created_at=at(8),
            image=GeneratedImage(id="ig_1", url="https://cdn.test/gen.png"),
        ),
        HiddenContextItem(
            id="msg_6", thread_id=THREAD, created_at=at(9), content={"plan": "enterprise"}
        ),
        SDKHiddenContextItem(
            id="shcx_1",
            thread_id=THREAD,
            created_at=at(10),
            content="The user cancelled the stream. Stop responding to the prior request.",
        ),
        EndOfTurnItem(id="msg_7", thread_id=THREAD, created_at=at(11)),
    ]


def user_note(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def said(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": text}


class Described(ThreadItemConverter):
    """What an app adds for tags and structured hidden context (the reference requires it)."""

    async def tag_to_message_content(self, tag: UserMessageTagContent) -> Any:
        return {"type": "input_text", "text": f"@{tag.text} is customer {tag.id} ({tag.data})"}

    async def hidden_context_to_input(self, item: HiddenContextItem) -> Any:
        if isinstance(item.content, dict):
            return user_note(f"Plan: {item.content['plan']}")
        return await super().hidden_context_to_input(item)


def expected_history() -> list[dict[str, Any]]:
    """What the model reads for `history()` through `Described` with the attachment store."""
    attachments: list[dict[str, Any]] = [
        {"type": "input_image", "detail": "auto", "image_url": f"data:image/png;base64,{b64(PNG)}"},
        {"type": "input_text", "text": '<file name="notes.txt">\nbuy milk\nfix bike\n</file>'},
        {
            "type": "input_file",
            "filename": "report.pdf",
            "file_data": f"data:application/pdf;base64,{b64(PDF)}",
        },
        # gone from the store: the image by its URL, the file described
        {"type": "input_image", "detail": "auto", "image_url": "https://cdn.test/old.png"},
        {
            "type": "input_text",
            "text": "[The user attached the file 'old.pdf' (application/pdf); "
            "its content is not available.]",
        },
    ]
    card = '{"type":"Card","children":[{"type":"Text","value":"Revenue: +5%"}]}'
    return [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Compare @Acme with @Acme last year"},
                *attachments,
            ],
        },
        # (No quoted text: only the last message's quote is given, as in the reference.)
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "# User-provided context for @-mentions\n"
                    "- When referencing resolved entities, use their canonical names "
                    "**without** '@'.\n"
                    "- The '@' form appears only in user text and should not be echoed.",
                },
                # once per tag, though mentioned twice
                {"type": "input_text", "text": "@Acme is customer cust_1 ({'tier': 'gold'})"},
            ],
        },
        # the workflow: its custom task (the thought and the search are the model's own)
        user_note(
            "A message was displayed to the user that the following task was performed:\n"
            "<Task>\nLoaded figures: 2023 and 2024\n</Task>"
        ),
        user_note(
            f"The following graphical UI widget (id: msg_2) was displayed to the user:{card}"
        ),
        said("Acme grew 5%.\n\nShall I chart it?"),
        {
            "type": "function_call",
            "call_id": "call_theme",
            "name": "get_theme",
            "arguments": '{"scope": "page"}',
        },
        {"type": "function_call_output", "call_id": "call_theme", "output": '{"theme": "dark"}'},
        # The pending call (call_dangling) is left out: the model never sees a call
        # without its output.
        user_note(
            "A message was displayed to the user that the following task was performed:\n"
            "<Task>\nSaved chart: chart.png\n</Task>"
        ),
        user_note(
            "A structured input request was displayed to the user with the following "
            "status: answered\n<StructuredInput>\n- Chart type?: bar\n- Title?: skipped\n"
            "</StructuredInput>"
        ),
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "The following image was generated by the agent."},
                {"type": "input_image", "detail": "auto", "image_url": "https://cdn.test/gen.png"},
            ],
        },
        user_note("Plan: enterprise"),
        user_note(
            "Hidden context for the agent (not shown to the user):\n<HiddenContext>\n"
            "The user cancelled the stream. Stop responding to the prior request.\n"
            "</HiddenContext>"
        ),
        # The end-of-turn marker is for the UI only.
    ]


async def test_every_kind_of_item_reads_as_model_input() -> None:
    converter = Described(attachment_store=BytesStore(dict(BYTES)))

    converted = await converter.to_agent_input(history())

    assert converted == expected_history()


# -- the same input as openai-chatkit's converter -----------------------------------------

_REFERENCE_ITEMS: TypeAdapter[Any] = TypeAdapter(ref_types.ThreadItem)


def as_reference(item: ThreadItem) -> Any:
    """The same stored item as openai-chatkit's class (read from its JSON)."""
    return _REFERENCE_ITEMS.validate_json(item.model_dump_json())


def without_app_defined_parts(item: ThreadItem) -> ThreadItem:
    """The item with no tags, attachments or structured hidden context (which the
    reference's default converter refuses), and the last message's quote kept."""
    if isinstance(item, UserMessageItem):
        text = [part for part in item.content if isinstance(part, UserMessageTextContent)]
        return item.model_copy(update={"content": text, "attachments": []})
    if isinstance(item, HiddenContextItem):
        return item.model_copy(update={"content": "The user is on the enterprise plan"})
    return item


async def test_the_defaults_give_the_reference_s_input_item_for_item() -> None:
    items = [without_app_defined_parts(item) for item in history()]
    last_message = UserMessageItem(
        id="msg_8",
        thread_id=THREAD,
        created_at=at(12),
        content=[UserMessageTextContent(text="And now?")],
        quoted_text="Shall I chart it?",
        attachments=[],
        inference_options=InferenceOptions(),
    )
    items = [*items, last_message]

    ours = await simple_to_agent_input(items)
    theirs = await ref_agents.simple_to_agent_input([as_reference(item) for item in items])

    assert ours == [as_text_content(entry) for entry in theirs]
    assert ours[-1] == user_note("The user is referring to this in particular: \nShall I chart it?")
    for item in items:  # each kind on its own too (`is_last_message` for each)
        theirs = await ref_agents.simple_to_agent_input(as_reference(item))
        assert await simple_to_agent_input(item) == [as_text_content(e) for e in theirs]


def as_text_content(entry: Any) -> Any:
    """The reference's input entry with assistant `output_text` parts as text content:
    the one deliberate difference (the SDK's Chat Completions converter refuses the parts)."""
    if entry.get("role") != "assistant" or isinstance(entry["content"], str):
        return entry
    return said("\n\n".join(part["text"] for part in entry["content"]))


async def test_assistant_text_reaches_chat_completions_models() -> None:
    reply = history()[3]
    ours = await simple_to_agent_input(reply)
    theirs = await ref_agents.simple_to_agent_input(as_reference(reply))

    messages = ChatCompletionsConverter.items_to_messages(ours)
    assert messages == [{"role": "assistant", "content": "Acme grew 5%.\n\nShall I chart it?"}]
    with pytest.raises(UserError, match="Unknown content"):  # why we differ from the reference
        ChatCompletionsConverter.items_to_messages(theirs)


async def test_what_the_app_must_define_raises_as_in_the_reference() -> None:
    message, *_ = history()
    tagged = message.model_copy(update={"attachments": []})
    attached = message.model_copy(update={"content": [UserMessageTextContent(text="see")]})
    structured = history()[9]
    assert isinstance(structured, HiddenContextItem)

    for item in (tagged, attached, structured):
        with pytest.raises(NotImplementedError):
            await simple_to_agent_input(item)
        with pytest.raises(NotImplementedError):
            await ref_agents.simple_to_agent_input(as_reference(item))
    with pytest.raises(NotImplementedError, match=r"@Acme.*tag_to_message_content"):
        await ThreadItemConverter().to_agent_input(tagged)
    with pytest.raises(NotImplementedError, match="for_turn"):
        await ThreadItemConverter().to_agent_input(attached)


async def test_attachments_too_large_to_inline_are_not_read_whole() -> None:
    converter = ThreadItemConverter(
        attachment_store=BytesStore(dict(BYTES)), max_attachment_bytes=len(PNG) - 1
    )

    photo = await converter.attachment_to_message_content(PHOTO)
    notes = await converter.attachment_to_message_content(NOTES)

    assert photo == {
        "type": "input_image",
        "detail": "auto",
        "image_url": "https://cdn.test/chart.png",
    }
    assert notes == {
        "type": "input_text",
        "text": '<file name="notes.txt">\nbuy milk\nfix bike\n</file>',
    }


async def test_one_kind_of_item_can_read_differently() -> None:
    class Terse(Described):
        async def widget_to_input(self, item: WidgetItem) -> Any:
            return None

    converted = await Terse(attachment_store=BytesStore(dict(BYTES))).to_agent_input(history()[:3])

    assert [item.get("role") for item in converted] == ["user", "user", "user"]
    assert converted == expected_history()[:3]


# -- converters written for openai-chatkit, and for chatkit-asgi's earlier names -----------


async def test_a_subclass_that_skips_init_works() -> None:
    class Mine(ThreadItemConverter):
        def __init__(self, prefix: str) -> None:  # no super().__init__(), as in the reference
            self.prefix = prefix

        async def attachment_to_message_content(self, attachment: Attachment) -> Any:
            return {"type": "input_text", "text": f"{self.prefix} {attachment.name}"}

        async def tag_to_message_content(self, tag: UserMessageTagContent) -> Any:
            return {"type": "input_text", "text": f"{self.prefix} {tag.text}"}

    converted = await Mine("file:").to_agent_input(history()[:1])

    assert converted[0]["content"][1:3] == [  # type: ignore[index]
        {"type": "input_text", "text": "file: chart.png"},
        {"type": "input_text", "text": "file: notes.txt"},
    ]
    assert converted[1] == user_note(
        "The user is referring to this in particular: \nRevenue grew 5%"
    )
    assert converted[2]["content"][1] == {"type": "input_text", "text": "file: Acme"}  # type: ignore[index]
    bare = Mine("x")
    assert (bare.attachment_store, bare.context) == (None, None)
    assert await bare.attachment_bytes(PHOTO) is None


async def test_earlier_names_still_work() -> None:
    read: list[str] = []

    class Earlier(Described):
        async def attachment_to_input(self, attachment: Attachment) -> Any:
            read.append(attachment.id)
            return {"type": "input_text", "text": attachment.name}

        async def item_to_input(self, item: ThreadItem, *, is_last_message: bool = True) -> Any:
            if isinstance(item, EndOfTurnItem):
                return user_note("(end of turn)")
            return await super().item_to_input(item, is_last_message=is_last_message)

    converted = await Earlier().to_agent_input(history())

    assert read == [a.id for a in (PHOTO, NOTES, REPORT, GONE_PHOTO, GONE_FILE)]
    assert converted[0]["content"][1] == {"type": "input_text", "text": "chart.png"}  # type: ignore[index]
    assert converted[-1] == user_note("(end of turn)")


async def test_the_reference_s_private_step_can_be_overridden() -> None:
    class Filtered(Described):
        async def _thread_item_to_input_item(
            self, item: ThreadItem, is_last_message: bool = True
        ) -> Any:
            if isinstance(item, WidgetItem):
                return []
            return await super()._thread_item_to_input_item(item, is_last_message)

    converted = await Filtered(attachment_store=BytesStore(dict(BYTES))).to_agent_input(history())

    assert converted == [entry for i, entry in enumerate(expected_history()) if i != 3]


# -- round trips through the SDK ---------------------------------------------------------

_INPUT: TypeAdapter[list[ResponseInputItemParam]] = TypeAdapter(list[ResponseInputItemParam])


async def test_the_sdk_takes_the_converted_history_as_input(store: Store[Any]) -> None:
    converted = await Described(attachment_store=BytesStore(dict(BYTES))).to_agent_input(history())
    model = ScriptedModel([[text("Here is the chart.")]])
    thread = ThreadMetadata(id=THREAD, created_at=START)
    context: AgentContext[Any] = AgentContext(thread=thread, store=store, request_context=None)

    result = Runner.run_streamed(Agent(name="Analyst", model=model), converted, context=context)
    async for _ in result.stream_events():
        pass

    assert result.final_output == "Here is the chart."
    assert model.inputs == [converted], "the model receives the history unchanged"
    # Valid Responses API input, and convertible for Chat Completions models too.
    assert _INPUT.validate_python(converted) == converted
    messages = ChatCompletionsConverter.items_to_messages(converted)
    assert [m["role"] for m in messages][:5] == ["user", "user", "user", "user", "assistant"]


async def test_the_next_turn_reads_what_the_last_one_showed(store: Store[Any]) -> None:
    @function_tool
    async def show_total(ctx: RunContextWrapper[AgentContext], amount: int) -> str:
        """Show a total on a card."""
        await ctx.context.stream_widget(
            Card(children=[Text(value=f"Total: {amount}")]), copy_text=f"Total: {amount}"
        )
        return "shown"

    model = ScriptedModel(
        [
            [function_call("show_total", '{"amount": 12}', call_id="call_total")],
            [text("That's 12.")],
            [text("You're welcome.")],
        ]
    )
    agent = Agent(name="Accountant", model=model, tools=[show_total])

    async with client_for(AgentResponder(agent), store) as client:
        first = await client.create_thread("Add it up", quoted_text="3 + 9")
        await client.add_message(thread_id_of(first), "Thanks")
        thread = await client.get_thread(thread_id_of(first))

    widget = next(item for item in thread.items.data if isinstance(item, WidgetItem))

    # The first model call: the message and, as it is the last one, what it quotes.
    assert model.inputs[0] == [
        user_note("Add it up"),
        user_note("The user is referring to this in particular: \n3 + 9"),
    ]
    # The third model call starts the second reply: it reads the stored thread (the
    # quote belonged to the first question, answered already).
    card = '{"type":"Card","children":[{"type":"Text","value":"Total: 12"}]}'
    assert model.inputs[2] == [
        user_note("Add it up"),
        user_note(
            f"The following graphical UI widget (id: {widget.id}) was displayed to the user:{card}"
        ),
        said("That's 12."),
        user_note("Thanks"),
    ]
