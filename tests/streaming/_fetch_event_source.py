"""The ChatKit web component's SSE client, `@microsoft/fetch-event-source`, run under node.

`read_stream(url, body)` reads one streaming request with the npm package itself
(tests/js/read_stream.mjs, which opens, retries and gives up as the web component's
loader does) and returns what the library dispatched and what came off the socket.
The package is installed into tests/js/node_modules (`npm ci`, from the lock file)
the first time it is needed; `make test` installs it up front.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"
_INSTALLED = JS_DIR / "node_modules" / "@microsoft" / "fetch-event-source" / "package.json"


def ensure_installed() -> None:
    """Install the pinned npm package unless it is there (fails if node or npm is missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to run the ChatKit web component's SSE client")
    if _INSTALLED.exists():
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci in {JS_DIR} failed:\n{done.stdout}\n{done.stderr}")


@dataclass(frozen=True)
class Message:
    """One message the library handed to `onmessage`."""

    data: str
    event: str
    id: str


@dataclass(frozen=True)
class Attempt:
    """One response the library received (it sends the request again on a 5xx)."""

    status: int
    content_type: str | None
    body: bytes
    chunks: list[bytes]


@dataclass(frozen=True)
class Reading:
    """What reading one streaming request through the library gave."""

    messages: list[Message]
    attempts: list[Attempt]
    closed: bool
    error: str | None


async def read_stream(
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    retries: int = 5,
    backoff_ms: int = 1000,
    timeout_ms: int = 20_000,
) -> Reading:
    """POST `body` to `url` and read the reply with `@microsoft/fetch-event-source`."""
    ensure_installed()
    config = {
        "url": url,
        "body": body,
        "headers": headers or {},
        "retries": retries,
        "backoffMs": backoff_ms,
        "timeoutMs": timeout_ms,
    }
    done = await anyio.run_process(
        ["node", str(JS_DIR / "read_stream.mjs"), json.dumps(config)], cwd=JS_DIR, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    raw = json.loads(done.stdout)
    attempts = []
    for attempt in raw["attempts"]:
        chunks = [base64.b64decode(chunk) for chunk in attempt["chunks"]]
        attempts.append(
            Attempt(attempt["status"], attempt["contentType"], b"".join(chunks), chunks)
        )
    return Reading(
        messages=[Message(**message) for message in raw["messages"]],
        attempts=attempts,
        closed=raw["closed"],
        error=raw["error"],
    )
