"""The floor: what the stack itself costs (uvicorn, Starlette, JSON parsing, SSE writes).

A bare Starlette endpoint that parses the body and answers pre-built frames of the
same count and size as chatkit-asgi's answer (captured by the runner into the file
named by `BENCH_FLOOR_FRAMES`): one write per frame, no validation, no store.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..workload import WAIT_SECONDS, request_mode

with open(os.environ["BENCH_FLOOR_FRAMES"], encoding="utf-8") as _file:
    _captured = json.load(_file)

STREAMS: dict[str, list[bytes]] = {
    mode: [frame.encode() for frame in frames] for mode, frames in _captured["streams"].items()
}
DOCUMENTS: dict[str, bytes] = {kind: body.encode() for kind, body in _captured["json"].items()}


async def _frames(frames: list[bytes], wait: bool) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame
    if wait:
        await asyncio.sleep(WAIT_SECONDS)


async def chatkit_endpoint(request: Request) -> Response:
    body = json.loads(await request.body())
    kind = body["type"]
    if kind in DOCUMENTS:
        return Response(content=DOCUMENTS[kind], media_type="application/json")
    mode = request_mode(body)
    return StreamingResponse(
        _frames(STREAMS[mode], wait=mode == "wait"), media_type="text/event-stream"
    )


app = Starlette(routes=[Route("/chatkit", chatkit_endpoint, methods=["POST"])])
