"""OpenTelemetry traces and metrics (extra `chatkit-asgi[otel]`).

Turned on with `ChatKitApp(telemetry=True)` (global providers), by passing
`tracer_provider=` / `meter_provider=`, or with `telemetry=Telemetry(...)`. This
module is imported only then: an app without telemetry never imports OpenTelemetry.

Spans (all `INTERNAL`, children of whatever span is current, so behind
OpenTelemetry's ASGI middleware — `opentelemetry-instrumentation-asgi`, also
what the Starlette and FastAPI instrumentations install — they are children of
its HTTP server span; this module leaves HTTP semantics and context propagation
to that middleware rather than duplicating them):

- `chatkit.request`: one per request; attributes `chatkit.request.type`,
  `chatkit.thread.id`, `chatkit.run.id`, `chatkit.tenant.hash`,
  `http.response.status_code`, `chatkit.outcome`, `chatkit.error.code`.
- `chatkit.turn`: one per streaming reply, child of the request span; the
  request's attributes plus `chatkit.events`, `chatkit.bytes`,
  `chatkit.time_to_first_event` (s), `chatkit.disconnect.policy`,
  `chatkit.client.disconnected`.
- `chatkit.store.<method>`: one per store call of a recorded request (a
  sampled-out request makes none; outside a request, one per call made under a
  recorded span), with `chatkit.store.system` (the store's class) and
  `db.operation.name`; `Telemetry(store_spans=False)` turns them off.

A span that records nothing (no SDK, or sampled out) is not made current and
gets no attributes: without an SDK, telemetry costs a few no-op calls per request.
Metrics are not sampled: every request and turn is counted.

Metrics (meter `chatkit_asgi`):

- `chatkit.streams.active` (up-down counter): replies streaming now.
- `chatkit.turns` (counter, by request type and outcome): its rate is turns per second.
- `chatkit.turn.time_to_first_event` (histogram, s): request arrival to the
  responder's first event.
- `chatkit.turn.events` (histogram): events per turn.
- `chatkit.errors` (counter, by `chatkit.error.code` and request type): refused
  requests, error events and refusals.
"""

from __future__ import annotations

from collections.abc import Coroutine
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .store import NotFoundError, Store, StoreItemType, TurnLease
from .types import Attachment, Page, ThreadItem, ThreadMetadata

if TYPE_CHECKING:
    from .observability import RequestRecord

__all__ = ["Telemetry", "TracedStore"]

_SCOPE = "chatkit_asgi"
R = TypeVar("R")

# Whether the request being handled records spans; None outside a request. Store
# calls read this (one lookup) rather than the current span (five calls deep).
_RECORDING: ContextVar[bool | None] = ContextVar("chatkit_asgi_recording", default=None)


def _version() -> str:
    from ._version import __version__

    return __version__


class _SpanScope:
    """A started, recording span made current, and the token to make it not current again."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.token = otel_context.attach(trace.set_span_in_context(span))

    def close(self) -> None:
        self.span.end()
        otel_context.detach(self.token)


def _recording(span: Span) -> _SpanScope | None:
    # A span that records nothing (no SDK, or sampled out) is dropped at once rather
    # than made current: its children would record nothing either, and attaching
    # costs more than such a span.
    return _SpanScope(span) if span.is_recording() else None


class Telemetry:
    """The app's tracer, meter and instruments.

    Pass one as `ChatKitApp(telemetry=Telemetry(...))` to set what
    `telemetry=True` leaves at its defaults.

    Args:
        tracer_provider: where spans go; the global provider by default.
        meter_provider: where metrics go; the global provider by default.
        store_spans: a `chatkit.store.*` span per store call. With the SDK each
            span costs about as much as a call to a fast store (docs/production.md,
            "Keeping spans cheap"); turn them off to keep only the request and
            turn spans.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        store_spans: bool = True,
    ) -> None:
        self.store_spans = store_spans
        self._type_attributes: dict[str, dict[str, str]] = {}
        version = _version()
        self.tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
        self.active_streams = meter.create_up_down_counter(
            "chatkit.streams.active", unit="{stream}", description="Replies streaming now"
        )
        self.turns = meter.create_counter(
            "chatkit.turns", unit="{turn}", description="Turns (streaming replies) finished"
        )
        self.time_to_first_event = meter.create_histogram(
            "chatkit.turn.time_to_first_event",
            unit="s",
            description="From the request's arrival to the responder's first event",
        )
        self.events_per_turn = meter.create_histogram(
            "chatkit.turn.events", unit="{event}", description="Events sent per turn"
        )
        self.errors = meter.create_counter(
            "chatkit.errors",
            unit="{error}",
            description="Refused requests, error events and admission refusals, by code",
        )

    # -- the store ------------------------------------------------------------------

    def wrap_store(self, store: Store[Any]) -> Store[Any]:
        """`store` with a span around each call (`store` itself without `store_spans`)."""
        return TracedStore(store, self.tracer) if self.store_spans else store

    # -- requests and turns (called by observability.RequestRecord) ------------------

    def start_request(self) -> tuple[_SpanScope | None, Token[bool | None]]:
        """Open the request span (current until `finish_request` if it records) and
        set the request's recording flag; both are handed back to `finish_request`."""
        span = self.tracer.start_span("chatkit.request")
        recording = span.is_recording()
        return (_SpanScope(span) if recording else None), _RECORDING.set(recording)

    def finish_request(
        self, record: RequestRecord, scope: _SpanScope | None, flag: Token[bool | None]
    ) -> None:
        """Close the request span with what is known about the request; count its error."""
        if scope is not None:
            span = scope.span
            attributes = _common(record)
            attributes["chatkit.outcome"] = record.outcome
            if record.status is not None:
                attributes["http.response.status_code"] = record.status
            span.set_attributes(attributes)
            if record.status is not None and record.status >= 500:
                span.set_status(Status(StatusCode.ERROR, record.error_code))
            scope.close()
        _RECORDING.reset(flag)
        if record.stats is None and record.error_code is not None:
            # Streaming requests count their errors with the turn.
            self.errors.add(1, _error_attributes(record, record.error_code))

    def start_turn(self, record: RequestRecord) -> _SpanScope | None:
        """Open the turn span, a child of the request span, and count the stream."""
        self.active_streams.add(1, self._by_type(record.request_type))
        return _recording(self.tracer.start_span("chatkit.turn"))

    def finish_turn(self, record: RequestRecord, scope: _SpanScope | None) -> None:
        """Close the turn span and record the turn's metrics."""
        stats = record.stats
        assert stats is not None
        outcome = record.turn_outcome or ""
        ttfe = stats.time_to_first_event
        if scope is not None:
            span = scope.span
            attributes = _common(record)
            attributes.update(
                {
                    "chatkit.outcome": outcome,
                    "chatkit.events": stats.events,
                    "chatkit.bytes": stats.bytes,
                    "chatkit.disconnect.policy": record.disconnect_policy or "",
                    "chatkit.client.disconnected": stats.client_gone,
                }
            )
            if ttfe is not None:
                attributes["chatkit.time_to_first_event"] = ttfe
            span.set_attributes(attributes)
            if outcome == "error":
                span.set_status(Status(StatusCode.ERROR, record.error_code))
            scope.close()
        by_type = self._by_type(record.request_type)
        self.active_streams.add(-1, by_type)
        self.turns.add(
            1, {"chatkit.request.type": by_type["chatkit.request.type"], "chatkit.outcome": outcome}
        )
        self.events_per_turn.record(stats.events, by_type)
        if ttfe is not None:
            self.time_to_first_event.record(ttfe, by_type)
        if record.error_code is not None:
            self.errors.add(1, _error_attributes(record, record.error_code))

    def _by_type(self, request_type: str | None) -> dict[str, str]:
        """The metric attributes `{"chatkit.request.type": ...}`, made once per type."""
        key = request_type or ""
        attributes = self._type_attributes.get(key)
        if attributes is None:
            # Request types are validated before they get here: a handful of keys.
            attributes = self._type_attributes[key] = {"chatkit.request.type": key}
        return attributes


def _common(record: RequestRecord) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if record.request_type is not None:
        attributes["chatkit.request.type"] = record.request_type
    if record.thread_id is not None:
        attributes["chatkit.thread.id"] = record.thread_id
    if record.run_id is not None:
        attributes["chatkit.run.id"] = record.run_id
    tenant = record.tenant_hash
    if tenant is not None:
        attributes["chatkit.tenant.hash"] = tenant
    if record.error_code is not None:
        attributes["chatkit.error.code"] = record.error_code
    return attributes


def _error_attributes(record: RequestRecord, code: str) -> dict[str, str]:
    return {"chatkit.error.code": code, "chatkit.request.type": record.request_type or ""}


class TracedStore(Store[Any]):
    """A `Store` proxy that wraps every call of `inner` in a `chatkit.store.*` span.

    Attributes it does not define (a store's own extras) are the inner store's.
    A `NotFoundError` is an answer, not a failure: its span is marked with
    `chatkit.store.not_found` instead of an error status.
    """

    def __init__(self, inner: Store[Any], tracer: trace.Tracer) -> None:
        self.inner = inner
        self._tracer = tracer
        self._system = type(inner).__name__
        self._attributes: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _call(self, operation: str, call: Coroutine[Any, Any, R]) -> Coroutine[Any, Any, R]:
        # Plain methods handing back a coroutine, so an untraced call costs one check
        # and no extra coroutine: store spans are children of a recorded request, and
        # without one (no SDK, sampled out) a span would record nothing.
        recording = _RECORDING.get()
        if recording is None:
            # Outside a request (the integration's own store call): the current span decides.
            recording = trace.get_current_span().is_recording()
        if not recording:
            return call
        return self._traced(operation, call)

    async def _traced(self, operation: str, call: Coroutine[Any, Any, R]) -> R:
        attributes = self._attributes.get(operation)
        if attributes is None:
            attributes = {"chatkit.store.system": self._system, "db.operation.name": operation}
            self._attributes[operation] = attributes
        # By hand rather than `start_as_current_span`: its context managers cost more
        # than many store calls (see bench/hooks_overhead.py).
        span = self._tracer.start_span(
            f"chatkit.store.{operation}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await call
        except NotFoundError:
            span.set_attribute("chatkit.store.not_found", True)
            raise
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    # -- ids and lifecycle: no spans ------------------------------------------------

    def generate_thread_id(self, context: Any) -> str:
        """The inner store's thread id."""
        return self.inner.generate_thread_id(context)

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: Any
    ) -> str:
        """The inner store's item id."""
        return self.inner.generate_item_id(item_type, thread, context)

    async def aclose(self) -> None:
        """Close the inner store."""
        await self.inner.aclose()

    async def ping(self) -> None:
        """Ping the inner store."""
        await self.inner.ping()

    # -- traced calls ---------------------------------------------------------------

    def load_thread(self, thread_id: str, context: Any) -> Coroutine[Any, Any, ThreadMetadata]:
        """Traced `load_thread`."""
        return self._call("load_thread", self.inner.load_thread(thread_id, context))

    def save_thread(self, thread: ThreadMetadata, context: Any) -> Coroutine[Any, Any, None]:
        """Traced `save_thread`."""
        return self._call("save_thread", self.inner.save_thread(thread, context))

    def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: Any
    ) -> Coroutine[Any, Any, Page[ThreadItem]]:
        """Traced `load_thread_items`."""
        return self._call(
            "load_thread_items",
            self.inner.load_thread_items(thread_id, after, limit, order, context),
        )

    def save_attachment(self, attachment: Attachment, context: Any) -> Coroutine[Any, Any, None]:
        """Traced `save_attachment`."""
        return self._call("save_attachment", self.inner.save_attachment(attachment, context))

    def load_attachment(self, attachment_id: str, context: Any) -> Coroutine[Any, Any, Attachment]:
        """Traced `load_attachment`."""
        return self._call("load_attachment", self.inner.load_attachment(attachment_id, context))

    def delete_attachment(self, attachment_id: str, context: Any) -> Coroutine[Any, Any, None]:
        """Traced `delete_attachment`."""
        return self._call("delete_attachment", self.inner.delete_attachment(attachment_id, context))

    def load_threads(
        self, limit: int, after: str | None, order: str, context: Any
    ) -> Coroutine[Any, Any, Page[ThreadMetadata]]:
        """Traced `load_threads`."""
        return self._call("load_threads", self.inner.load_threads(limit, after, order, context))

    def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: Any
    ) -> Coroutine[Any, Any, None]:
        """Traced `add_thread_item`."""
        return self._call("add_thread_item", self.inner.add_thread_item(thread_id, item, context))

    def save_item(
        self, thread_id: str, item: ThreadItem, context: Any
    ) -> Coroutine[Any, Any, None]:
        """Traced `save_item`."""
        return self._call("save_item", self.inner.save_item(thread_id, item, context))

    def load_item(
        self, thread_id: str, item_id: str, context: Any
    ) -> Coroutine[Any, Any, ThreadItem]:
        """Traced `load_item`."""
        return self._call("load_item", self.inner.load_item(thread_id, item_id, context))

    def delete_thread(self, thread_id: str, context: Any) -> Coroutine[Any, Any, None]:
        """Traced `delete_thread`."""
        return self._call("delete_thread", self.inner.delete_thread(thread_id, context))

    def delete_thread_item(
        self, thread_id: str, item_id: str, context: Any
    ) -> Coroutine[Any, Any, None]:
        """Traced `delete_thread_item`."""
        return self._call(
            "delete_thread_item", self.inner.delete_thread_item(thread_id, item_id, context)
        )

    def acquire_turn(
        self, thread_id: str, context: Any, wait: float
    ) -> Coroutine[Any, Any, TurnLease | None]:
        """Traced `acquire_turn`."""
        return self._call("acquire_turn", self.inner.acquire_turn(thread_id, context, wait))

    def delete_thread_items_after(
        self, thread_id: str, item_id: str, context: Any
    ) -> Coroutine[Any, Any, None]:
        """Traced `delete_thread_items_after`."""
        return self._call(
            "delete_thread_items_after",
            self.inner.delete_thread_items_after(thread_id, item_id, context),
        )
