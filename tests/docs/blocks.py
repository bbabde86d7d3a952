"""The ```python blocks of README.md and docs/*.md, and how a reader's paste of each runs.

- `collect()` finds every block, with its page, number, line and whether the paragraph
  right before it calls it a "partial example" (then it is only compiled).
- `Sandbox.run(block)` pastes the block into an empty folder and runs it in a fresh
  interpreter that imports chatkit_asgi from the built wheel, never from this checkout
  (see `_sandbox.py`); `check(block, outcome)` says whether the run is what a reader
  should see.
- `load(page, marker)` executes one block in this process, alone, as its own module, for
  tests that check what a block's app does (the subprocess run is the proof that it runs
  alone; this is the convenient way to poke at it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SANDBOX = Path(__file__).with_name("_sandbox.py")
PAGES = ["README.md", *sorted(f"docs/{path.name}" for path in (REPO / "docs").glob("*.md"))]

# The minimal body the ChatKit UI sends for a new thread.
THREADS_CREATE = {
    "type": "threads.create",
    "params": {
        "input": {
            "content": [{"type": "input_text", "text": "hello"}],
            "attachments": [],
            "inference_options": {},
        }
    },
}

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python|py)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.S | re.M,
)
_PARTIAL = "partial example"


@dataclass(frozen=True)
class Block:
    """One ```python block of a page."""

    page: str  # "README.md", "docs/stores.md"
    number: int  # 1-based, in the page
    line: int  # of the opening fence
    source: str
    partial: bool  # the paragraph before says "partial example": compile only

    @property
    def id(self) -> str:
        return f"{self.page}:{self.number}"

    @property
    def defines_tests(self) -> bool:
        tests = r"^(?:async )?def test_\w*\(|^class Test\w*[(:]"
        return re.search(tests, self.source, re.M) is not None


def _paragraph_before(text: str, offset: int) -> str:
    lines = text[:offset].splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    paragraph: list[str] = []
    while lines and lines[-1].strip() and not lines[-1].lstrip().startswith("```"):
        paragraph.insert(0, lines.pop())
    return " ".join(" ".join(paragraph).split()).lower()


def blocks_of(page: str) -> list[Block]:
    text = (REPO / page).read_text(encoding="utf-8")
    found = []
    for number, match in enumerate(_FENCE.finditer(text), 1):
        found.append(
            Block(
                page=page,
                number=number,
                line=text.count("\n", 0, match.start()) + 1,
                source=textwrap.dedent(match["body"]),
                partial=_PARTIAL in _paragraph_before(text, match.start()),
            )
        )
    return found


def collect() -> list[Block]:
    return [block for page in PAGES for block in blocks_of(page)]


def find(page: str, marker: str) -> Block:
    """The one block of `page` containing `marker`."""
    matches = [block for block in blocks_of(page) if marker in block.source]
    assert len(matches) == 1, f"{page}: {len(matches)} blocks contain {marker!r}"
    return matches[0]


def load(page: str, marker: str) -> dict[str, Any]:
    """Execute the block of `page` containing `marker` alone, as a module; its namespace.

    Nothing is injected: the block sees only what it imports. Run from a scratch
    working directory (blocks create chatkit.db and friends).
    """
    block = find(page, marker)
    name = "docs_block_" + re.sub(r"\W", "_", block.id)
    module = types.ModuleType(name)
    sys.modules[name] = module  # pydantic resolves annotations through sys.modules
    try:
        exec(compile(block.source, f"{block.id} (line {block.line})", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module.__dict__


# -- the wheel and the fresh interpreter -------------------------------------------------


def build_wheel(out: Path) -> Path:
    """Build the wheel of this checkout into `out` and unpack it; the unpacked folder."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("chatkit_asgi-*.whl")
    unpacked = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    # Compiled once here, so the parallel runs do not each compile (or race to write) it.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(unpacked)], check=True, timeout=300
    )
    return unpacked


@dataclass
class Outcome:
    """What running one block gave."""

    returncode: int
    output: str  # stdout and stderr
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def log(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f}s\n{self.output}\n{self.result}"


@dataclass
class Sandbox:
    """Runs blocks in fresh interpreters, against an unpacked wheel, in empty folders."""

    wheel: Path
    scratch: Path
    env: dict[str, str]
    timeout: float = 120.0  # the whole run of one block
    http_timeout: float = 30.0  # serving its app and its one request

    def run(self, block: Block) -> Outcome:
        folder = Path(tempfile.mkdtemp(prefix=re.sub(r"\W", "_", block.id) + "-", dir=self.scratch))
        mode = "pytest" if block.defines_tests else "run"
        file = folder / ("test_block.py" if mode == "pytest" else "block.py")
        file.write_text(block.source, encoding="utf-8")
        spec = {
            "repo": str(REPO),
            "wheel": str(self.wheel),
            "mode": mode,
            "file": str(file),
            "result": str(folder.with_suffix(".result.json")),
            "body": THREADS_CREATE,
            "timeout": self.http_timeout,
        }
        spec_file = folder.with_suffix(".spec.json")
        spec_file.write_text(json.dumps(spec))
        started = time.monotonic()
        try:
            process = subprocess.run(
                [sys.executable, str(SANDBOX), str(spec_file)],
                cwd=folder,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            returncode, output = process.returncode, process.stdout + process.stderr
        except subprocess.TimeoutExpired as expired:
            returncode = -1
            output = f"timed out after {self.timeout}s\n{expired.stdout!r}\n{expired.stderr!r}"
        result_file = Path(spec["result"])
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
        return Outcome(returncode, output, result, time.monotonic() - started)


def check(
    block: Block, outcome: Outcome, expected_status: int = 200, excused_errors: str = ""
) -> None:
    """Assert that `outcome` is what a reader pasting `block` should see.

    The block ran without an exception; its tests (if any) passed; the app it defines
    (if any) started with its lifespan (and passed it on to a mounted ChatKitApp) and
    answered `threads.create` with
    `expected_status` (never a 5xx), and a 200 stream holds no `error` event, unless the
    block's output matches the regex `excused_errors` (a real model without a key or
    network fails inside the stream, and the failure is logged).
    """
    where = f"{block.id} (line {block.line})"
    assert outcome.returncode == 0, f"{where} failed:\n{outcome.log()}"
    if block.defines_tests:
        assert outcome.result.get("pytest_exit") == 0, f"{where}: its tests:\n{outcome.log()}"
    answer = outcome.result.get("app")
    if answer is None:
        return
    assert answer["path"] is not None, f"{where}: no ChatKit endpoint found in `app`"
    assert answer["started"], f"{where}: the app did not start:\n{outcome.log()}"
    # A mounted ChatKitApp the host gives no lifespan says so (its stores never close).
    assert "received no lifespan" not in outcome.output, f"{where}: {outcome.log()}"
    status = answer["status"]
    assert status < 500, f"{where}: threads.create got {status}:\n{outcome.log()}"
    assert status == expected_status, f"{where}: threads.create got {status}:\n{outcome.log()}"
    if status == 200:
        assert answer["content_type"].startswith("text/event-stream"), outcome.log()
        events = [
            json.loads(line[len("data: ") :])
            for line in answer["body"].splitlines()
            if line.startswith("data: ")
        ]
        assert events and events[0]["type"] == "thread.created", outcome.log()
        errors = [event for event in events if event["type"] == "error"]
        excused = bool(excused_errors) and re.search(excused_errors, outcome.output) is not None
        assert excused or not errors, f"{where}: the reply failed: {errors}\n{outcome.log()}"
