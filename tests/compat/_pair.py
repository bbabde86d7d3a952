"""`Pair`: the same script and the same requests on the reference and on ours."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._ours import OurSide
from ._reference import RefSide
from ._script import (
    AWARE_RE,
    FRAME_RE,
    Normalizer,
    Outcome,
    Side,
    Step,
    key_orders,
    raw_shape,
)

__all__ = ["Both", "Pair", "assistant_reply"]


@dataclass
class Both:
    """One request's outcome on each side."""

    ref: Outcome
    ours: Outcome

    def each(self) -> list[Outcome]:
        return [self.ref, self.ours]


def assistant_reply(name: str, text: str) -> list[Step]:
    """A turn that answers with one finished assistant message."""
    return [
        {
            "type": "thread.item.done",
            "item": {
                "type": "assistant_message",
                "id": f"$new:message:{name}",
                "thread_id": "$thread",
                "created_at": "$now",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        }
    ]


class Pair:
    """Drives both sides in lockstep and compares what they answer.

    Each side has its own normalizer that lives for the whole test, so an id
    seen in one answer maps to the same placeholder in every later answer.
    """

    def __init__(self, ref: RefSide, ours: OurSide) -> None:
        self.ref = ref
        self.ours = ours
        self.norm = {ref.name: Normalizer(), ours.name: Normalizer()}

    @property
    def sides(self) -> list[Side]:
        return [self.ref, self.ours]

    # -- scripting ---------------------------------------------------------------

    def script(self, *turns: list[Step]) -> None:
        """Queue turns (each a list of steps) for the next replies of both sides."""
        for side in self.sides:
            side.script.turns.extend(copy.deepcopy(list(turns)))

    def sync_answer(self, answer: dict[str, Any]) -> None:
        """Queue what the next `sync_action` returns on both sides."""
        for side in self.sides:
            side.script.sync_answers.append(copy.deepcopy(answer))

    def allow_cancel(self, allow: bool) -> None:
        for side in self.sides:
            side.script.allow_cancel = allow

    def remember(self, name: str, pick: Callable[[Outcome], str], both: Both) -> None:
        """Remember an id from each side's outcome, for `$id:<name>` in later params."""
        self.ref.script.ids[name] = pick(both.ref)
        self.ours.script.ids[name] = pick(both.ours)

    def id(self, side: Side, name: str) -> str:
        return side.script.ids[name]

    # -- requests ----------------------------------------------------------------

    async def request(self, request_type: str, **params: Any) -> Both:
        """Send the same request to both sides (templates resolved per side)."""
        ref = await self.ref.request(request_type, params)
        ours = await self.ours.request(request_type, params)
        return Both(ref, ours)

    async def check(self, request_type: str, **params: Any) -> Both:
        """Send the request to both sides and assert they answer the same."""
        both = await self.request(request_type, **params)
        self.assert_same(both)
        return both

    async def create_thread(
        self, text: str = "Hello", *, name: str = "thread", check: bool = True, **fields: Any
    ) -> Both:
        """`threads.create` with a text message; remembers the thread id as `name`."""
        message = {
            "content": [{"type": "input_text", "text": text}],
            "attachments": [],
            "inference_options": {},
            **fields,
        }
        both = await self.request("threads.create", input=message)
        if check:
            self.assert_same(both)
        self.remember(name, lambda out: out.events[0]["thread"]["id"], both)
        return both

    async def add_message(self, text: str, *, thread: str = "thread", **fields: Any) -> Both:
        message = {
            "content": [{"type": "input_text", "text": text}],
            "attachments": [],
            "inference_options": {},
            **fields,
        }
        return await self.check(
            "threads.add_user_message", thread_id=f"$id:{thread}", input=message
        )

    # -- comparison --------------------------------------------------------------

    def normalized(self, side: Side, value: Any) -> Any:
        return self.norm[side.name](value)

    def assert_same(self, both: Both) -> None:
        """Same status, same kind of answer, same events/JSON, same hook calls."""
        ref, ours = both.ref, both.ours
        assert ref.error is None, f"the reference failed: {ref.error!r}"
        assert ours.status == ref.status == 200, (ours.status, ours.body)
        assert ours.kind == ref.kind
        if ref.kind == "stream":
            assert_sse_framing(ref)
            assert_sse_framing(ours)
            assert ours.content_type.startswith("text/event-stream")
            ref_data, our_data = ref.events, ours.events
        else:
            ref_data, our_data = ref.body, ours.body
        ref_norm = self.normalized(self.ref, ref_data)
        our_norm = self.normalized(self.ours, our_data)
        assert our_norm == ref_norm
        assert key_orders(our_norm) == key_orders(ref_norm), "same JSON, different key order"
        assert raw_shape(ours.raw) == raw_shape(ref.raw), "same JSON, different bytes"
        assert self.normalized(self.ours, _listify(ours.calls)) == self.normalized(
            self.ref, _listify(ref.calls)
        ), "the responder hooks were called differently"
        self.assert_our_timestamps_aware()

    def assert_our_timestamps_aware(self) -> None:
        """Every timestamp ours wrote is ISO 8601 with `Z` or an offset, and parses."""
        stamps = self.norm[self.ours.name].timestamps
        naive = [ts for ts in stamps if not AWARE_RE.search(ts)]
        assert naive == [], f"our timestamps must carry Z or an offset: {naive}"
        for stamp in stamps:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            assert parsed.utcoffset() is not None

    async def assert_same_store(self, thread: str = "thread") -> None:
        """Both stores hold the same items (hidden ones included) for the thread."""
        ref_items = await self.ref.stored_items(self.id(self.ref, thread))
        our_items = await self.ours.stored_items(self.id(self.ours, thread))
        assert self.normalized(self.ours, our_items) == self.normalized(self.ref, ref_items)


def assert_sse_framing(outcome: Outcome) -> None:
    """Every frame is exactly `data: <compact json>\\n\\n`: no `event:`/`id:` lines."""
    assert outcome.frames, "an empty stream"
    assert b"".join(outcome.frames) == outcome.raw
    for frame in outcome.frames:
        assert FRAME_RE.fullmatch(frame), f"bad SSE frame {frame!r}"
        assert b"\nevent:" not in frame and b"\nid:" not in frame
    if outcome.chunks:  # the reference writes one frame per chunk
        assert outcome.chunks == outcome.frames


def _listify(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_listify(v) for v in value]
    return value
