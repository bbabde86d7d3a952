"""End to end: `chatkit-asgi demo` under uvicorn, its playground in headless Chromium.

A person's session, step by step: send a message and watch it stream, click a
widget button, upload a file, stop a slow answer, reload and find everything
persisted. A screenshot lands in `test-artifacts/`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, expect

from .conftest import ARTIFACTS, CLIServer

pytestmark = pytest.mark.uvicorn

TIMEOUT = 20_000  # ms: generous, for a busy 2-core machine
expect.set_options(timeout=TIMEOUT)

ANSWERS = "#items .item.assistant_message .text"

# Records every text the newest assistant message shows, so the test can tell a
# streamed answer (several growing texts) from one that arrived whole.
WATCH_STREAMING = """
() => {
  window.__seen = [];
  new MutationObserver(() => {
    const texts = document.querySelectorAll(
      "#items .item.assistant_message .text");
    if (texts.length) window.__seen.push(texts[texts.length - 1].textContent);
  }).observe(document.getElementById("items"),
             {subtree: true, childList: true, characterData: true});
}
"""


def watch_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


async def open_playground(page: Page, server: CLIServer) -> None:
    await page.goto(server.url + "/")  # the demo redirects / to the playground
    await expect(page).to_have_url(server.url + "/chatkit/")
    await page.wait_for_selector("body[data-ready=true]")


async def send(page: Page, text: str) -> None:
    await page.fill("#message", text)
    await page.click("#send")


async def test_a_playground_session(
    start_cli: Callable[..., CLIServer], browser: Browser, tmp_path: Path
) -> None:
    server = start_cli(
        "demo",
        "--store",
        f"sqlite:///{tmp_path}/demo.db",
        "--attachments",
        f"file://{tmp_path}/files",
    )
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT)
    errors = watch_errors(page)
    await open_playground(page, server)
    await page.evaluate(WATCH_STREAMING)

    # 1. A message streams back word by word.
    await send(page, "hello from a browser")
    answer = page.locator(ANSWERS).last
    await expect(answer).to_have_text(re.compile("Echo: hello from a browser$"))
    await expect(answer).not_to_have_class(re.compile("streaming"))
    seen: list[str] = await page.evaluate("window.__seen")
    partial = {text for text in seen if "Echo: hello from a browser".startswith(text)}
    partial.discard("Echo: hello from a browser")
    assert len(partial) >= 2, f"the answer did not stream: {seen}"
    # The thread got created, titled and listed.
    await expect(page.locator("#thread-title")).to_have_text("hello from a browser")
    await expect(page.locator("#thread-list li")).to_have_count(1)
    thread_id = await page.locator("#thread-id").inner_text()
    assert thread_id.startswith("thr_")
    # Every raw event is in the side panel, with its timing.
    log = page.locator("#event-log li")
    await expect(log.filter(has_text="thread.created")).to_have_count(1)
    assert await log.filter(has_text="thread.item.updated").count() >= 3
    await expect(log.filter(has_text="thread.item.done").first).to_contain_text(
        re.compile(r"\+\d+ ms")
    )

    # 2. A widget: its button sends the server action, which replaces the card.
    await send(page, "widget")
    widget = page.locator("#items .item.widget")
    await expect(widget).to_contain_text("Not clicked yet")
    await widget.get_by_role("button", name="Click me").click()
    await expect(widget).to_contain_text("Clicked 1 time(s)")
    await expect(page.locator(ANSWERS).last).to_have_text("Button clicked (1)")
    await expect(widget).to_have_count(1)  # replaced, not added
    await expect(log.filter(has_text="threads.custom_action")).to_have_count(1)

    # 3. An attachment, uploaded directly, then sent with a message.
    notes = tmp_path / "notes.txt"
    notes.write_text("ten bytes!")
    await page.set_input_files("#file-input", str(notes))
    await expect(page.locator("#pending-attachments .chip")).to_contain_text("notes.txt")
    await send(page, "see attached")
    await expect(page.locator(ANSWERS).last).to_have_text(
        "Echo: see attached | attachments: notes.txt (10 bytes)"
    )
    await expect(page.locator("#items .item.user_message").last).to_contain_text("notes.txt")
    await expect(page.locator("#pending-attachments .chip")).to_have_count(0)

    # 4. A slow answer, stopped midway: the request is aborted, like the ChatKit UI does.
    await send(page, "slow")
    slow = page.locator(ANSWERS).last
    await expect(slow).to_contain_text("word3")
    await expect(page.locator("#stop")).to_be_enabled()
    await page.click("#stop")
    await expect(page.locator("#status")).to_have_text("Stopped")
    await expect(log.filter(has_text="stream aborted")).to_have_count(1)
    stopped_text = await slow.inner_text()
    assert stopped_text.startswith("Slow: word1")
    assert "word240" not in stopped_text
    await expect(page.locator("#send")).to_be_enabled()

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "playground-session.png"))

    # 5. Reload: the thread comes back from the store, with everything in it.
    await page.reload()
    await page.wait_for_selector("body[data-ready=true]")
    await expect(page.locator("#thread-id")).to_have_text(thread_id)
    await expect(page.locator("#items .item.user_message .text")).to_have_text(
        ["hello from a browser", "widget", "see attached", "slow"]
    )
    await expect(page.locator("#items .item.user_message").nth(2)).to_contain_text("notes.txt")
    await expect(page.locator("#items .item.widget")).to_contain_text("Clicked 1 time(s)")
    # The part of the slow answer streamed before the stop was saved.
    await expect(page.locator(ANSWERS)).to_have_text(
        [
            "Echo: hello from a browser",
            "Button clicked (1)",
            "Echo: see attached | attachments: notes.txt (10 bytes)",
            re.compile(r"^Slow: word1 word2 word3"),
        ]
    )
    saved_text = await page.locator(ANSWERS).last.inner_text()
    assert "word240" not in saved_text
    await expect(page.locator("#thread-list li")).to_contain_text("hello from a browser")

    await page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    assert errors == []


async def test_a_new_thread_from_the_list(
    start_cli: Callable[..., CLIServer], browser: Browser, tmp_path: Path
) -> None:
    server = start_cli("demo", "--store", "memory://", "--attachments", f"file://{tmp_path}/f")
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)
    errors = watch_errors(page)
    await open_playground(page, server)
    await send(page, "first")
    await expect(page.locator(ANSWERS)).to_have_text("Echo: first")
    await expect(page.locator("#send")).to_be_enabled()  # the reply is over
    await page.click("#new-thread")
    await expect(page.locator("#items .item")).to_have_count(0)
    await send(page, "second")
    await expect(page.locator("#thread-title")).to_have_text("second")
    threads = page.locator("#thread-list li")
    await expect(threads).to_have_count(2)
    await expect(threads.first).to_contain_text("second")  # newest first
    await threads.filter(has_text="first").click()
    await expect(page.locator("#thread-title")).to_have_text("first")
    await expect(page.locator(ANSWERS)).to_have_text("Echo: first")
    assert errors == []


async def test_the_chatkit_ui_page_is_configured_for_this_backend(
    start_cli: Callable[..., CLIServer], browser: Browser, tmp_path: Path
) -> None:
    server = start_cli("demo", "--store", "memory://", "--attachments", f"file://{tmp_path}/f")
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)

    async def offline(route: Route) -> None:
        await route.abort()

    # As on a machine without internet access: the web component cannot load.
    await page.route("https://cdn.platform.openai.com/**", offline)
    await page.goto(server.url + "/chatkit/")
    await page.click("#chatkit-link")
    await expect(page).to_have_url(server.url + "/chatkit/playground/chatkit.html")
    options = page.locator("#options")
    await expect(options).to_contain_text(f'"url": "{server.url}/chatkit/"')
    await expect(options).to_contain_text('"domainKey": "local-dev"')
    await expect(options).to_contain_text(f'"uploadUrl": "{server.url}/chatkit/upload"')
    await expect(page.locator("#load-status")).to_contain_text("Could not load ChatKit")
    await page.select_option("#upload-strategy", "two_phase")
    await page.click("#apply")
    await expect(options).to_contain_text('"type": "two_phase"')


AUTHENTICATED = """
from starlette.exceptions import HTTPException

from chatkit_asgi import Turn
from chatkit_asgi.types import AssistantMessageContent, AssistantMessageItem, ThreadItemDoneEvent


def user(request):
    if "x-user" not in request.headers:
        raise HTTPException(401, "Sign in first")
    return {"user": request.headers["x-user"]}


async def respond(turn: Turn):
    yield ThreadItemDoneEvent(item=AssistantMessageItem(
        id=turn.new_id("message"), thread_id=turn.thread.id, created_at=turn.now(),
        content=[AssistantMessageContent(text=f"{turn.context['user']} said {turn.input_text()}")]))
"""


async def test_settings_add_headers_for_an_authenticated_app(
    start_cli: Callable[..., CLIServer], browser: Browser, tmp_path: Path
) -> None:
    (tmp_path / "secured.py").write_text(AUTHENTICATED)
    server = start_cli(
        "serve", "secured:respond", "--context", "secured:user", "--store", "memory://",
        "--playground",
    )  # fmt: skip
    page = await browser.new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto(server.url + "/chatkit/")
    await expect(page.locator("#banner")).to_contain_text("HTTP 401 unauthorized: Sign in first")
    await page.click(".settings summary")
    await page.fill("#extra-headers", '{"x-user": "ada"}')
    await page.click("#save-settings")
    await expect(page.locator("#settings-status")).to_have_text("Saved")
    await send(page, "hi")
    await expect(page.locator(ANSWERS)).to_have_text("ada said hi")
    # Uploads are off without an attachment store, and the page says so.
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    await page.set_input_files("#file-input", str(notes))
    await expect(page.locator("#banner")).to_contain_text("this app takes no uploads")
    # The headers are kept in the browser for the next visit.
    await page.reload()
    await expect(page.locator("#thread-list li")).to_contain_text("Untitled thread")
    await expect(page.locator(ANSWERS)).to_have_text("ada said hi")
