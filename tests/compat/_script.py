"""What both sides share: the scripted responder, outcomes and normalization.

A `Script` is a queue of turns. Each turn is a list of steps written as plain
JSON data; each side turns a step into its own event classes (through its own
`TypeAdapter(ThreadStreamEvent)`), ids (its own store's id generator) and clock.
Template strings inside steps:

- `"$thread"`: the id of the thread being answered;
- `"$now"`: the side's current time (naive local on the reference, UTC on ours);
- `"$new:<kind>:<name>"`: a fresh id of that kind, remembered as `name`
  (the same name later gives the same id);
- `"$id:<name>"`: a remembered id (also usable in request params).

Special steps: `{"$title": "..."}` changes the thread title; `{"$thread": {...}}`
sets other thread fields (status, metadata, allowed_image_domains); `{"$raise": "stream" |
"custom" | "plain", ...}` raises the side's `StreamError` / `CustomStreamError` /
a plain `RuntimeError`.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel

__all__ = [
    "Normalizer",
    "Outcome",
    "Script",
    "Side",
    "TurnLike",
    "attachment_json",
    "dump",
    "raw_shape",
    "split_sse",
]

ID_RE = re.compile(r"\b(thr|msg|tc|wf|tsk|atc|shcx)_([0-9a-f]{24}|[0-9a-f]{8})\b")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
AWARE_RE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
FRAME_RE = re.compile(rb"data: (\{[^\n]*\})\n\n")
TIMESTAMP = "<timestamp>"


def dump(model: Any, *, wire: bool = True) -> Any:
    """A model as JSON data: as the wire shows it, or (wire=False) as a store keeps it."""
    if model is None:
        return None
    assert isinstance(model, BaseModel)
    if wire:
        return model.model_dump(
            mode="json", by_alias=True, exclude_none=True, context={"exclude_metadata": True}
        )
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def attachment_json(attachment_id: str, name: str, mime_type: str, size: int) -> dict[str, Any]:
    """What both test attachment stores create: a two-phase upload with metadata."""
    data: dict[str, Any] = {
        "type": "image" if mime_type.startswith("image/") else "file",
        "id": attachment_id,
        "name": name,
        "mime_type": mime_type,
        "upload_descriptor": {
            "url": f"https://uploads.example.com/{attachment_id}",
            "method": "PUT",
            "headers": {"x-upload-token": "secret"},
        },
        "metadata": {"bucket": "private", "size": size},
    }
    if data["type"] == "image":
        data["preview_url"] = f"https://uploads.example.com/{attachment_id}/preview"
    return data


def split_sse(raw: bytes) -> list[bytes]:
    """The frames of an SSE body, each `data: <json>\\n\\n`, in order."""
    if not raw:
        return []
    parts = raw.split(b"\n\n")
    assert parts[-1] == b"", f"the body does not end with a blank line: {raw[-80:]!r}"
    return [part + b"\n\n" for part in parts[:-1]]


class TurnLike(Protocol):
    """What the script needs from one side's reply."""

    @property
    def thread_id(self) -> str: ...

    def new_id(self, kind: Any) -> str: ...

    def now(self) -> datetime: ...

    def set_title(self, title: str | None) -> None: ...

    def change_thread(self, fields: dict[str, Any]) -> None: ...

    def event(self, data: dict[str, Any]) -> Any: ...

    def error(self, spec: dict[str, Any]) -> Exception: ...


Step = dict[str, Any]


class Script:
    """One side's copy of the scripted behaviour, and a log of every hook call."""

    def __init__(self) -> None:
        self.turns: deque[list[Step]] = deque()
        self.sync_answers: deque[dict[str, Any]] = deque()
        self.ids: dict[str, str] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.allow_cancel = True

    def record(self, *call: Any) -> None:
        self.calls.append(call)

    def resolve(self, value: Any, turn: TurnLike | None = None) -> Any:
        """`value` with every template string replaced (see the module docs)."""
        if isinstance(value, dict):
            return {k: self.resolve(v, turn) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, turn) for v in value]
        if not isinstance(value, str) or not value.startswith("$"):
            return value
        if value.startswith("$id:"):
            return self.ids[value[4:]]
        assert turn is not None, f"{value} only works inside a turn"
        if value == "$thread":
            return turn.thread_id
        if value == "$now":
            return turn.now()
        if value.startswith("$new:"):
            _, kind, name = value.split(":", 2)
            if name not in self.ids:
                self.ids[name] = turn.new_id(kind)
            return self.ids[name]
        raise AssertionError(f"unknown template {value}")

    async def run(self, turn: TurnLike) -> AsyncIterator[Any]:
        """Play the next turn: yield its events, change the title, or raise."""
        steps = self.turns.popleft() if self.turns else []
        for step in steps:
            if "$title" in step:
                turn.set_title(step["$title"])
            elif "$thread" in step:
                turn.change_thread(step["$thread"])
            elif "$raise" in step:
                raise turn.error(step)
            else:
                yield turn.event(self.resolve(step, turn))

    def sync_answer(self, turn: TurnLike) -> dict[str, Any]:
        answer = self.sync_answers.popleft() if self.sync_answers else {}
        resolved: dict[str, Any] = self.resolve(answer, turn)
        return resolved

    @staticmethod
    def transcription(audio: bytes) -> str:
        return f"heard {len(audio)} bytes: {audio.decode(errors='replace')}"


@dataclass
class Outcome:
    """What one side answered to one request."""

    status: int
    kind: Literal["stream", "json", "raised", "error"]
    raw: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    body: Any = None
    error: Exception | None = None
    content_type: str = ""
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON of every SSE frame."""
        events = []
        for frame in self.frames:
            match = FRAME_RE.fullmatch(frame)
            assert match is not None, f"not a `data: <json>` SSE frame: {frame!r}"
            events.append(json.loads(match.group(1)))
        return events

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


class Side:
    """One implementation under test, with its own script copy and id memory."""

    name = "side"

    def __init__(self) -> None:
        self.script = Script()

    async def _send(self, body: bytes) -> Outcome:
        raise NotImplementedError

    async def request(self, request_type: str, params: dict[str, Any]) -> Outcome:
        body = json.dumps({"type": request_type, "params": self.script.resolve(params)}).encode()
        mark = len(self.script.calls)
        outcome = await self._send(body)
        outcome.calls = self.script.calls[mark:]
        return outcome

    async def stored_items(self, thread_id: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def stored_attachment(self, attachment_id: str) -> dict[str, Any] | None:
        raise NotImplementedError


class Normalizer:
    """Maps generated ids to placeholders (in order of first appearance) and timestamps
    to one placeholder; remembers every timestamp it saw.

    Objects are walked with sorted keys, so the placeholder order does not depend
    on the order in which a side writes keys.
    """

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.timestamps: list[str] = []
        self.raw_ids: list[str] = []

    def _id(self, match: re.Match[str]) -> str:
        full = match.group(0)
        if full not in self.ids:
            self.ids[full] = f"{match.group(1)}_<{len(self.ids) + 1}>"
            self.raw_ids.append(full)
        return self.ids[full]

    def _scan(self, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                self._scan(key)
                self._scan(value[key])
        elif isinstance(value, list | tuple):
            for entry in value:
                self._scan(entry)
        elif isinstance(value, str):
            ID_RE.sub(self._id, value)

    def _rebuild(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {self._rebuild(k): self._rebuild(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._rebuild(v) for v in value)
        if isinstance(value, bytes):
            return "b64:" + base64.b64encode(value).decode()
        if isinstance(value, str):
            if TIMESTAMP_RE.match(value):
                self.timestamps.append(value)
                return TIMESTAMP
            return ID_RE.sub(self._id, value)
        return value

    def __call__(self, value: Any) -> Any:
        """`value` (JSON data) with placeholders; key order is kept."""
        value = copy.deepcopy(value)
        self._scan(value)
        return self._rebuild(value)


RAW_TIMESTAMP_RE = re.compile(rb'"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?"')
RAW_ID_RE = re.compile(rb"\b(thr|msg|tc|wf|tsk|atc|shcx)_([0-9a-f]{24}|[0-9a-f]{8})\b")


def raw_shape(raw: bytes) -> bytes:
    """`raw` with timestamps and ids replaced textually (ids numbered as they appear),
    to compare bytes: spacing, escaping, number formatting and key order."""
    seen: dict[bytes, bytes] = {}

    def replace(match: re.Match[bytes]) -> bytes:
        return seen.setdefault(match.group(0), match.group(1) + b"_<%d>" % (len(seen) + 1))

    return RAW_ID_RE.sub(replace, RAW_TIMESTAMP_RE.sub(b'"<timestamp>"', raw))


def key_orders(value: Any, path: str = "$") -> list[tuple[str, list[str]]]:
    """The key order of every object in `value`, by path."""
    found: list[tuple[str, list[str]]] = []
    if isinstance(value, dict):
        found.append((path, list(value)))
        for key, entry in value.items():
            found.extend(key_orders(entry, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            found.extend(key_orders(entry, f"{path}[{index}]"))
    return found


Check = Callable[[Outcome], Any]
