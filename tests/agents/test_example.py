"""`examples/agent`: the demo agent works offline, widget tool and client tool included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatkit_asgi.testing import ChatKitTestClient
from examples.agent.app import create_app, default_model
from examples.agent.offline import OfflineModel

from .conftest import thread_id_of, timeline


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ChatKitTestClient]:
    app = create_app(model=OfflineModel(delay=0), db_path=str(tmp_path / "demo.db"))
    async with app.router.lifespan_context(app), ChatKitTestClient(app, path="/chatkit/") as client:
        yield client


async def test_a_weather_question_shows_a_card(client: ChatKitTestClient) -> None:
    events = await client.create_thread("What's the weather in Lyon?")

    lines = timeline(events)
    assert lines[3:6] == [
        "added workflow wf#1 reasoning []",
        "update wf#1 task_added[0] thought 'The '",
        "update wf#1 task_updated[0] thought 'The user '",
    ]
    rest = [line for line in lines[6:] if not line.startswith("update wf#1 task_updated")]
    assert rest[:3] == [
        "progress 'Looking up the weather in Lyon'",
        "done workflow wf#1 reasoning [thought 'The user wants the weather in Lyon, so I will"
        " show the forecast.'] summary=duration",
        "done widget msg#2 Card",
    ]
    assert rest[-1].startswith("done assistant_message msg#3 ['Here is the forecast. Lyon: ")


async def test_a_theme_request_asks_the_page_and_goes_on_with_its_answer(
    client: ChatKitTestClient,
) -> None:
    asked = await client.create_thread("Switch to the dark theme please")
    thread_id = thread_id_of(asked)
    answered = await client.stream(
        "threads.add_client_tool_output", thread_id=thread_id, result={"theme": "dark"}
    )

    assert timeline(asked)[-1].startswith(
        "done client_tool_call fc#1 switch_theme {'theme': 'dark'} pending call=call_offline"
    )
    assert timeline(answered)[-1] == (
        "done assistant_message msg#1 ['Done: the page now uses the dark theme.']"
    )


def test_the_real_model_is_used_when_there_is_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-dummy")
    monkeypatch.setenv("CHATKIT_MODEL", "gpt-4.1-mini")
    assert default_model() == "gpt-4.1-mini"

    monkeypatch.delenv("OPENAI_API_KEY")
    assert isinstance(default_model(), OfflineModel)
