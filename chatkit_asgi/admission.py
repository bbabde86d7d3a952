"""Admission: let a request in, or refuse it before it costs anything.

An admission hook is an async callable the app awaits before every turn (every
streaming request) and every non-streaming request, after the request was
validated and its thread loaded, and before the thread's turn is taken::

    async def admit(context, request_type, thread) -> Refusal | None:
        if await quota_left(context["user_id"]) <= 0:
            return Refusal("You have used this month's quota.", code="quota_exceeded")
        return None  # let it in

    app = ChatKitApp(respond, admission=admit)

`thread` is the thread the request acts on, or None when there is none
(`threads.create`, `threads.list`, `attachments.*`, `input.transcribe`).
A direct upload (`POST {mount}/upload`) is asked about as `attachments.upload`
before any of its bytes are stored; a refusal answers it 429 like any
non-streaming request.

A refused streaming request answers 200 with a stream holding only the refusal:
an `error` event (its message shown as is) or a `notice` event, by `level`.
Nothing is stored and the responder does not run. A refused non-streaming request
answers 429 with a `Retry-After` header and the JSON error body
`{"error": {"code": "rate_limited", "message": ..., "details": [{"retry_after": s}]}}`.

A hook that decides only some request types says which in a `request_types`
attribute (any container of type names, read when the app is built); the app then
admits the others without awaiting it, so a hook about turns costs nothing on the
reads around them::

    admit.request_types = TURN_REQUEST_TYPES

`TokenBucketLimiter` is a ready hook: a token bucket per tenant, in memory
(`InMemoryBuckets`, one process) or in MongoDB
(`chatkit_asgi.ratelimit_mongodb.MongoBuckets`, shared by every worker). Another
backend implements `BucketBackend.take`; another policy is just another hook, and
`combine` runs several in order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from .errors import ChatKitError
from .types import ErrorEvent, NoticeEvent, ThreadMetadata, ThreadStreamEvent
from .types.requests import NonStreamingReq, StreamingReq

__all__ = [
    "REQUEST_TYPES",
    "TURN_REQUEST_TYPES",
    "UPLOAD_REQUEST_TYPE",
    "Admission",
    "BucketBackend",
    "InMemoryBuckets",
    "Refusal",
    "RefusalLevel",
    "TokenBucketLimiter",
    "combine",
    "every_request",
    "turns_only",
]

logger = logging.getLogger("chatkit_asgi")

RefusalLevel = Literal["notice", "error"]
"""How a refused streaming request shows: a `notice` event or an `error` event."""


def _type_names(union: Any) -> frozenset[str]:
    return frozenset(str(model.model_fields["type"].default) for model in get_args(union))


TURN_REQUEST_TYPES = _type_names(StreamingReq)
"""The request types that start a turn (the streaming ones)."""

UPLOAD_REQUEST_TYPE = "attachments.upload"
"""The request type a direct upload (`POST {mount}/upload`) is admitted as."""

REQUEST_TYPES = TURN_REQUEST_TYPES | _type_names(NonStreamingReq) | {UPLOAD_REQUEST_TYPE}
"""Every request type a hook may be asked about: the protocol's, and direct uploads."""


@dataclass(frozen=True)
class Refusal:
    """An admission hook's "no", with what the user sees.

    Args:
        message: shown to the user as is (the UI does not translate it).
        level: for streaming requests, an `error` event (the reply failed) or a
            `notice` event (a warning banner).
        retry_after: seconds until a retry may succeed: the `Retry-After` header
            of a refused non-streaming request (rounded up), None when unknown.
        code: the error code of a refused non-streaming request (HTTP 429), and
            the code in logs, traces and the errors metric.
        allow_retry: whether the `error` event offers the UI's retry button.
        title: the title of a `notice` event.
    """

    message: str
    level: RefusalLevel = "error"
    retry_after: float | None = None
    code: str = "rate_limited"
    allow_retry: bool = False
    title: str | None = None

    def event(self) -> ThreadStreamEvent:
        """The event a refused streaming request answers with."""
        if self.level == "notice":
            return NoticeEvent(level="warning", message=self.message, title=self.title)
        return ErrorEvent(code="custom", message=self.message, allow_retry=self.allow_retry)

    def error(self) -> ChatKitError:
        """The HTTP error a refused non-streaming request answers with (429)."""
        headers = {}
        details: list[Any] = []
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            details.append({"retry_after": round(self.retry_after, 3)})
        return ChatKitError(
            self.message, code=self.code, status_code=429, headers=headers, details=details
        )


Admission = Callable[[Any, str, ThreadMetadata | None], Awaitable[Refusal | None]]
"""An admission hook: `(context, request_type, thread) -> Refusal | None` (None admits).

It may carry a `request_types` attribute: the request types it is asked about."""


def asked_types(hook: Admission | None) -> frozenset[str]:
    """The request types `hook` is awaited for: its `request_types`, or every type."""
    if hook is None:
        return frozenset()
    wanted: Container[str] | None = getattr(hook, "request_types", None)
    if wanted is None:
        return REQUEST_TYPES
    return frozenset(name for name in REQUEST_TYPES if name in wanted)


class _Combined:
    """Hooks run in order; each is asked only about its own request types."""

    def __init__(self, hooks: tuple[Admission, ...]) -> None:
        self.hooks = [(hook, asked_types(hook)) for hook in hooks]
        self.request_types = frozenset().union(*(asked for _, asked in self.hooks))

    async def __call__(
        self, context: Any, request_type: str, thread: ThreadMetadata | None
    ) -> Refusal | None:
        for hook, asked in self.hooks:
            if request_type in asked:
                refusal = await hook(context, request_type, thread)
                if refusal is not None:
                    return refusal
        return None


def combine(*hooks: Admission) -> Admission:
    """One hook that runs `hooks` in order and returns the first refusal (it asks
    each hook only about the request types it names, see `request_types`)."""
    return _Combined(hooks)


def turns_only(request_type: str) -> float:
    """A cost function: one token per turn, nothing for the other requests."""
    return 1.0 if request_type in TURN_REQUEST_TYPES else 0.0


def every_request(request_type: str) -> float:
    """A cost function: one token per request of any type."""
    return 1.0


class BucketBackend(Protocol):
    """Where token buckets live. Implement `take` to keep them somewhere else.

    `take` must be atomic per key: concurrent takes, from any process sharing the
    backend, never hand out more tokens than the bucket holds.
    """

    async def take(self, key: str, tokens: float, rate: float, burst: float) -> float:
        """Take `tokens` from bucket `key` if it holds that many.

        The bucket holds at most `burst` tokens (a new bucket is full) and gains
        `rate` tokens per second. Return 0.0 when the tokens were taken, else the
        seconds until the bucket will hold them (nothing is taken then).
        """
        ...


class InMemoryBuckets:
    """Token buckets in this process's memory: limits hold per worker process.

    Each `take` runs without awaiting, so it is atomic on its event loop. Buckets
    that have refilled completely are forgotten once there are more than
    `max_keys` of them (a full bucket and a missing one are the same).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, tokens: float, rate: float, burst: float) -> float:
        """Take `tokens` from bucket `key` if it holds them; else the seconds to wait."""
        now = self._clock()
        held, at = self._buckets.get(key, (burst, now))
        held = min(burst, held + max(0.0, now - at) * rate)
        if held >= tokens:
            self._buckets[key] = (held - tokens, now)
            if len(self._buckets) > self._max_keys:
                self._forget_full(now, rate, burst)
            return 0.0
        self._buckets[key] = (held, now)
        return (tokens - held) / rate

    def _forget_full(self, now: float, rate: float, burst: float) -> None:
        self._buckets = {
            key: (held, at)
            for key, (held, at) in self._buckets.items()
            if held + (now - at) * rate < burst
        }


_DEFAULT_MESSAGE = "You are sending requests too quickly. Please wait a moment and try again."


class TokenBucketLimiter:
    """An admission hook that allows each tenant `rate` requests per `per` seconds.

    ::

        limiter = TokenBucketLimiter(20, per=60, burst=5, tenant=lambda ctx: ctx["user_id"])
        app = ChatKitApp(respond, admission=limiter)

    Every tenant has a bucket of `burst` tokens (default: `rate`) that refills at
    `rate / per` tokens a second; a request costs `cost(request_type)` tokens
    (default `turns_only`: a turn costs one, listing and loading cost nothing).
    A request that finds too few tokens is refused with `retry_after` set to the
    wait until it would not be.

    Args:
        rate: tokens added per `per` seconds.
        per: the period of `rate`, in seconds.
        burst: the bucket size: how many requests may come at once.
        tenant: the bucket key from the request context; requests for which it
            returns None share one bucket.
        backend: where buckets live; `InMemoryBuckets()` by default (per process).
            Use `MongoBuckets` for a limit shared by all workers.
        cost: tokens a request type costs; 0 lets it in without touching the backend.
            Costs above `burst` are capped at `burst`. The limiter's `request_types`
            are the types that cost tokens when it is built: the app does not even
            await it for the others.
        name: the prefix of the bucket keys, so several limiters share a backend.
        message: what a refused user is told.
        level: how a refused turn shows (`error` or `notice` event).
        fail_open: when the backend fails (e.g. MongoDB is down), let requests in
            and log a warning rather than fail them (503 `store_unavailable`).
    """

    def __init__(
        self,
        rate: float,
        *,
        per: float = 1.0,
        burst: float | None = None,
        tenant: Callable[[Any], str | None],
        backend: BucketBackend | None = None,
        cost: Callable[[str], float] | Mapping[str, float] = turns_only,
        name: str = "chatkit",
        message: str = _DEFAULT_MESSAGE,
        level: RefusalLevel = "error",
        fail_open: bool = False,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("rate and per must be positive")
        self.rate = rate / per
        self.burst = float(burst if burst is not None else rate)
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self.tenant = tenant
        self.backend: BucketBackend = backend if backend is not None else InMemoryBuckets()
        if isinstance(cost, Mapping):
            costs = dict(cost)
            self.cost: Callable[[str], float] = lambda request_type: costs.get(request_type, 0.0)
        else:
            self.cost = cost
        self.request_types = frozenset(name for name in REQUEST_TYPES if self.cost(name) > 0)
        """The request types that cost tokens (the app asks the limiter about no other)."""
        self.name = name
        self.message = message
        self.level: RefusalLevel = level
        self.fail_open = fail_open

    async def __call__(
        self, context: Any, request_type: str, thread: ThreadMetadata | None
    ) -> Refusal | None:
        """Admit the request if its tenant's bucket holds its cost."""
        tokens = min(self.cost(request_type), self.burst)
        if tokens <= 0:
            return None
        tenant = self.tenant(context)
        key = f"{self.name}:{'' if tenant is None else tenant}"
        try:
            wait = await self.backend.take(key, tokens, self.rate, self.burst)
        except Exception:
            if not self.fail_open:
                raise
            logger.warning("rate limit backend failed; admitting the request", exc_info=True)
            return None
        if wait <= 0:
            return None
        return Refusal(self.message, level=self.level, retry_after=wait)
