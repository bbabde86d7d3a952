"""The `chatkit-asgi` command: run the demo, or serve any responder without writing an app.

::

    chatkit-asgi demo                                  # what `make demo` runs
    chatkit-asgi serve myapp:respond --playground      # your responder, SQLite, playground
    chatkit-asgi serve myapp:Assistant --store mongodb://db.internal/chatkit \\
        --attachments s3://my-bucket/chatkit/ --workers 4

Stores are given as URLs:

- `--store`: `sqlite:///relative.db`, `sqlite:////absolute/path.db` (SQLAlchemy's
  convention), `memory://` (lost on exit, one worker only), `mongodb://...` or
  `mongodb+srv://...` (needs `chatkit-asgi[mongodb]`).
- `--attachments`: `file:///absolute/dir` or `file://relative/dir` (files kept on
  disk and served by the app), `s3://bucket/prefix/` (needs `chatkit-asgi[s3]`;
  `?endpoint_url=...&region_name=...&addressing_style=path` for MinIO and friends).

The responder target is `module:attribute`, imported like uvicorn does (the
current directory first, or `--app-dir`): an async-generator function of a
`Turn`, an object with `respond`, or a class of such objects (instantiated with
no arguments).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "ServeConfig",
    "UsageError",
    "app_factory",
    "attachment_store_factory",
    "build_app",
    "check_responder",
    "load_target",
    "main",
    "store_factory",
]

DEMO_RESPONDER = "chatkit_asgi._demo:DemoAssistant"
CONFIG_ENV = "CHATKIT_ASGI_SERVE_CONFIG"
"""Carries the configuration to each uvicorn worker (they build their own app)."""


class UsageError(Exception):
    """A bad command line: reported as `error: ...` with exit status 2."""


@dataclass
class ServeConfig:
    """Everything `serve` needs to build the app (JSON-able, to reach each worker)."""

    target: str
    store: str = "sqlite:///chatkit.db"
    attachments: str | None = None
    mount: str = "/chatkit"
    playground: bool = False
    cors: list[str] = field(default_factory=list)
    context: str | None = None
    app_dir: str = "."
    also: dict[str, str] = field(default_factory=dict)
    """Other ASGI apps to serve beside the endpoint: path -> `module:attribute`."""


# -- stores from URLs ----------------------------------------------------------------


def _missing_extra(what: str, extra: str, exc: ImportError) -> UsageError:
    if exc.name and exc.name.startswith("chatkit_asgi"):
        return UsageError(f"this installation of chatkit-asgi has no {what} ({exc})")
    return UsageError(
        f"{what} needs an optional dependency: pip install 'chatkit-asgi[{extra}]' ({exc})"
    )


def store_factory(url: str) -> Callable[[], Any]:
    """A constructor of the `Store` a `--store` URL names (checked and imported now)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .stores.memory import MemoryStore

        return MemoryStore
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.lower().startswith("sqlite:///") else ""
        if not path:
            raise UsageError(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db"
            )
        from .stores.sqlite import SQLiteStore

        return lambda: SQLiteStore(path)
    if scheme in ("mongodb", "mongodb+srv"):
        try:
            from .stores.mongodb import MongoStore
        except ImportError as exc:
            raise _missing_extra("the MongoDB store", "mongodb", exc) from None
        return lambda: MongoStore.from_uri(url)
    raise UsageError(
        f"unknown store URL {url!r}: use sqlite:///path.db, memory:// or mongodb://host/database"
    )


def attachment_store_factory(url: str) -> Callable[[], Any]:
    """A constructor of the `AttachmentStore` an `--attachments` URL names."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        directory = url[len("file://") :] if url.startswith("file://") else url[len("file:") :]
        if not directory:
            raise UsageError(f"bad file URL {url!r}: use file:///absolute/dir or file://rel/dir")
        try:
            from .stores.filesystem import FileSystemAttachmentStore
        except ImportError as exc:
            raise _missing_extra("the filesystem attachment store", "server", exc) from None
        return lambda: FileSystemAttachmentStore(directory)
    if scheme == "s3":
        if not parts.netloc:
            raise UsageError(f"bad S3 URL {url!r}: use s3://bucket/prefix/")
        options: dict[str, Any] = {}
        for key, values in parse_qs(parts.query).items():
            if key not in ("endpoint_url", "region_name", "addressing_style"):
                raise UsageError(
                    f"unknown S3 URL option {key!r} "
                    "(known: endpoint_url, region_name, addressing_style)"
                )
            options[key] = values[-1]
        prefix = parts.path.strip("/")
        if prefix:
            options["prefix"] = prefix + "/"
        try:
            from .stores.s3 import S3AttachmentStore
        except ImportError as exc:
            raise _missing_extra("the S3 attachment store", "s3", exc) from None
        return lambda: S3AttachmentStore(parts.netloc, **options)
    raise UsageError(f"unknown attachments URL {url!r}: use file:///dir or s3://bucket/prefix/")


# -- the app -------------------------------------------------------------------------


def load_target(target: str, app_dir: str = ".", *, instantiate: bool = True) -> Any:
    """Import `module:attribute`; a class is instantiated with no arguments."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"the responder must be given as module:attribute, not {target!r}")
    directory = os.path.abspath(app_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"cannot import module {module_name!r} ({exc})") from None
        raise UsageError(f"importing {module_name!r} failed: {_one_line(exc)}") from None
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise UsageError(f"syntax error in {where}: {exc.msg}") from None
    except Exception as exc:
        # Whatever the module raises while importing (a bad import inside it, a missing
        # setting...): one line naming the target, not a traceback from importlib.
        raise UsageError(f"importing {module_name!r} failed: {_one_line(exc)}") from None
    value: Any = module
    for name in attribute.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if instantiate and inspect.isclass(value):
        value = value()
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_responder(value: Any, target: str) -> None:
    """Refuse, before serving, a target that is no responder (an ASGI app, a sync function)."""
    from .responder import BoundResponder

    if inspect.isclass(value):
        if callable(getattr(value, "respond", None)):
            return  # a class of responders: instantiated in each worker
        raise UsageError(f"{target} is a class without a respond(turn) method")
    try:
        BoundResponder(value)
    except TypeError as exc:
        message = f"{target} is not a responder: {exc}"
        if "ASGI app" in str(exc):
            message = (
                f"{target} is an ASGI app, not a responder: run it with "
                f"`uvicorn {target}`, serve it beside a responder with "
                f"`--also /path={target}`, or point serve at an async-generator "
                "function of a Turn"
            )
        raise UsageError(message) from None


def build_app(config: ServeConfig) -> Any:
    """The ASGI app `serve` runs: the ChatKit app mounted at `config.mount`.

    With the playground on, `/` redirects to it. Stores are closed on shutdown.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import RedirectResponse
    from starlette.routing import BaseRoute, Mount, Route

    from ._asgi import lifespan_of
    from .app import RUN_ID_HEADER, ChatKitApp

    responder = load_target(config.target, config.app_dir)
    context: Callable[..., Any] | None = None
    if config.context:
        context = load_target(config.context, config.app_dir)
    store = store_factory(config.store)()
    attachments = attachment_store_factory(config.attachments)() if config.attachments else None
    chatkit = ChatKitApp(
        responder,
        store=store,
        attachment_store=attachments,
        context=context,
        playground=config.playground,
    )
    mount = "/" + config.mount.strip("/")
    routes: list[BaseRoute] = []
    if config.playground and mount != "/":

        async def to_playground(request: Any) -> RedirectResponse:
            return RedirectResponse(mount + "/")

        routes.append(Route("/", to_playground))
    also = {path: load_target(target, config.app_dir) for path, target in config.also.items()}
    for path, mounted in also.items():
        routes.append(Mount("/" + path.strip("/"), app=mounted))
    routes.append(Mount(mount.rstrip("/"), app=chatkit))
    middleware = []
    if config.cors:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors,
                allow_methods=["GET", "POST", "PUT"],
                allow_headers=["*"],
                # Browser code may read the run id of a reply (e.g. to report it).
                expose_headers=[RUN_ID_HEADER],
            )
        )

    @asynccontextmanager
    async def lifespan(host: Any) -> AsyncIterator[None]:
        # Mount does not forward lifespan: the mounted apps' stores and clients are
        # opened and closed here, with ours.
        async with AsyncExitStack() as stack:
            for mounted in also.values():
                await stack.enter_async_context(lifespan_of(mounted))
            await stack.enter_async_context(chatkit.lifespan(host))
            yield

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def app_factory() -> Any:
    """Build the app from `CHATKIT_ASGI_SERVE_CONFIG` (what each uvicorn worker runs)."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start the server with `chatkit-asgi serve`")
    return build_app(ServeConfig(**json.loads(raw)))


# -- the command line ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="chatkit-asgi",
        description="Serve a ChatKit backend: the demo assistant, or your own responder.",
    )
    parser.add_argument("--version", action="version", version=f"chatkit-asgi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def server_options(command: argparse.ArgumentParser, store: str) -> None:
        command.add_argument("--host", default="127.0.0.1", help="interface (127.0.0.1)")
        command.add_argument("--port", type=int, default=8000, help="port (8000)")
        command.add_argument(
            "--store",
            default=store,
            help=f"sqlite:///path.db, memory:// or mongodb://host/database ({store})",
        )
        command.add_argument("--mount", default="/chatkit", help="endpoint path (/chatkit)")
        command.add_argument(
            "--cors",
            action="append",
            default=None,
            metavar="ORIGIN",
            help="allow browser pages of ORIGIN (repeatable; * for any)",
        )
        command.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1)")
        command.add_argument(
            "--also",
            action="append",
            default=None,
            type=_also,
            metavar="PATH=MODULE:APP",
            help="serve another ASGI app at PATH too, e.g. /agent=examples.agent.app:app",
        )
        command.add_argument(
            "--log-level",
            default="info",
            choices=["critical", "error", "warning", "info", "debug", "trace"],
            help="uvicorn's log level (info); LOG_LEVEL sets the library's",
        )

    demo = commands.add_parser(
        "demo",
        help="run the demo assistant with the playground",
        description="Run the demo assistant (echo, a widget, a slow answer, uploads) with "
        "the playground at http://HOST:PORT/chatkit/.",
    )
    server_options(demo, "sqlite:///chatkit-demo.db")
    demo.add_argument(
        "--attachments",
        default="file://chatkit-demo-files",
        help="where uploads go: file://dir or s3://bucket/prefix/ (file://chatkit-demo-files)",
    )

    serve = commands.add_parser(
        "serve",
        help="serve a responder (module:attribute)",
        description="Serve a responder without writing an app.",
    )
    serve.add_argument("target", metavar="MODULE:RESPONDER", help="e.g. myapp:respond")
    server_options(serve, "sqlite:///chatkit.db")
    serve.add_argument(
        "--attachments",
        default=None,
        help="enable uploads: file:///dir or s3://bucket/prefix/ (off)",
    )
    serve.add_argument("--playground", action="store_true", help="serve the playground page")
    serve.add_argument(
        "--context", default=None, metavar="MODULE:FACTORY", help="request context factory"
    )
    serve.add_argument(
        "--app-dir", default=".", help="directory to import MODULE from (the current one)"
    )
    return parser


def _config(args: argparse.Namespace) -> ServeConfig:
    if args.command == "demo":
        return ServeConfig(
            target=DEMO_RESPONDER,
            store=args.store,
            attachments=args.attachments or None,
            mount=args.mount,
            playground=True,
            cors=args.cors if args.cors is not None else ["*"],
            also=dict(args.also or []),
        )
    return ServeConfig(
        target=args.target,
        store=args.store,
        attachments=args.attachments,
        mount=args.mount,
        playground=args.playground,
        cors=args.cors or [],
        context=args.context,
        app_dir=args.app_dir,
        also=dict(args.also or []),
    )


def _also(value: str) -> tuple[str, str]:
    path, equals, target = value.partition("=")
    if not equals or not path.startswith("/") or ":" not in target:
        raise argparse.ArgumentTypeError(
            f"expected PATH=MODULE:APP, e.g. /agent=pkg.app:app, not {value!r}"
        )
    return path, target


def _check(config: ServeConfig, workers: int) -> None:
    """Fail fast, before any worker starts: the target imports and the URLs name stores."""
    check_responder(load_target(config.target, config.app_dir, instantiate=False), config.target)
    for target in config.also.values():
        load_target(target, config.app_dir, instantiate=False)
    if config.context:
        load_target(config.context, config.app_dir, instantiate=False)
    store_factory(config.store)
    if config.attachments:
        attachment_store_factory(config.attachments)
    if workers > 1 and urlsplit(config.store).scheme.lower() == "memory":
        raise UsageError("memory:// keeps threads in one process: use a single worker")
    if workers < 1:
        raise UsageError("--workers must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    config = _config(args)
    try:
        _check(config, args.workers)
        try:
            import uvicorn
        except ImportError as exc:
            raise _missing_extra("serving", "server", exc) from None
    except UsageError as exc:
        print(f"chatkit-asgi: error: {exc}", file=sys.stderr)
        return 2

    mount = "/" + config.mount.strip("/")
    base = f"http://{args.host}:{args.port}{mount.rstrip('/')}/"
    print(f"ChatKit endpoint: {base}", file=sys.stderr)
    if config.playground:
        print(f"Playground:       {base}", file=sys.stderr)
        print(f"ChatKit UI page:  {base}playground/chatkit.html", file=sys.stderr)
    os.environ[CONFIG_ENV] = json.dumps(asdict(config))
    uvicorn.run(
        "chatkit_asgi.cli:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
