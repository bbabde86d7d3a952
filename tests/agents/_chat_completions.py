"""A scripted Chat Completions endpoint, read by the SDK's own `OpenAIChatCompletionsModel`.

The real `AsyncOpenAI` client reads the server-sent events of an `httpx.MockTransport`,
so the model, its stream handler (the one LiteLLM and other providers share) and the
runner are the SDK's own: what reaches the bridge is what a Chat Completions model
sends, in its order and with its placeholder item ids. Nothing touches the network.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from agents import OpenAIChatCompletionsModel
from openai import AsyncOpenAI

_ids = itertools.count(1)


@dataclass
class Reply:
    """One model call: the deltas of choice 0, then the finish reason."""

    deltas: list[dict[str, Any]]
    finish_reason: str = "stop"


def say(*chunks: str, citations: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Assistant text in the given chunks; URL citations arrive on a delta of their own,
    so they end up only on the final message (no annotation event streams them)."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": chunk} for chunk in chunks]
    if citations:
        deltas.append({"annotations": citations})
    return deltas


def url_citation(url: str, title: str, start: int, end: int) -> dict[str, Any]:
    """A Chat Completions URL citation (web search models)."""
    return {
        "type": "url_citation",
        "url_citation": {"url": url, "title": title, "start_index": start, "end_index": end},
    }


def refuse(*chunks: str) -> list[dict[str, Any]]:
    """A refusal in the given chunks."""
    return [{"role": "assistant", "refusal": chunk} for chunk in chunks]


def think(*chunks: str) -> list[dict[str, Any]]:
    """Reasoning text, as providers behind LiteLLM send it (`reasoning_content`)."""
    return [{"role": "assistant", "reasoning_content": chunk} for chunk in chunks]


def call(name: str, arguments: str, call_id: str) -> list[dict[str, Any]]:
    """One function call, its arguments in one delta."""
    tool_call = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    return [{"role": "assistant", "tool_calls": [tool_call]}]


@dataclass
class ChatCompletionsEndpoint:
    """Serves one scripted `Reply` per `POST /chat/completions`, as an SSE stream."""

    replies: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)

    def model(self) -> OpenAIChatCompletionsModel:
        """The SDK's Chat Completions model, talking to this endpoint."""
        client = AsyncOpenAI(
            api_key="sk-test-dummy-not-a-real-key",
            base_url="https://chat.invalid/v1",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self._handle)),
            max_retries=0,
        )
        return OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/chat/completions"), request.url
        body = json.loads(request.content)
        assert body.get("stream") is True, "the bridge runs the agent streamed"
        self.requests.append(body)
        if not self.replies:
            raise AssertionError("the model was called more often than scripted")
        reply = self.replies.pop(0)
        completion_id = f"chatcmpl-{next(_ids)}"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        stream = b"".join(chunk(delta) for delta in reply.deltas)
        stream += chunk({}, reply.finish_reason) + b"data: [DONE]\n\n"
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)


def chat_completions(*replies: list[dict[str, Any]] | Reply) -> ChatCompletionsEndpoint:
    """An endpoint answering each model call with the next reply (deltas end with `stop`)."""
    return ChatCompletionsEndpoint(
        [reply if isinstance(reply, Reply) else Reply(reply) for reply in replies]
    )
