"""Thread history as agent input: what the model reads for each kind of item.

The expected values below are the documentation: this is exactly what a model is
sent for a stored thread. The round-trip tests prove the SDK takes it as input.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from agents import Agent, RunContextWrapper, Runner, function_tool
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


def expected_history(*, with_bytes: bool) -> list[dict[str, Any]]:
    """What the model reads for `history()`, with or without the attachment store."""
    if with_bytes:
        attachments: list[dict[str, Any]] = [
            {
                "type": "input_image",
                "detail": "auto",
                "image_url": f"data:image/png;base64,{b64(PNG)}",
            },
            {"type": "input_text", "text": '<file name="notes.txt">\nbuy milk\nfix bike\n</file>'},
            {
                "type": "input_file",
                "filename": "report.pdf",
                "file_data": f"data:application/pdf;base64,{b64(PDF)}",
            },
        ]
    else:
        attachments = [
            {"type": "input_image", "detail": "auto", "image_url": "https://cdn.test/chart.png"},
            {
                "type": "input_text",
                "text": "[The user attached the file 'notes.txt' (text/plain); "
                "its content is not available.]",
            },
            {
                "type": "input_text",
                "text": "[The user attached the file 'report.pdf' (application/pdf); "
                "its content is not available.]",
            },
        ]
    attachments += [
        {"type": "input_image", "detail": "auto", "image_url": "https://cdn.test/old.png"},
        {
            "type": "input_text",
            "text": "[The user attached the file 'old.pdf' (application/pdf); "
            "its content is not available.]",
        },
    ]
    tag = json.dumps({"id": "cust_1", "group": "customers", "data": {"tier": "gold"}})
    return [
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "The user is referring to this text in particular:\n"
                    "<quoted_text>\nRevenue grew 5%\n</quoted_text>",
                },
                {"type": "input_text", "text": "Compare @Acme with @Acme last year"},
                {"type": "input_text", "text": f"@Acme refers to: {tag}"},
                *attachments,
            ],
        },
        user_note(
            "The user was shown that these steps were performed:\n"
            "- Loaded figures: 2023 and 2024\n"
            "- searched the web for acme revenue 2024 (found: Acme IR <https://acme.test/ir>)"
        ),
        user_note("The user was shown a widget (id msg_2):\nRevenue: +5%"),
        {"type": "message", "role": "assistant", "content": "Acme grew 5%.\n\nShall I chart it?"},
        {
            "type": "function_call",
            "call_id": "call_theme",
            "name": "get_theme",
            "arguments": '{"scope": "page"}',
        },
        {"type": "function_call_output", "call_id": "call_theme", "output": '{"theme": "dark"}'},
        # The pending call (call_dangling) is left out: the model never sees a call
        # without its output.
        user_note("The user was shown that this step was performed: Saved chart: chart.png"),
        user_note(
            "The user was asked these questions (answered):\n- Chart type?: bar\n- Title?: skipped"
        ),
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "The assistant generated this image and the user was shown it:",
                },
                {"type": "input_image", "detail": "auto", "image_url": "https://cdn.test/gen.png"},
            ],
        },
        user_note(
            'Context for you, not shown to the user:\n<context>\n{"plan": "enterprise"}\n</context>'
        ),
        user_note(
            "Context for you, not shown to the user:\n<context>\nThe user cancelled the stream. "
            "Stop responding to the prior request.\n</context>"
        ),
        # The end-of-turn marker is for the UI only.
    ]


async def test_every_kind_of_item_reads_as_model_input() -> None:
    converter = ThreadItemConverter(attachment_store=BytesStore(dict(BYTES)))

    converted = await converter.to_agent_input(history())

    assert converted == expected_history(with_bytes=True)


async def test_without_an_attachment_store_attachments_go_by_url_or_are_described() -> None:
    assert await simple_to_agent_input(history()) == expected_history(with_bytes=False)


async def test_attachments_too_large_to_inline_are_not_read_whole() -> None:
    converter = ThreadItemConverter(
        attachment_store=BytesStore(dict(BYTES)), max_attachment_bytes=len(PNG) - 1
    )

    photo = await converter.attachment_to_input(PHOTO)
    notes = await converter.attachment_to_input(NOTES)

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
    class Terse(ThreadItemConverter):
        async def widget_to_input(self, item: WidgetItem) -> Any:
            return None

        async def tag_to_message_content(self, tag: UserMessageTagContent) -> Any:
            return {"type": "input_text", "text": f"{tag.text} is customer {tag.id}"}

    converted = await Terse().to_agent_input(history()[:3])

    assert [item.get("role") for item in converted] == ["user", "user"]
    assert converted[0]["content"][2] == {"type": "input_text", "text": "Acme is customer cust_1"}  # type: ignore[index]


# -- round trips through the SDK ---------------------------------------------------------

_INPUT: TypeAdapter[list[ResponseInputItemParam]] = TypeAdapter(list[ResponseInputItemParam])


async def test_the_sdk_takes_the_converted_history_as_input(store: Store[Any]) -> None:
    converted = await ThreadItemConverter(attachment_store=BytesStore(dict(BYTES))).to_agent_input(
        history()
    )
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
    assert [m["role"] for m in messages][:4] == ["user", "user", "user", "assistant"]


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

    # The third model call starts the second reply: it reads the stored thread.
    assert model.inputs[2] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {
                    "type": "input_text",
                    "text": "The user is referring to this text in particular:\n"
                    "<quoted_text>\n3 + 9\n</quoted_text>",
                },
                {"type": "input_text", "text": "Add it up"},
            ],
        },
        user_note(f"The user was shown a widget (id {widget.id}):\nTotal: 12"),
        {"type": "message", "role": "assistant", "content": "That's 12."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ]
    assert _INPUT.validate_python(model.inputs[2]) == model.inputs[2]
