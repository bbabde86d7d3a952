"""Request envelopes: the JSON bodies the ChatKit UI posts, one class per type."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from ..actions import Action
from .items import InferenceOptions, ThreadItem, UserMessageContent

__all__ = [
    "AttachmentCreateParams",
    "AttachmentDeleteParams",
    "AttachmentsCreateReq",
    "AttachmentsDeleteReq",
    "AudioInput",
    "BaseReq",
    "ChatKitReq",
    "FeedbackKind",
    "InputTranscribeParams",
    "InputTranscribeReq",
    "ItemFeedbackParams",
    "ItemsFeedbackReq",
    "ItemsListParams",
    "ItemsListReq",
    "NonStreamingReq",
    "StreamingReq",
    "StructuredInputAnswerSubmission",
    "StructuredInputSubmission",
    "SyncCustomActionResponse",
    "ThreadAddClientToolOutputParams",
    "ThreadAddStructuredInputParams",
    "ThreadAddUserMessageParams",
    "ThreadCreateParams",
    "ThreadCustomActionParams",
    "ThreadDeleteParams",
    "ThreadGetByIdParams",
    "ThreadListParams",
    "ThreadRetryAfterItemParams",
    "ThreadUpdateParams",
    "ThreadsAddClientToolOutputReq",
    "ThreadsAddStructuredInputReq",
    "ThreadsAddUserMessageReq",
    "ThreadsCreateReq",
    "ThreadsCustomActionReq",
    "ThreadsDeleteReq",
    "ThreadsGetByIdReq",
    "ThreadsListReq",
    "ThreadsRetryAfterItemReq",
    "ThreadsSyncCustomActionReq",
    "ThreadsUpdateReq",
    "TranscriptionResult",
    "UserMessageInput",
    "is_streaming_req",
]

FeedbackKind = Literal["positive", "negative"]
"""Thumbs up or down."""


class BaseReq(BaseModel):
    """Fields every request envelope has.

    Numbers and booleans in request params are strict: the UI sends JSON types,
    so `"10"` for a limit or `"no"` for a flag is refused (400 `invalid_request`).
    """

    metadata: dict[str, Any] = Field(default_factory=dict)
    """Integration-specific data the client sent along."""


class UserMessageInput(BaseModel):
    """What the composer sends: content parts, attachment ids, quote, options."""

    content: list[UserMessageContent]
    attachments: list[str] = Field(default_factory=list)
    quoted_text: str | None = None
    inference_options: InferenceOptions = Field(default_factory=InferenceOptions)


class ThreadCreateParams(BaseModel):
    """Params of `threads.create`."""

    input: UserMessageInput


class ThreadAddUserMessageParams(BaseModel):
    """Params of `threads.add_user_message`."""

    input: UserMessageInput
    thread_id: str


class ThreadAddClientToolOutputParams(BaseModel):
    """Params of `threads.add_client_tool_output`."""

    thread_id: str
    result: Any


class StructuredInputAnswerSubmission(BaseModel):
    """The user's answer to one structured-input question."""

    values: list[str] = Field(default_factory=list)
    skipped: StrictBool = False


class StructuredInputSubmission(BaseModel):
    """The user's answers to a structured-input item, keyed by question id."""

    status: Literal["answered", "skipped"] = "answered"
    answers: dict[str, StructuredInputAnswerSubmission] = Field(default_factory=dict)


class ThreadAddStructuredInputParams(BaseModel):
    """Params of `threads.add_structured_input`."""

    thread_id: str
    item_id: str
    input: StructuredInputSubmission


class ThreadRetryAfterItemParams(BaseModel):
    """Params of `threads.retry_after_item`."""

    thread_id: str
    item_id: str


class ThreadCustomActionParams(BaseModel):
    """Params of `threads.custom_action` and `threads.sync_custom_action`."""

    thread_id: str
    item_id: str | None = None
    action: Action[str, Any]


class ThreadGetByIdParams(BaseModel):
    """Params of `threads.get_by_id`."""

    thread_id: str


class ThreadListParams(BaseModel):
    """Params of `threads.list`."""

    limit: Annotated[StrictInt, Field(ge=0)] | None = None
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


class ThreadUpdateParams(BaseModel):
    """Params of `threads.update`."""

    thread_id: str
    title: str


class ThreadDeleteParams(BaseModel):
    """Params of `threads.delete`."""

    thread_id: str


class ItemsListParams(BaseModel):
    """Params of `items.list`."""

    thread_id: str
    limit: Annotated[StrictInt, Field(ge=0)] | None = None
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


class ItemFeedbackParams(BaseModel):
    """Params of `items.feedback`."""

    thread_id: str
    item_ids: list[str]
    kind: FeedbackKind


class AttachmentCreateParams(BaseModel):
    """Params of `attachments.create`: what the client knows of the file."""

    name: str
    size: Annotated[StrictInt, Field(ge=0)]
    mime_type: str


class AttachmentDeleteParams(BaseModel):
    """Params of `attachments.delete`."""

    attachment_id: str


class InputTranscribeParams(BaseModel):
    """Params of `input.transcribe`: base64 audio and its MIME type."""

    audio_base64: str
    mime_type: str


class ThreadsCreateReq(BaseReq):
    """Start a thread with a user message (streams)."""

    type: Literal["threads.create"] = "threads.create"
    params: ThreadCreateParams


class ThreadsAddUserMessageReq(BaseReq):
    """Add a user message to a thread (streams)."""

    type: Literal["threads.add_user_message"] = "threads.add_user_message"
    params: ThreadAddUserMessageParams


class ThreadsAddClientToolOutputReq(BaseReq):
    """Complete the pending client tool call and continue (streams)."""

    type: Literal["threads.add_client_tool_output"] = "threads.add_client_tool_output"
    params: ThreadAddClientToolOutputParams


class ThreadsAddStructuredInputReq(BaseReq):
    """Answer a pending structured-input item and continue (streams)."""

    type: Literal["threads.add_structured_input"] = "threads.add_structured_input"
    params: ThreadAddStructuredInputParams


class ThreadsRetryAfterItemReq(BaseReq):
    """Drop everything after a user message and answer it again (streams)."""

    type: Literal["threads.retry_after_item"] = "threads.retry_after_item"
    params: ThreadRetryAfterItemParams


class ThreadsCustomActionReq(BaseReq):
    """Run a widget's server action (streams)."""

    type: Literal["threads.custom_action"] = "threads.custom_action"
    params: ThreadCustomActionParams


class ThreadsSyncCustomActionReq(BaseReq):
    """Run a widget's action and answer at once with an optional updated item."""

    type: Literal["threads.sync_custom_action"] = "threads.sync_custom_action"
    params: ThreadCustomActionParams


class ThreadsGetByIdReq(BaseReq):
    """Fetch a thread with its first page of items."""

    type: Literal["threads.get_by_id"] = "threads.get_by_id"
    params: ThreadGetByIdParams


class ThreadsListReq(BaseReq):
    """List threads."""

    type: Literal["threads.list"] = "threads.list"
    params: ThreadListParams


class ThreadsUpdateReq(BaseReq):
    """Rename a thread."""

    type: Literal["threads.update"] = "threads.update"
    params: ThreadUpdateParams


class ThreadsDeleteReq(BaseReq):
    """Delete a thread and its items."""

    type: Literal["threads.delete"] = "threads.delete"
    params: ThreadDeleteParams


class ItemsListReq(BaseReq):
    """List a thread's items."""

    type: Literal["items.list"] = "items.list"
    params: ItemsListParams


class ItemsFeedbackReq(BaseReq):
    """Thumbs up/down on items."""

    type: Literal["items.feedback"] = "items.feedback"
    params: ItemFeedbackParams


class AttachmentsCreateReq(BaseReq):
    """Register an attachment (two-phase upload starts here)."""

    type: Literal["attachments.create"] = "attachments.create"
    params: AttachmentCreateParams


class AttachmentsDeleteReq(BaseReq):
    """Delete an attachment's bytes and metadata."""

    type: Literal["attachments.delete"] = "attachments.delete"
    params: AttachmentDeleteParams


class InputTranscribeReq(BaseReq):
    """Turn dictated audio into composer text."""

    type: Literal["input.transcribe"] = "input.transcribe"
    params: InputTranscribeParams


StreamingReq = (
    ThreadsCreateReq
    | ThreadsAddUserMessageReq
    | ThreadsAddClientToolOutputReq
    | ThreadsAddStructuredInputReq
    | ThreadsRetryAfterItemReq
    | ThreadsCustomActionReq
)
"""Requests answered with a stream of events."""

NonStreamingReq = (
    ThreadsGetByIdReq
    | ThreadsListReq
    | ItemsListReq
    | ItemsFeedbackReq
    | AttachmentsCreateReq
    | AttachmentsDeleteReq
    | ThreadsUpdateReq
    | ThreadsDeleteReq
    | InputTranscribeReq
    | ThreadsSyncCustomActionReq
)
"""Requests answered with one JSON document."""

ChatKitReq = Annotated[StreamingReq | NonStreamingReq, Field(discriminator="type")]
"""Any request envelope, discriminated by `type`."""

_STREAMING_TYPES = (
    ThreadsCreateReq,
    ThreadsAddUserMessageReq,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsRetryAfterItemReq,
    ThreadsCustomActionReq,
)


def is_streaming_req(request: object) -> bool:
    """Whether `request` is answered with a stream of events."""
    return isinstance(request, _STREAMING_TYPES)


class AudioInput(BaseModel):
    """Decoded audio handed to a responder's `transcribe`."""

    data: bytes
    mime_type: str

    @property
    def media_type(self) -> str:
        """The MIME type without parameters, e.g. `audio/webm`."""
        return self.mime_type.split(";", 1)[0].strip()


class TranscriptionResult(BaseModel):
    """What `transcribe` returns: the text for the composer."""

    text: str


class SyncCustomActionResponse(BaseModel):
    """What `sync_action` returns: optionally an item to replace in place."""

    updated_item: ThreadItem | None = None
