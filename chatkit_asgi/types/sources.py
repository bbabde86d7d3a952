"""Sources, annotations, workflows and tasks: the supporting context of answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .icons import IconName

__all__ = [
    "Annotation",
    "BaseTask",
    "CustomSummary",
    "CustomTask",
    "DurationSummary",
    "EntitySource",
    "FileSource",
    "FileTask",
    "ImageTask",
    "SearchTask",
    "Source",
    "SourceBase",
    "Task",
    "ThoughtTask",
    "URLSource",
    "Workflow",
    "WorkflowSummary",
]


class SourceBase(BaseModel):
    """Fields every source shows: a title and optional description, time and group."""

    title: str
    description: str | None = None
    timestamp: str | None = None
    group: str | None = None


class FileSource(SourceBase):
    """A file the answer draws on."""

    type: Literal["file"] = "file"
    filename: str


class URLSource(SourceBase):
    """A web page the answer draws on."""

    type: Literal["url"] = "url"
    url: str
    attribution: str | None = None


class EntitySource(SourceBase):
    """An application entity (a customer, a ticket...) the answer refers to."""

    type: Literal["entity"] = "entity"
    id: str
    icon: IconName | None = None
    label: str | None = None
    inline_label: str | None = None
    interactive: bool = False
    data: dict[str, Any] = Field(default_factory=dict)
    preview: Literal["lazy"] | None = None
    """Ignored by current clients; kept so old payloads still validate."""


Source = Annotated[URLSource | FileSource | EntitySource, Field(discriminator="type")]
"""Any kind of source."""


class Annotation(BaseModel):
    """A citation attached to assistant text, optionally at a character index."""

    type: Literal["annotation"] = "annotation"
    # A plain (smart-mode) union like the reference's: a source without `type`
    # still validates as the one kind it fits.
    source: URLSource | FileSource | EntitySource
    index: int | None = None


class BaseTask(BaseModel):
    """Fields shared by workflow tasks."""

    status_indicator: Literal["none", "loading", "complete"] = "none"


class CustomTask(BaseTask):
    """A task with free title, icon and content."""

    type: Literal["custom"] = "custom"
    title: str | None = None
    icon: IconName | None = None
    content: str | None = None


class SearchTask(BaseTask):
    """A web search with its queries and the sources it found."""

    type: Literal["web_search"] = "web_search"
    title: str | None = None
    title_query: str | None = None
    queries: list[str] = Field(default_factory=list)
    sources: list[URLSource] = Field(default_factory=list)


class ThoughtTask(BaseTask):
    """A step of visible reasoning."""

    type: Literal["thought"] = "thought"
    title: str | None = None
    content: str


class FileTask(BaseTask):
    """A task that read files."""

    type: Literal["file"] = "file"
    title: str | None = None
    sources: list[FileSource] = Field(default_factory=list)


class ImageTask(BaseTask):
    """A task that produced or examined an image."""

    type: Literal["image"] = "image"
    title: str | None = None


Task = Annotated[
    CustomTask | SearchTask | ThoughtTask | FileTask | ImageTask,
    Field(discriminator="type"),
]
"""Any kind of workflow task."""


class CustomSummary(BaseModel):
    """A workflow summary with a title and icon."""

    title: str
    icon: IconName | None = None


class DurationSummary(BaseModel):
    """A workflow summary that shows how long it took, in seconds."""

    duration: int


WorkflowSummary = CustomSummary | DurationSummary
"""Either kind of workflow summary."""


class Workflow(BaseModel):
    """A group of tasks shown together (e.g. reasoning), with an optional summary."""

    type: Literal["custom", "reasoning"]
    tasks: list[Task]
    summary: WorkflowSummary | None = None
    expanded: bool = False
