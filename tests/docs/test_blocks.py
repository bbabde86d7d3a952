"""Every ```python block of README.md and docs/*.md runs as pasted into an empty folder.

Each block runs alone in a fresh interpreter, from an empty folder, with no injected
names, against the package as its wheel installs it (never this checkout): see
`blocks.py` and `_sandbox.py`. A block an app defines must answer `threads.create`
without a 5xx. A block the paragraph before calls a "partial example" is only compiled.
"""

from __future__ import annotations

import re
import textwrap
from concurrent.futures import Future
from pathlib import Path

import pytest

from .blocks import PAGES, REPO, Block, Outcome, Sandbox, blocks_of, check, collect, find

# Blocks whose app refuses a stranger: (page, text in the block) -> the expected status.
EXPECTED_STATUS = {
    ("README.md", "TOKENS = "): 401,
    ("docs/mounting.md", "TOKENS = "): 401,
    ("docs/production-guide.md", "secret-token-of-alice"): 401,
}
# Blocks calling a real model: offline, the reply is an `error` event in a 200 stream,
# excused only when the logged cause is the model client's (no key, or no network).
REAL_MODEL = "Agent("
MODEL_OFFLINE = r"openai\.(OpenAIError|APIConnectionError)"


def _expected_status(block: Block) -> int:
    for (page, marker), status in EXPECTED_STATUS.items():
        if block.page == page and marker in block.source:
            return status
    return 200


BLOCKS = collect()


@pytest.mark.parametrize("doc_block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block(
    doc_block: Block, block_outcomes: dict[str, Future[Outcome]], sandbox: Sandbox
) -> None:
    if doc_block.partial:
        compile(doc_block.source, doc_block.id, "exec")  # a partial example: it parses
        return
    outcome = block_outcomes[doc_block.id].result()
    excused = MODEL_OFFLINE if REAL_MODEL in doc_block.source else ""
    check(doc_block, outcome, _expected_status(doc_block), excused)
    # It ran against the wheel, not this checkout.
    assert Path(outcome.result["chatkit_asgi"]).is_relative_to(sandbox.wheel), outcome.log()


def test_every_block_is_collected() -> None:
    for page in PAGES:
        fences = re.findall(r"^\s*```py(?:thon)?\s*$", (REPO / page).read_text(), re.M)
        assert len(blocks_of(page)) == len(fences), page
    assert len(BLOCKS) > 40


def test_only_the_paragraph_before_makes_a_block_partial(tmp_path: Path) -> None:
    from . import blocks

    page = textwrap.dedent(
        """\
        A partial example, not the next one:

        ```python
        x
        ```

        Text.
        A Partial
        example: it continues on the next line.

        ```python
        y
        ```

        A complete one.

        ```python
        z
        ```
        """
    )
    (tmp_path / "page.md").write_text(page)
    original = blocks.REPO
    blocks.REPO = tmp_path
    try:
        found = blocks_of("page.md")
    finally:
        blocks.REPO = original
    assert [(b.source, b.partial) for b in found] == [("x\n", True), ("y\n", True), ("z\n", False)]


def _synthetic(source: str, number: int = 1) -> Block:
    return Block("synthetic", number, 1, textwrap.dedent(source), partial=False)


def test_the_sandbox_sees_the_wheel_not_the_checkout(sandbox: Sandbox) -> None:
    block = _synthetic(
        """\
        import os
        import sys

        for name in ("examples", "tests", "bench"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise AssertionError(f"{name} is importable from the sandbox")
        assert os.listdir(".") == ["block.py"], os.listdir(".")
        assert __name__ != "__main__"
        assert "OPENAI_API_KEY" not in os.environ
        import chatkit_asgi
        print("FROM", chatkit_asgi.__file__)
        """
    )
    outcome = sandbox.run(block)
    check(block, outcome)
    origin = Path(outcome.result["chatkit_asgi"]).resolve()
    assert origin.is_relative_to(sandbox.wheel.resolve()), origin
    assert not origin.is_relative_to(REPO / "chatkit_asgi")


BROKEN = {
    "an undefined name": "print(undefined_name)\n",
    "an app answering 500": """\
        from chatkit_asgi import ChatKitApp
        from chatkit_asgi.stores import MemoryStore


        async def respond(turn):
            return
            yield


        def context(request):
            return {"user": request.user.identity}  # no AuthenticationMiddleware: a 500


        app = ChatKitApp(respond, store=MemoryStore(), context=context)
        """,
    "a reply ending in an error event": """\
        from chatkit_asgi import ChatKitApp
        from chatkit_asgi.stores import MemoryStore


        async def respond(turn):
            raise RuntimeError("boom")
            yield


        app = ChatKitApp(respond, store=MemoryStore())
        """,
    "a mounted app without lifespan": """\
        from starlette.applications import Starlette
        from starlette.routing import Mount

        from chatkit_asgi import ChatKitApp
        from chatkit_asgi.stores import MemoryStore


        async def respond(turn):
            return
            yield


        app = Starlette(routes=[Mount("/chatkit", ChatKitApp(respond, store=MemoryStore()))])
        """,
    "a failing test": """\
        def test_it():
            assert 1 == 2
        """,
}


# What the check's failure says for each: it fails for the right reason.
BROKEN_BECAUSE = {
    "an undefined name": "NameError: name 'undefined_name'",
    "an app answering 500": "threads.create got 500",
    "a reply ending in an error event": "the reply failed",
    "a mounted app without lifespan": "received no lifespan",
    "a failing test": "assert 1 == 2",
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_the_runner_fails_a_broken_block(sandbox: Sandbox, broken: str) -> None:
    block = _synthetic(BROKEN[broken])
    outcome = sandbox.run(block)
    with pytest.raises(AssertionError, match=re.escape(BROKEN_BECAUSE[broken])):
        check(block, outcome)


def test_the_runner_passes_a_working_app(sandbox: Sandbox) -> None:
    """The counterpart of the broken ones: the same app, fixed, passes the same check."""
    block = _synthetic(
        BROKEN["an app answering 500"].replace(
            "request.user.identity", 'request.headers.get("x-user")'
        )
    )
    outcome = sandbox.run(block)
    check(block, outcome)
    assert outcome.result["app"]["path"] == "/"


def test_an_offline_model_excuses_only_its_own_failure(sandbox: Sandbox) -> None:
    block = _synthetic(BROKEN["a reply ending in an error event"])
    outcome = sandbox.run(block)
    with pytest.raises(AssertionError, match="the reply failed"):
        check(block, outcome, excused_errors=MODEL_OFFLINE)
    agent = find("README.md", "AgentResponder(agent)")  # the five-line agent, offline
    check(agent, sandbox.run(agent), excused_errors=MODEL_OFFLINE)
