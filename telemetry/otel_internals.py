"""Every use of a private member of OpenTelemetry, in one place, checked at start-up.

Each buys something the public API does not give, and each has a stock fallback:

- **Lean OTLP export** (telemetry/otlp_export.py encodes spans and log records at about
  40 % of the SDK encoder's cost): the SDK's OTLP/HTTP exporters send what this module's
  encoder wrote through their own HTTP client (`_client`: endpoint, headers, compression,
  retries, timeout), honouring `_shutdown`, their export metrics (`_metrics`) and their
  request size limit (`_max_request_size`, `_common._is_request_too_large`,
  `_common.RequestPayloadTooLargeError`). Fallback: the SDK's own exporters, same wire
  format, their own (slower) encoder.
- **The semantic-convention opt-in read again** when an instrumentation read it before the
  service set it (`_OpenTelemetrySemanticConventionStability`): database spans then carry
  the stable `server.address`/`server.port`. Fallback: the variable is set before any
  instrumentation of the service reads it, which holds for `pizza serve`.
- **Database spans per engine** (the SQLAlchemy instrumentation's `EngineTracer`, which
  its instrumentor uses inside): one process may hold several apps (tests, tools), each
  with its own providers. Fallback: the instrumentor's public `instrument(engine=...)`,
  which instruments the first engine of the process (a service has one).

`missing()` names what is not there; `setup_telemetry` logs it in one warning line and
takes each fallback. The logs signal's modules (`opentelemetry._logs`,
`opentelemetry.sdk._logs`, the exporter's `_log_exporter`) are not here: while the signal is
in development those are its documented import paths, not members of an implementation.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

# Under "opentelemetry": the OTLP log handler leaves those records out of the pipeline they
# are about (telemetry/logging.py), so a batch that cannot be sent does not feed another.
log = logging.getLogger("opentelemetry.exporter.jwt_pizza")

LEAN_EXPORT = "lean OTLP export"
SEMCONV_REREAD = "semantic-convention opt-in read again"
ENGINE_TRACER = "database spans per engine"
# Each feature's fallback, as the warning line names it.
FALLBACKS = {
    LEAN_EXPORT: "the SDK's own OTLP exporters",
    SEMCONV_REREAD: "the opt-in as first read",
    ENGINE_TRACER: "SQLAlchemyInstrumentor, first engine only",
}
_COMMON = "opentelemetry.exporter.otlp.proto.http._common"
_SEMCONV = "opentelemetry.instrumentation._semconv"
_ENGINE = "opentelemetry.instrumentation.sqlalchemy.engine"
# What a built exporter must have for the lean export: attribute -> the method it must
# offer (None: only the attribute).
_EXPORTER_MEMBERS = {
    "_client": "export",
    "_metrics": "export_operation",
    "_shutdown": None,
    "_max_request_size": None,
}

Exporter = OTLPSpanExporter | OTLPLogExporter
E = TypeVar("E", OTLPSpanExporter, OTLPLogExporter)


def _member(module: str, *path: str) -> Any:
    """``module.path...``, or None when the module or any step of the path is gone."""
    try:
        found: Any = importlib.import_module(module)
    except ImportError:
        return None
    for name in path:
        found = getattr(found, name, None)
        if found is None:
            return None
    return found


@dataclass
class Internals:
    """What is missing of the private members, by feature (empty: all there)."""

    missing: dict[str, list[str]] = field(default_factory=dict)

    def has(self, feature: str) -> bool:
        return feature not in self.missing

    def otlp_exporter(self, lean: type[E], stock: type[E]) -> E:
        """``lean`` (a subclass of ``stock`` that sends through `send_encoded`) when the
        exporter it builds has every member that needs, else ``stock``."""
        if self.has(LEAN_EXPORT):
            exporter = lean()
            gone = [
                f"{stock.__name__}.{name}"
                for name, method in _EXPORTER_MEMBERS.items()
                if not _offers(getattr(exporter, name, None), method)
            ]
            if not gone:
                return exporter
            exporter.shutdown()  # type: ignore[no-untyped-call]
            self.missing[LEAN_EXPORT] = gone
        return stock()

    def warning(self) -> str | None:
        """One line naming every missing member and the fallback taken, or None."""
        if not self.missing:
            return None
        parts = [
            f"{feature}: {', '.join(members)} missing, using {FALLBACKS[feature]}"
            for feature, members in self.missing.items()
        ]
        return "OpenTelemetry internals: " + "; ".join(parts)


def _offers(value: Any, method: str | None) -> bool:
    return value is not None and (method is None or callable(getattr(value, method, None)))


def check() -> Internals:
    """Which private members this OpenTelemetry has (before anything uses them)."""
    internals = Internals()
    gone = [
        f"_common.{name}"
        for name in ("_is_request_too_large", "RequestPayloadTooLargeError")
        if _member(_COMMON, name) is None
    ]
    if gone:
        internals.missing[LEAN_EXPORT] = gone
    stability = _member(_SEMCONV, "_OpenTelemetrySemanticConventionStability")
    if stability is None or not callable(getattr(stability, "_initialize", None)):
        internals.missing[SEMCONV_REREAD] = ["_OpenTelemetrySemanticConventionStability"]
    tracer = _member(_ENGINE, "EngineTracer")
    expected = ["tracer", "engine", "connections_usage"]
    if tracer is None or list(inspect.signature(tracer).parameters)[:3] != expected:
        internals.missing[ENGINE_TRACER] = ["EngineTracer(tracer, engine, connections_usage)"]
    return internals


def send_encoded(exporter: Exporter, items: int, encode: Callable[[], bytes]) -> bool:
    """What the SDK exporter's own ``export`` does, with ``encode``'s bytes: its export
    metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``), its request size limit, then
    its HTTP client (compression, retries, timeout from OpenTelemetry's variables). False
    when nothing was sent."""
    common = importlib.import_module(_COMMON)
    if exporter._shutdown:
        return False
    with exporter._metrics.export_operation(items) as result:
        try:
            data = encode()
        except Exception as error:  # an exporter reports, never raises
            log.error("OTLP: batch not encoded: %s", error)
            result.error = error
            return False
        if common._is_request_too_large(data, exporter._max_request_size):
            log.warning(
                "OTLP: batch of %d bytes dropped: above the request limit of %d bytes",
                len(data),
                exporter._max_request_size,
            )
            result.error = common.RequestPayloadTooLargeError(f"{len(data)} bytes")
            return False
        sent = exporter._client.export(data)
        if not sent.success:
            result.error = sent.error
            if sent.status_code is not None:
                result.error_attrs = {HTTP_RESPONSE_STATUS_CODE: sent.status_code}
            return False
    return True


def reread_semconv_opt_in() -> None:
    """OTEL_SEMCONV_STABILITY_OPT_IN read again by the instrumentations set up after this
    (they read it once per process)."""
    stability = _member(_SEMCONV, "_OpenTelemetrySemanticConventionStability")
    if getattr(stability, "_initialized", False):
        stability._initialized = False
        stability._initialize()


def trace_engine(sync_engine: Any, tracer: Any, connections: Any) -> None:
    """Database spans and connection counts for this engine only, on ``tracer``."""
    _member(_ENGINE, "EngineTracer")(tracer, sync_engine, connections)
