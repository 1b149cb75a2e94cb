"""Structured, redacted logs: JSON lines on stdout, OTLP when configured.

Every record passes ``RedactionFilter`` before any handler sees it, including
handlers installed by others (pytest's, a library's) on the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider

from telemetry.metrics import PizzaMetrics
from telemetry.redaction import MASK, SENSITIVE_KEYS, redact_text, redact_value

if TYPE_CHECKING:
    from telemetry.setup import Telemetry

_OWNED = "_jwt_pizza_handler"
_REDACTED = "_jwt_pizza_redacted"
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
    _REDACTED,
}
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
# uvicorn's access line repeats the service's own (app.access, telemetry/server.py: the
# same request, with its duration) and adds the client's address and port. It is not
# written: a logger without handlers is one uvicorn does not even format a line for.
UVICORN_ACCESS_LOGGER = "uvicorn.access"
# Another component running in this process on behalf of no customer (the factory
# simulator that `pizza serve` bundles): set in that component's task, its records are
# named by a "source" field on stdout and never exported over OTLP, where they would
# be counted under the service's own service.name.
log_source: ContextVar[str | None] = ContextVar("log_source", default=None)
_EXCEPTION_FORMATTER = logging.Formatter()
# OpenTelemetry's names for Python's levels (logs data model, "displaying severity").
_OTEL_SEVERITY = (
    (logging.CRITICAL, SeverityNumber.FATAL, "FATAL"),
    (logging.ERROR, SeverityNumber.ERROR, "ERROR"),
    (logging.WARNING, SeverityNumber.WARN, "WARN"),
    (logging.INFO, SeverityNumber.INFO, "INFO"),
    (logging.DEBUG, SeverityNumber.DEBUG, "DEBUG"),
)


def _extras(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    return ((k, v) for k, v in vars(record).items() if k not in _RESERVED)


class RedactionFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, extras and traceback.

    Known shapes (Authorization headers, bearer tokens, JWTs, password fields,
    remediation links) and every string ``secrets()`` returns at the time.
    The record is rewritten in place, once, and always passes.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _REDACTED, False):
            return True
        secrets = tuple(self._secrets())
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # A broken format string must still be shown, and still redacted.
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact_text(message, secrets), None
        for key, value in list(_extras(record)):
            masked = MASK if SENSITIVE_KEYS.match(key) else redact_value(value, secrets)
            setattr(record, key, masked)
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, secrets)
        setattr(record, _REDACTED, True)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, trace and span ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        source = log_source.get()
        if source is not None:
            entry["source"] = source
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = trace.format_trace_id(span_context.trace_id)
            entry["span_id"] = trace.format_span_id(span_context.span_id)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in _extras(record):
            entry.setdefault(key, value)
        return orjson.dumps(entry, default=str).decode()


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


class _OtlpHandler(logging.Handler):
    """Hands redacted records to an OpenTelemetry LoggerProvider.

    The SDK's own LoggingHandler is deprecated and exports ``exc_info`` as it is,
    past the redaction; this one exports the redacted traceback text.
    """

    def __init__(self, provider: LoggerProvider) -> None:
        super().__init__()
        self._provider = provider
        self._loggers: dict[str, Logger] = {}
        self._emitting = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        # The SDK logs about its own export ("queue full", "shutdown called", failed
        # requests); sending those through the same pipeline would loop.
        if (
            record.name.split(".", 1)[0] == "opentelemetry"
            or getattr(self._emitting, "active", False)
            or log_source.get() is not None
        ):
            return
        self._emitting.active = True
        try:
            attributes = {k: _attribute(v) for k, v in _extras(record)}
            # Where it was logged (semantic conventions' code.*): the scope only names
            # the logger, and a search by function or file needs these.
            attributes["code.function.name"] = record.funcName
            attributes["code.file.path"] = record.pathname
            attributes["code.line.number"] = record.lineno
            if record.exc_info and record.exc_info[0] is not None:
                attributes["exception.type"] = record.exc_info[0].__name__
            if record.exc_text:
                attributes["exception.stacktrace"] = record.exc_text
            number, text = next(
                ((n, t) for level, n, t in _OTEL_SEVERITY if record.levelno >= level),
                (SeverityNumber.TRACE, "TRACE"),
            )
            logger = self._loggers.get(record.name)
            if logger is None:
                logger = self._loggers[record.name] = self._provider.get_logger(record.name)
            logger.emit(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=otel_context.get_current(),
                severity_number=number,
                severity_text=text,
                body=record.getMessage(),
                attributes=attributes,
            )
        except Exception:  # logging's contract: a handler reports, never raises
            self.handleError(record)
        finally:
            self._emitting.active = False


class _CountingHandler(logging.Handler):
    """pizza.log.records by severity, for the error-log alert."""

    def __init__(self, metrics: PizzaMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        self._metrics.log_record(record.levelname)


class _RedactingHandler(logging.Handler):
    """Outputs nothing: placed first on the root logger so the filter runs before
    any other handler, ours or not."""

    def emit(self, record: logging.LogRecord) -> None:
        return None


def configure_logging(
    *,
    secrets: Callable[[], Iterable[str]],
    level: str = "INFO",
    telemetry: Telemetry | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Route every log record (uvicorn's too) through redaction to JSON lines,
    OTLP (when the telemetry has a LoggerProvider) and the log-record counter.

    Calling it again replaces the handlers it installed before.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(handler)
        handler.close()

    redaction = RedactionFilter(secrets)
    first = _RedactingHandler()
    stdout = logging.StreamHandler(stream if stream is not None else sys.stdout)
    stdout.setFormatter(JsonFormatter())
    handlers: list[logging.Handler] = [stdout]
    if telemetry is not None:
        if telemetry.logger_provider is not None:
            handlers.append(_OtlpHandler(telemetry.logger_provider))
        handlers.append(_CountingHandler(telemetry.metrics))
    for handler in [first, *handlers]:
        # Also on each handler: a record handed to it directly is still redacted.
        handler.addFilter(redaction)
        setattr(handler, _OWNED, True)
    root.handlers.insert(0, first)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level.upper())

    for name in UVICORN_LOGGERS:
        # uvicorn installs its own plain-text handlers and levels at start; ours
        # replace them, and `level` decides for its records as for all others.
        uvicorn_logger = logging.getLogger(name)
        for handler in list(uvicorn_logger.handlers):
            uvicorn_logger.removeHandler(handler)
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.propagate = True
    access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    for handler in list(access.handlers):
        access.removeHandler(handler)
    access.propagate = False
