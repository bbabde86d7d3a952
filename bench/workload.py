"""What every server does, so that only the implementation differs.

The responder's behaviour is chosen by the first word of the user's message:

- `echo ...`: one assistant message, `Echo: <text>`, as a single `thread.item.done`;
- `deltas ...`: an assistant message streamed as `DELTAS` text deltas (added, part
  added, deltas, part done, done), the way model output arrives;
- `wait ...`: the assistant message is announced (`thread.item.added`), then the
  responder waits (a slow model): the stream stays open and idle.
"""

from __future__ import annotations

import json
from typing import Any

DELTAS = 100
WAIT_SECONDS = 600.0
ENDPOINT_PATH = {"ours": "/chatkit/", "reference": "/chatkit", "floor": "/chatkit"}


DELTA_TEXTS = tuple(f"w{index:03d} " for index in range(DELTAS))
"""The text deltas, all of the same size (prepared once: the responder should cost little)."""
FULL_TEXT = "".join(DELTA_TEXTS)


def mode_of(text: str) -> str:
    return text.split(" ", 1)[0]


def create_body(mode: str) -> bytes:
    """A `threads.create` request whose responder runs `mode`."""
    return json.dumps(
        {
            "type": "threads.create",
            "params": {
                "input": {
                    "content": [{"type": "input_text", "text": f"{mode} hello benchmark"}],
                    "attachments": [],
                    "inference_options": {},
                }
            },
        },
        separators=(",", ":"),
    ).encode()


def add_message_body(thread_id: str, mode: str) -> bytes:
    return json.dumps(
        {
            "type": "threads.add_user_message",
            "params": {
                "thread_id": thread_id,
                "input": {
                    "content": [{"type": "input_text", "text": f"{mode} hello benchmark"}],
                    "attachments": [],
                    "inference_options": {},
                },
            },
        },
        separators=(",", ":"),
    ).encode()


def get_by_id_body(thread_id: str) -> bytes:
    return json.dumps(
        {"type": "threads.get_by_id", "params": {"thread_id": thread_id}}, separators=(",", ":")
    ).encode()


def list_body(limit: int = 20) -> bytes:
    return json.dumps(
        {"type": "threads.list", "params": {"limit": limit, "order": "desc"}},
        separators=(",", ":"),
    ).encode()


def request_mode(body: Any) -> str:
    """The responder mode a parsed `threads.create` body asks for (used by the floor)."""
    content = body["params"]["input"]["content"]
    return mode_of(content[0]["text"]) if content else "echo"
