"""Attachments: files and images a user sends with a message."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AnyUrl,
    BaseModel,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)

__all__ = [
    "Attachment",
    "AttachmentBase",
    "AttachmentUploadDescriptor",
    "FileAttachment",
    "ImageAttachment",
]


class AttachmentUploadDescriptor(BaseModel):
    """Where and how the client uploads the bytes in a two-phase upload."""

    url: AnyUrl
    method: Literal["POST", "PUT"]
    headers: dict[str, str] = Field(default_factory=dict)


class AttachmentBase(BaseModel):
    """Fields every attachment has.

    `metadata` is for the integration only: stores keep it, the wire never shows it.
    """

    id: str
    name: str
    mime_type: str
    upload_descriptor: AttachmentUploadDescriptor | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None

    def _drop_metadata_on_the_wire(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> Any:
        data = handler(self)
        context = info.context
        # "exclude_metadata" is the reference's spelling; accept it for migrations.
        if (
            isinstance(data, dict)
            and isinstance(context, dict)
            and (context.get("wire") or context.get("exclude_metadata"))
        ):
            data.pop("metadata", None)
        return data

    # Without a return annotation pydantic describes the output with the model's
    # own schema (an `Any` annotation would make it an untyped `{}`).
    del _drop_metadata_on_the_wire.__annotations__["return"]
    _drop_metadata_on_the_wire = model_serializer(mode="wrap")(_drop_metadata_on_the_wire)


class FileAttachment(AttachmentBase):
    """Any file."""

    type: Literal["file"] = "file"


class ImageAttachment(AttachmentBase):
    """An image, with the preview URL the UI displays."""

    type: Literal["image"] = "image"
    preview_url: AnyUrl


Attachment = Annotated[FileAttachment | ImageAttachment, Field(discriminator="type")]
"""Either kind of attachment."""
