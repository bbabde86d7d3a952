"""`JSONFormatter`: log records as one JSON object per line, for log collectors.

The `chatkit_asgi` logger puts its structured fields (`kind`, `run_id`,
`duration_ms`, ... see `chatkit_asgi.observability`) on each record, as `extra=`
would; this formatter writes them out next to the standard ones::

    {"time": "2026-01-31T12:00:00.123Z", "level": "INFO", "logger": "chatkit_asgi",
     "message": "threads.create 200 in 41.2 ms", "kind": "request", "run_id": "run_..."}

From `logging.config.dictConfig` (and so from `uvicorn --log-config logging.json`)::

    {"version": 1,
     "formatters": {"json": {"()": "chatkit_asgi.logs.JSONFormatter"}},
     "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
     "root": {"handlers": ["stderr"], "level": "INFO"}}

`"class": "chatkit_asgi.logs.JSONFormatter"` works too, as does `class=` in a
`fileConfig` file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

__all__ = ["JSONFormatter"]

# Every attribute of a bare record (on this Python: 3.12 added `taskName`), plus the
# two that `Formatter.format` adds: what is left on a record are its extras.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# The fields every line starts with: an extra of the same name is written as `name_`.
_FIELDS = frozenset({"time", "level", "logger", "message", "exc_info", "stack_info"})

# Uvicorn repeats its message with ANSI colour codes in this extra: noise in JSON.
_DROPPED = frozenset({"color_message"})


class JSONFormatter(logging.Formatter):
    """Formats a record as one line of JSON: the standard fields, then the record's extras.

    Fields, in order:

    - `time`: when the record was made, ISO-8601 in UTC with milliseconds
      (`2026-01-31T12:00:00.123Z`);
    - `level`, `logger`, `message` (the message with its arguments applied);
    - every extra on the record (what `extra=` put there, what this library's loggers
      attach, what a record factory such as OpenTelemetry's adds), under its own name,
      or with `_` appended if that name is one of the fields above;
    - `exc_info`: the formatted traceback, when the record carries an exception, and
      `stack_info` when it carries a stack.

    Values JSON cannot represent are written as text (datetimes in ISO-8601, sets and
    tuples as lists, anything else as `str(value)`): a log call never fails because of
    what it logs. Non-ASCII text is escaped, so every line is plain ASCII.

    The constructor takes `logging.Formatter`'s arguments, so `dictConfig` and
    `fileConfig` can build it; `fmt`, `datefmt` and `style` have no effect on the
    output. `static` adds fixed fields to every line (e.g. `{"service": "chat"}`;
    from `dictConfig`: `{"()": "chatkit_asgi.logs.JSONFormatter", "static": {...}}`).
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Any = "%",
        validate: bool = True,
        *,
        defaults: Mapping[str, Any] | None = None,
        static: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(fmt, datefmt, style, validate, defaults=defaults)
        self.static: dict[str, Any] = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (no newline: the handler adds it)."""
        document: dict[str, Any] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in self.static.items():
            document.setdefault(key, value)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _DROPPED:
                document[f"{key}_" if key in _FIELDS else key] = value
        if record.exc_info and not record.exc_text:
            # Cached on the record as Formatter.format does, for the other handlers.
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return _dumps(document)


def _utc_iso(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    """What `json.dumps` calls for a value it cannot write: a faithful, plain stand-in."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return _text(value)


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the record
        return f"<unprintable {type(value).__name__}>"


def _dumps(document: dict[str, Any]) -> str:
    try:
        return json.dumps(document, default=_jsonable)
    except (TypeError, ValueError, RecursionError):
        # A value that defeats `default` (a circular structure, non-string dict keys of
        # odd types): write each such field as text instead.
        safe: dict[str, Any] = {}
        for key, value in document.items():
            try:
                json.dumps(value, default=_jsonable)
            except (TypeError, ValueError, RecursionError):
                value = _text(value)
            safe[_text(key)] = value
        return json.dumps(safe, default=_jsonable)
