"""A worker killed mid-answer loses at most one checkpoint interval of the answer.

The app runs in a real uvicorn process over an SQLite file; the test reads part
of a streaming answer, kills the process with SIGKILL, starts a new one on the
same file and loads the thread.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatkit_asgi.testing import parse_sse

from .conftest import kill_process, stop_process

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = 0.2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """A uvicorn process serving tests/reliability/_slow_app.py."""

    def __init__(self, db: Path) -> None:
        self.port = _free_port()
        env = {**os.environ, "CHATKIT_TEST_DB": str(db), "CHATKIT_TEST_CHECKPOINT": str(CHECKPOINT)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.reliability._slow_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        raise RuntimeError("the worker did not start")

    def kill(self) -> None:
        kill_process(self.process)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chatkit.db"


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def _message(text: str) -> dict[str, object]:
    return {"content": [{"type": "input_text", "text": text}], "attachments": []}


@pytest.mark.uvicorn
def test_sigkill_mid_answer_keeps_the_answer_up_to_the_last_checkpoint(
    db: Path, workers: list[Worker]
) -> None:
    first = Worker(db)
    workers.append(first)
    received = ""
    thread_id = ""
    body = {"type": "threads.create", "params": {"input": _message("tell me everything")}}
    with httpx.Client(timeout=10) as client, client.stream("POST", first.url, json=body) as reply:
        buffer = b""
        started = None
        for chunk in reply.iter_bytes():
            buffer += chunk
            frames, _, buffer = buffer.rpartition(b"\n\n")
            for event in parse_sse(frames + b"\n\n"):
                if event["type"] == "thread.created":
                    thread_id = event["thread"]["id"]
                elif event["type"] == "thread.item.updated":
                    received += event["update"]["delta"]
                    started = started or time.monotonic()
            # Read for several checkpoint intervals, then pull the plug mid-stream.
            if started and time.monotonic() - started > 4 * CHECKPOINT:
                text_before_last_interval = received
                time.sleep(1.5 * CHECKPOINT)
                first.kill()
                break
    assert thread_id and text_before_last_interval

    second = Worker(db)
    workers.append(second)
    with httpx.Client(timeout=10) as client:
        thread = client.post(
            second.url, json={"type": "threads.get_by_id", "params": {"thread_id": thread_id}}
        ).json()
        kinds = [item["type"] for item in thread["items"]["data"]]
        assert kinds == ["user_message", "assistant_message"]
        saved = thread["items"]["data"][1]["content"][0]["text"]
        # What was saved is the answer as streamed, cut at a checkpoint no older than
        # one interval before the kill.
        assert (saved and received.startswith(saved)) or saved.startswith(received)
        assert len(saved) >= len(text_before_last_interval)

        # The thread is usable: the next turn runs and is stored after the partial one.
        next_turn = client.post(
            second.url,
            json={
                "type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": _message("quick")},
            },
        )
        assert next_turn.status_code == 200
        assert [e["type"] for e in parse_sse(next_turn.content)][-1] == "thread.item.done"
        items = client.post(
            second.url,
            json={"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}},
        ).json()["data"]
        assert [i["type"] for i in items] == [
            "user_message",
            "assistant_message",
            "user_message",
            "assistant_message",
        ]
        assert items[-1]["content"][0]["text"] == "done"
