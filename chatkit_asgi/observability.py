"""What an operator sees: structured log records, reply statistics, health checks.

The `chatkit_asgi` logger emits one INFO record per request and one per turn
(streaming reply), with JSON-friendly fields in `extra`, so a JSON formatter
(python-json-logger, structlog's stdlib bridge, a cloud agent) turns them into
searchable documents:

===========================  =====================================================
field                        meaning
===========================  =====================================================
`kind`                       "request" or "turn"
`request_type`               the envelope's `type`, e.g. `threads.create`
`path`                       request records: the URL path (no query string)
`status`                     request records: the HTTP status
`outcome`                    requests: `ok`, `refused` (4xx), `failed` (5xx),
                             `aborted`, or the turn's outcome; turns: `completed`,
                             `error` (an error event was sent), `cancelled` (the
                             client left and the reply was cancelled), `detached`
                             (the client left, the reply ran on), `refused`
                             (admission), `not_started` (the client left first)
`error_code`                 the error's code, when there was one
`duration_ms`                wall time of the request / the turn
`run_id`                     the reply's id (`X-ChatKit-Run-Id`, `Turn.run_id`)
`thread_id`                  the thread, when there is one
`tenant_hash`                a pseudonym of the tenant (`ChatKitApp(tenant=...)`)
`events`, `bytes`            events and bytes of the reply
`time_to_first_event_ms`     turns: from the request's arrival to the first event
                             the responder produced
`disconnect_policy`          turns: what a disconnect does (`cancel`/`continue`)
`client_disconnected`        turns: whether the client left before the end
`input_text`/`output_text`   only with `ChatKitApp(log_content=True)`
===========================  =====================================================

Message contents are never logged unless `log_content=True`. `LOG_LEVEL` sets
the logger's level. With telemetry on (`chatkit_asgi.telemetry`) the same facts
become span attributes and metrics; with both off, a request pays one
`logger.isEnabledFor` check.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._reply import ReplyStats, StreamPlan
from .errors import ChatKitError
from .types import (
    UserMessageTagContent,
    UserMessageTextContent,
)

if TYPE_CHECKING:
    from .store import AttachmentStore, Store
    from .types import ChatKitReq

__all__ = ["ReplyStats", "RequestObserver", "RequestRecord", "check_health", "tenant_hash"]

logger = logging.getLogger("chatkit_asgi")

TenantFn = Callable[[Any], "str | None"]


@functools.lru_cache(maxsize=4096)  # the same few tenants, request after request
def tenant_hash(tenant: str) -> str:
    """The pseudonym of a tenant key in logs and traces: 16 hex digits of its SHA-256.

    A pseudonym, not anonymity: whoever knows the key can compute it and find the
    tenant's records, which is the point.
    """
    return hashlib.sha256(tenant.encode()).hexdigest()[:16]


class Tracing(Protocol):
    """What a record asks of `chatkit_asgi.telemetry.Telemetry` (spans and metrics).

    Described here rather than imported: telemetry reads the records, so an import
    back from here would close a circle (and load OpenTelemetry for every app).
    A span scope is opaque to the record: it only hands it back.
    """

    def start_request(self) -> tuple[Any, Token[bool | None]]:
        """Open the request's span."""

    def finish_request(self, record: RequestRecord, scope: Any, flag: Token[bool | None]) -> None:
        """Close the request's span and count it."""

    def start_turn(self, record: RequestRecord) -> Any:
        """Open the turn's span."""

    def finish_turn(self, record: RequestRecord, scope: Any) -> None:
        """Close the turn's span and count it."""


class RequestObserver:
    """Per app: makes a `RequestRecord` for each request when anyone listens."""

    def __init__(
        self,
        *,
        tenant: TenantFn | None = None,
        log_content: bool = False,
        telemetry: Tracing | None = None,
    ) -> None:
        self.tenant = tenant
        self.log_content = log_content
        self.telemetry = telemetry

    def begin(self, scope: Any) -> RequestRecord | None:
        """A record for this request, or None when neither logs nor telemetry want it."""
        if self.telemetry is None and not logger.isEnabledFor(logging.INFO):
            return None
        return RequestRecord(self, scope)

    def tenant_hash(self, context: Any) -> str | None:
        """The tenant's pseudonym, or None without a tenant function (or tenant)."""
        if self.tenant is None or context is None:
            return None
        try:
            tenant = self.tenant(context)
        except Exception:
            return None
        return None if tenant is None else tenant_hash(str(tenant))


class RequestRecord:
    """What is known about one request as it is handled; logged when it ends.

    A request sets only what it learns: the fields below default on the class, and
    what is derived from the request (its type, thread, text) is worked out when a
    log record or a recorded span asks, so a request nobody logs or samples pays for
    little more than its clock reading.
    """

    request: ChatKitReq | None = None
    """The parsed request, once there is one."""
    context: Any = None
    """The request context, once built."""
    status: int | None = None
    """The HTTP status sent (None: none yet)."""
    error_code: str | None = None
    """The error code of the response or the turn, when there was one."""
    run_id: str | None = None
    """The streaming reply's run id."""
    stats: ReplyStats | None = None
    """The streaming reply's counters."""
    refused: bool = False
    """Whether the admission hook refused the turn."""
    turn_outcome: str | None = None
    """How the turn ended (see the module docs)."""
    disconnect_policy: str | None = None
    """The turn's disconnect policy: `cancel` or `continue`."""
    turn_started = 0.0
    _turn_thread_id: str | None = None
    _tenant_hash: str | bool | None = False  # False: not computed yet
    _span: Any = None
    _turn_span: Any = None
    _flag: Token[bool | None] | None = None

    def __init__(self, observer: RequestObserver, scope: Any) -> None:
        self.observer = observer
        self.scope = scope
        self.started = time.perf_counter()
        telemetry = observer.telemetry
        if telemetry is not None:
            self._span, self._flag = telemetry.start_request()

    # -- filled in by the app ---------------------------------------------------------

    def parsed(self, request: ChatKitReq, context: Any) -> None:
        """The request was parsed and its context built."""
        self.request = request
        self.context = context

    def answered(self, status: int = 200) -> None:
        """A JSON answer was sent."""
        self.status = status

    def failed(self, error: ChatKitError) -> None:
        """The request was refused (or failed) with this error response."""
        self.status = error.status_code
        self.error_code = error.code

    def begin_turn(self, plan: StreamPlan, cancels: bool) -> ReplyStats:
        """The streaming reply `plan` is about to run; returns the counters it keeps."""
        self.status = 200
        self.run_id = plan.run_id
        self._turn_thread_id = plan.thread_id
        self.refused = plan.refusal is not None
        if plan.refusal is not None:
            self.error_code = plan.refusal.code
        self.disconnect_policy = "cancel" if cancels else "continue"
        self.turn_started = time.perf_counter()
        self.stats = ReplyStats(self.started, collect_text=self.observer.log_content)
        telemetry = self.observer.telemetry
        if telemetry is not None:
            self._turn_span = telemetry.start_turn(self)
        return self.stats

    def end_turn(self) -> None:
        """The streaming reply is over: log it, close its span."""
        stats = self.stats
        if stats is None:
            return
        self.turn_outcome = stats.outcome(self.refused)
        if stats.error_code is not None and not self.refused:
            self.error_code = stats.error_code
        duration = time.perf_counter() - self.turn_started
        telemetry = self.observer.telemetry
        if telemetry is not None:
            # Metrics are not sampled: a turn whose span records nothing still counts.
            telemetry.finish_turn(self, self._turn_span)
            self._turn_span = None
        if logger.isEnabledFor(logging.INFO):
            ttfe = stats.time_to_first_event
            fields: dict[str, Any] = {
                "kind": "turn",
                "request_type": self.request_type,
                "outcome": self.turn_outcome,
                "error_code": self.error_code,
                "duration_ms": _ms(duration),
                "run_id": self.run_id,
                "thread_id": self.thread_id,
                "tenant_hash": self.tenant_hash,
                "events": stats.events,
                "bytes": stats.bytes,
                "time_to_first_event_ms": None if ttfe is None else _ms(ttfe),
                "disconnect_policy": self.disconnect_policy,
                "client_disconnected": stats.client_gone,
            }
            if stats.output is not None:
                fields["output_text"] = "\n".join(stats.output)
            _log(
                logging.INFO,
                "turn %s on %s %s: %d events, %d bytes in %.1f ms",
                (
                    self.run_id,
                    self.thread_id,
                    self.turn_outcome,
                    stats.events,
                    stats.bytes,
                    duration * 1000,
                ),
                fields,
            )

    def end(self, error: BaseException | None = None) -> None:
        """The request is over: log it, close its span."""
        if error is not None and self.status is None:
            # Not an HTTP refusal: a bug, or the server cancelled the request.
            self.status = 500 if isinstance(error, Exception) else None
            self.error_code = "internal_error" if isinstance(error, Exception) else None
        telemetry = self.observer.telemetry
        if telemetry is not None and self._flag is not None:
            telemetry.finish_request(self, self._span, self._flag)
            self._span = self._flag = None
        level = logging.WARNING if (self.status or 0) >= 500 else logging.INFO
        if logger.isEnabledFor(level):
            duration = time.perf_counter() - self.started
            outcome = self.outcome
            fields: dict[str, Any] = {
                "kind": "request",
                "request_type": self.request_type,
                "path": self.path,
                "status": self.status,
                "outcome": outcome,
                "error_code": self.error_code,
                "duration_ms": _ms(duration),
                "run_id": self.run_id,
                "thread_id": self.thread_id,
                "tenant_hash": self.tenant_hash,
                "events": self.stats.events if self.stats is not None else None,
                "bytes": self.stats.bytes if self.stats is not None else None,
            }
            input_text = self.input_text
            if input_text is not None:
                fields["input_text"] = input_text
            _log(
                level,
                "request %s %s -> %s %s in %.1f ms",
                (self.request_type or "-", self.path, self.status, outcome, duration * 1000),
                fields,
            )

    # -- derived ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The URL path (no query string)."""
        path: str = self.scope.get("path", "")
        return path

    @property
    def request_type(self) -> str | None:
        """The envelope's `type`, once parsed."""
        return None if self.request is None else self.request.type

    @property
    def thread_id(self) -> str | None:
        """The thread the request acts on (the new one for `threads.create`), if any."""
        if self._turn_thread_id is not None:
            return self._turn_thread_id
        thread_id = self._param("thread_id")
        return thread_id if isinstance(thread_id, str) else None

    @property
    def input_text(self) -> str | None:
        """The user's message text, with `log_content` only."""
        if not self.observer.log_content:
            return None
        content = getattr(self._param("input"), "content", None)
        if not isinstance(content, list):
            return None
        return "".join(
            part.text
            for part in content
            if isinstance(part, UserMessageTextContent | UserMessageTagContent)
        )

    def _param(self, name: str) -> Any:
        """A parameter of the request, or None (not parsed yet, or not of its type)."""
        return None if self.request is None else getattr(self.request.params, name, None)

    @property
    def outcome(self) -> str:
        """The request's outcome (see the module docs)."""
        if self.turn_outcome is not None:
            return self.turn_outcome
        if self.status is None:
            return "aborted"
        if self.status < 400:
            return "ok"
        return "refused" if self.status < 500 else "failed"

    @property
    def tenant_hash(self) -> str | None:
        """The tenant's pseudonym (computed once)."""
        if self._tenant_hash is False:
            self._tenant_hash = self.observer.tenant_hash(self.context)
        assert self._tenant_hash is not True
        return self._tenant_hash


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _log(level: int, message: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    """`logger.log(level, message, *args, extra=fields)`, for a fraction of its cost.

    Walking the stack for the caller's file and line is the costliest part of a log
    call, and the answer is always this module; checking each `extra` key against
    the record's attributes is next, and these keys are fixed and none of
    `LogRecord`'s. The record still comes from the record factory
    (`logging.setLogRecordFactory`), so what a factory adds, such as
    OpenTelemetry's trace ids, is there.
    """
    record = logger.makeRecord(logger.name, level, __file__, 0, message, args, None)
    record.__dict__.update(fields)
    logger.handle(record)


# -- health ------------------------------------------------------------------------------


async def check_health(
    store: Store[Any], attachment_store: AttachmentStore[Any] | None, within: float
) -> tuple[int, bytes]:
    """Ping the stores: 200 when every one answers within `within` seconds, else 503.

    The body says which check failed (`ok` / `unavailable` / `timeout`), never why:
    error messages may name hosts and credentials, so they go to the log only.
    """
    checks: dict[str, str] = {"store": await _ping("store", store, within)}
    if attachment_store is not None:
        checks["attachment_store"] = await _ping("attachment store", attachment_store, within)
    healthy = all(state == "ok" for state in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return (200 if healthy else 503), json.dumps(body, separators=(",", ":")).encode()


async def _ping(name: str, store: Store[Any] | AttachmentStore[Any], within: float) -> str:
    try:
        with anyio.fail_after(within):
            await store.ping()
    except TimeoutError:
        logger.warning("health check: the %s did not answer within %ss", name, within)
        return "timeout"
    except Exception:
        logger.warning("health check: the %s is unavailable", name, exc_info=True)
        return "unavailable"
    return "ok"
