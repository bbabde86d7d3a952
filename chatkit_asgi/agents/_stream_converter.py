"""`ResponseStreamConverter`: how model output becomes ChatKit items (images,
citations, tool calls, guardrail errors); `stream_agent_response` calls it as it
maps the run's events.
"""

from __future__ import annotations

from typing import Any

from agents import InputGuardrailTripwireTriggered
from openai.types.responses.response_output_text import (
    Annotation as ResponsesAnnotation,
)
from openai.types.responses.response_output_text import (
    AnnotationContainerFileCitation,
    AnnotationFileCitation,
    AnnotationURLCitation,
)
from pydantic import BaseModel, TypeAdapter

from ..types import (
    Annotation,
    AssistantMessageContent,
    CustomTask,
    ErrorEvent,
    FileSource,
    Task,
    ThreadStreamEvent,
    URLSource,
)
from ._fields import text_of

__all__ = ["DEFAULT_CONVERTER", "ResponseStreamConverter"]

_RESPONSES_ANNOTATION: TypeAdapter[ResponsesAnnotation] = TypeAdapter(ResponsesAnnotation)

_IMAGE_SIGNATURES = {"iVBOR": "image/png", "/9j/": "image/jpeg", "UklGR": "image/webp"}


class ResponseStreamConverter:
    """How model output becomes ChatKit items; subclass and override any method.

    The method names and signatures are openai-chatkit's, so its converters
    port unchanged. `partial_images` is the number of partial images requested
    from the image tool (for progress); `show_tool_calls` shows each function
    call as a task of the open workflow.
    """

    # Class defaults too: a subclass whose `__init__` skips ours still works.
    partial_images: int | None = None
    """Partial images expected per generated image, for progress (None: unknown)."""
    show_tool_calls: bool = False
    """Show each function call as a task of the open workflow."""

    def __init__(self, *, partial_images: int | None = None, show_tool_calls: bool = False):
        self.partial_images = partial_images
        self.show_tool_calls = show_tool_calls

    # -- images ---------------------------------------------------------------------

    async def base64_image_to_url(
        self, image_id: str, base64_image: str, partial_image_index: int | None = None
    ) -> str:
        """The URL stored for a generated image; a data URL by default.

        Override to upload the image somewhere and return its URL (thread items
        then stay small). `image_id` is stable across the partial images;
        `partial_image_index` is None for the final image.
        """
        mime = next(
            (m for prefix, m in _IMAGE_SIGNATURES.items() if base64_image.startswith(prefix)),
            "image/png",
        )
        return f"data:{mime};base64,{base64_image}"

    def partial_image_index_to_progress(self, partial_image_index: int) -> float:
        """Progress 0..1 of a partial image (0 when `partial_images` is unknown)."""
        if not self.partial_images or self.partial_images <= 0:
            return 0.0
        return min(1.0, partial_image_index / self.partial_images)

    # -- citations ------------------------------------------------------------------

    async def file_citation_to_annotation(
        self, file_citation: AnnotationFileCitation
    ) -> Annotation | None:
        """A file search citation as a file source (None drops it)."""
        if not file_citation.filename:
            return None
        return Annotation(
            source=FileSource(filename=file_citation.filename, title=file_citation.filename),
            index=file_citation.index,
        )

    async def url_citation_to_annotation(
        self, url_citation: AnnotationURLCitation
    ) -> Annotation | None:
        """A web citation as a URL source placed at the end of the cited text."""
        return Annotation(
            source=URLSource(url=url_citation.url, title=url_citation.title or url_citation.url),
            index=url_citation.end_index,
        )

    async def container_file_citation_to_annotation(
        self, container_file_citation: AnnotationContainerFileCitation
    ) -> Annotation | None:
        """A code interpreter file citation as a file source (None drops it)."""
        filename = container_file_citation.filename
        if not filename:
            return None
        return Annotation(
            source=FileSource(filename=filename, title=filename),
            index=container_file_citation.end_index,
        )

    # -- tools and guardrails -------------------------------------------------------

    def tool_call_to_task(self, name: str, arguments: str) -> Task | None:
        """The task shown while a function tool runs, or None to show nothing."""
        if not self.show_tool_calls:
            return None
        return CustomTask(title=name, status_indicator="loading")

    def tool_output_to_task(self, task: Task, output: Any) -> Task:
        """The task shown once the tool has answered."""
        return task.model_copy(update={"status_indicator": "complete"})

    def guardrail_error(self, error: Exception) -> ThreadStreamEvent | None:
        """What the user sees when a guardrail stops the run (None: nothing).

        `run_agent` and `AgentResponder` send it; `stream_agent_response` itself
        raises the tripwire, as openai-chatkit's does.
        """
        if isinstance(error, InputGuardrailTripwireTriggered):
            return ErrorEvent(
                code="custom",
                message="Sorry, I can't help with that request.",
                allow_retry=False,
            )
        return ErrorEvent(
            code="custom",
            message="Sorry, I couldn't give an answer that passed the safety checks.",
            allow_retry=True,
        )

    # -- internal -------------------------------------------------------------------

    async def _annotation(self, raw: object) -> Annotation | None:
        # The event's annotation may be a look-alike class or a plain dict (the
        # openai client does not always parse it): read it again as the
        # output-text annotation type. One that does not read is dropped.
        data = raw.model_dump() if isinstance(raw, BaseModel) else raw
        try:
            annotation = _RESPONSES_ANNOTATION.validate_python(data)
        except ValueError:
            return None
        if isinstance(annotation, AnnotationFileCitation):
            return await self.file_citation_to_annotation(annotation)
        if isinstance(annotation, AnnotationURLCitation):
            return await self.url_citation_to_annotation(annotation)
        if isinstance(annotation, AnnotationContainerFileCitation):
            return await self.container_file_citation_to_annotation(annotation)
        return None

    async def _content(self, part: object) -> AssistantMessageContent | None:
        kind = getattr(part, "type", None)
        if kind == "output_text":
            converted = [await self._annotation(a) for a in getattr(part, "annotations", ())]
            return AssistantMessageContent(
                text=text_of(getattr(part, "text", "")),
                annotations=[a for a in converted if a is not None],
            )
        if kind == "refusal":
            return AssistantMessageContent(text=text_of(getattr(part, "refusal", "")))
        return None


DEFAULT_CONVERTER = ResponseStreamConverter()
"""The converter of a run that names none."""
