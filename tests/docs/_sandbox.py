"""Run one documentation block in this fresh interpreter, as a reader's file would run.

Started by `tests/docs/blocks.py` as ``python _sandbox.py SPEC.json`` with the block's
folder (empty but for the block's file) as the working directory. This file imports
nothing from the repository: it is the only code between the interpreter and the block.

1. Isolation. The venv's editable install puts the repository on `sys.path` (and this
   script's own folder is there too), which would make `chatkit_asgi` resolve to the
   working tree and `examples`/`tests` importable. Both are removed before anything is
   imported, and the unpacked wheel goes first: the block sees the package as
   ``pip install chatkit-asgi`` gives it, with its dependencies from site-packages.
2. The block. ``mode == "run"``: its file is executed as a module named after the file
   (never ``__main__``, so ``if __name__ == "__main__":`` sections stay asleep).
   ``mode == "pytest"``: pytest runs the file, as a reader runs a test module.
3. Its app. If the module defines a top-level ASGI ``app``, it is served by uvicorn on a
   loopback socket with its lifespan, and one ``threads.create`` is posted to where the
   ChatKit endpoint lives in it; the answer goes to the result file.

The result (JSON) goes to ``spec["result"]``; a block that raises exits non-zero with
its traceback on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types
from typing import Any


def _isolate(repo: str, wheel: str) -> None:
    repo = os.path.realpath(repo)
    venv = os.path.realpath(sys.prefix)  # the venv may live inside the repository

    def from_repo(path: str) -> bool:
        real = os.path.realpath(path or os.getcwd())
        inside = real == repo or real.startswith(repo + os.sep)
        return inside and not (real == venv or real.startswith(venv + os.sep))

    sys.path[:] = [wheel] + [entry for entry in sys.path if not from_repo(entry)]
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and from_repo(file):  # nothing should be, but a .pth could import
            del sys.modules[name]


def _run_module(path: str) -> dict[str, Any]:
    name = os.path.splitext(os.path.basename(path))[0]
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module  # a real module: pydantic and dataclasses look it up
    with open(path, encoding="utf-8") as file:
        source = file.read()
    exec(compile(source, path, "exec"), module.__dict__)
    return module.__dict__


def _run_pytest(path: str, result: dict[str, Any]) -> dict[str, Any] | None:
    import pytest

    args = [
        "-q",
        "-p",
        "no:cacheprovider",
        # docs/testing.md tells readers to use pytest-asyncio's auto mode
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        path,
    ]
    result["pytest_exit"] = int(pytest.main(args))
    module = sys.modules.get(os.path.splitext(os.path.basename(path))[0])
    return None if module is None else module.__dict__


def _chatkit_path(app: Any) -> str | None:
    """Where the ChatKit endpoint lives in `app`: "/" for a bare ChatKitApp, a mount, ..."""
    from starlette.routing import Mount, Route

    from chatkit_asgi import ChatKitApp, ChatKitMiddleware

    if isinstance(app, ChatKitApp):
        return "/"
    for middleware in getattr(app, "user_middleware", []):
        if getattr(middleware, "cls", None) is ChatKitMiddleware:
            return "/" + str(middleware.kwargs.get("path", "/chatkit")).strip("/")
    if isinstance(app, ChatKitMiddleware):
        return app.path
    routes = getattr(app, "routes", None) or []
    for route in routes:
        if isinstance(route, Mount):
            inner = _chatkit_path(route.app)
            if inner is not None:
                prefix = route.path.rstrip("/")
                return prefix + "/" if inner == "/" else prefix + inner
    for route in routes:  # an endpoint of your own (openai-chatkit's ChatKitServer style)
        posts = isinstance(route, Route) and "POST" in (route.methods or ())
        if posts and "chatkit" in route.path:
            return route.path
    wrapped = getattr(app, "app", None)  # a plain ASGI middleware around the site
    if wrapped is not None and wrapped is not app:
        return _chatkit_path(wrapped)
    return None


async def _post_to_app(app: Any, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    import asyncio
    import socket

    import httpx
    import uvicorn

    path = _chatkit_path(app)
    if path is None:
        return {"path": None}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + timeout
    while not server.started:
        if serving.done() or time.monotonic() > deadline:
            server.should_exit = True
            await serving
            return {"path": path, "started": False}
        await asyncio.sleep(0.01)
    answer: dict[str, Any] = {"path": path, "started": True}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await asyncio.wait_for(
                client.post(f"http://127.0.0.1:{port}{path}", json=body), timeout
            )
        answer["status"] = response.status_code
        answer["content_type"] = response.headers.get("content-type", "")
        answer["headers"] = dict(response.headers)
        answer["body"] = response.text[:20_000]
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout)
    return answer


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    _isolate(spec["repo"], spec["wheel"])
    sys.path.insert(0, os.path.dirname(spec["file"]))  # as `python block.py` would
    sys.dont_write_bytecode = True  # leave the reader's folder as it was
    result: dict[str, Any] = {}

    def report() -> None:
        with open(spec["result"], "w", encoding="utf-8") as file:
            json.dump(result, file)

    try:
        if spec["mode"] == "pytest":
            namespace = _run_pytest(spec["file"], result)
        else:
            namespace = _run_module(spec["file"])
        import chatkit_asgi

        result["chatkit_asgi"] = chatkit_asgi.__file__
        app = (namespace or {}).get("app")
        if app is not None and callable(app) and not isinstance(app, type):
            import asyncio

            body = spec["body"]
            result["app"] = asyncio.run(_post_to_app(app, body, spec["timeout"]))
    finally:
        report()


if __name__ == "__main__":
    main()
