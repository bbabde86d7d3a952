"""What `SQLAlchemyStore` needs around SQLAlchemy: engines with timeouts, and telling
outages (503) from bugs and from values the database cannot store."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, ParamSpec, TypeVar

import anyio
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..store import StoreUnavailableError

__all__ = ["UnstorableValueError", "bounded", "is_outage", "make_engine", "outages", "sqlstate"]

R = TypeVar("R")
P = ParamSpec("P")

# Plain URLs get the async driver this store is tested with.
_ASYNC_DRIVERS: Final = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
# SQLSTATE classes of "the server cannot serve right now": connection exceptions,
# insufficient resources, operator intervention (shutdown, restart).
_OUTAGE_SQLSTATES: Final = ("08", "53", "57P")
# Character not in repertoire, untranslatable character (NUL in text or JSONB).
_UNSTORABLE_SQLSTATES: Final = frozenset({"22021", "22P05"})
_SQLITE_OUTAGES: Final = (
    "locked",
    "busy",
    "disk is full",
    "disk i/o",
    "readonly",
    "unable to open",
)


class UnstorableValueError(ValueError):
    """The database cannot store this value (a NUL character on PostgreSQL);
    nothing was written. The driver's error is the `__cause__`."""


def outages(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run a store method inside the store's `_bounded()`: its timeout, and an
    unreachable database reported as `StoreUnavailableError` (the app answers 503)."""

    @functools.wraps(method)
    async def within_bounds(*args: P.args, **kwargs: P.kwargs) -> R:
        async with args[0]._bounded():  # type: ignore[attr-defined]
            return await method(*args, **kwargs)

    return within_bounds


@asynccontextmanager
async def bounded(seconds: float | None, dialect: str) -> AsyncIterator[None]:
    """Bound the block by `seconds` (None: no bound), and report an unreachable
    database as `StoreUnavailableError` (the app answers 503)."""
    try:
        if seconds is None:
            yield
        else:
            with anyio.fail_after(seconds):
                yield
    except TimeoutError as exc:
        raise StoreUnavailableError(f"the database did not answer within {seconds} s") from exc
    except (sa_exc.SQLAlchemyError, OSError) as exc:
        if is_outage(exc, dialect):
            raise StoreUnavailableError(f"the database is unavailable: {exc}") from exc
        if sqlstate(exc) in _UNSTORABLE_SQLSTATES:
            raise UnstorableValueError(
                "the database cannot store this value (PostgreSQL text and JSONB "
                f"cannot hold NUL characters): {exc}"
            ) from exc
        raise


def make_engine(url: str, timeout: float | None, options: Mapping[str, Any]) -> AsyncEngine:
    """An engine for `url` whose connects and statements give up after `timeout`."""
    parsed = make_url(url)
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    # No pre-ping: it would cost a round trip per call. A connection found broken
    # invalidates the pool, so after a database restart one call fails (503).
    settings: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    if timeout is not None:
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "asyncpg":
            connect_args = {"timeout": timeout, "command_timeout": timeout}
        elif parsed.get_backend_name() == "sqlite":
            connect_args = {"timeout": timeout}  # how long to wait for a locked database
        if parsed.get_backend_name() != "sqlite":
            settings["pool_timeout"] = timeout
    settings["connect_args"] = {**connect_args, **options.get("connect_args", {})}
    settings.update({key: value for key, value in options.items() if key != "connect_args"})
    return create_async_engine(parsed, **settings)


def is_outage(exc: BaseException, dialect: str) -> bool:
    """Whether the error is about reaching the database (a retry later may succeed)."""
    if isinstance(exc, (OSError, sa_exc.TimeoutError, sa_exc.DisconnectionError)):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if dialect == "sqlite":
        message = str(exc.orig).lower()
        return isinstance(exc, sa_exc.OperationalError) and any(
            part in message for part in _SQLITE_OUTAGES
        )
    state = sqlstate(exc)
    if state:
        return state.startswith(_OUTAGE_SQLSTATES)
    # No server answer at all: the connection failed or broke.
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))


def sqlstate(exc: BaseException) -> str:
    """The PostgreSQL SQLSTATE of a driver error, or ""."""
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
