"""The attachments example works as its docstring says (filesystem store by default)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from chatkit_asgi.testing import ChatKitTestClient


async def test_the_example_describes_an_uploaded_text_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATKIT_ATTACHMENTS_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("CHATKIT_DB", str(tmp_path / "chat.db"))
    monkeypatch.delenv("CHATKIT_S3_BUCKET", raising=False)
    example = importlib.import_module("examples.attachments.app")
    site = example.create_app()

    async with ChatKitTestClient(site, path="/chatkit/") as client:
        upload = await client.http.post(
            "/chatkit/upload",
            files={"file": ("todo.txt", b"buy milk\nwalk the dog\n", "text/plain")},
        )
        assert upload.status_code == 200
        events = await client.create_thread("What's this?", attachments=[upload.json()["id"]])
        [answer] = [
            event.item.content[0].text
            for event in events
            if event.type == "thread.item.done" and event.item.type == "assistant_message"
        ]
        assert answer.startswith("I received:\n- todo.txt (text/plain, 22 bytes")
        assert answer.endswith(": “buy milk”")
