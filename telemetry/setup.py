"""Providers, exporters and instrumentation, built per app (docs/telemetry.md).

Nothing here touches the OpenTelemetry globals: one test process builds many
apps, and each app's lifespan owns its providers and shuts them down.
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_otel
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy.ext.asyncio import AsyncEngine

from telemetry import otel_internals
from telemetry.http_client import TracedTransport
from telemetry.metrics import PizzaMetrics
from telemetry.otel_internals import ENGINE_TRACER, SEMCONV_REREAD, Internals
from telemetry.otlp_export import LeanLogExporter, LeanSpanExporter
from telemetry.server import (
    DURATION_BUCKETS_S,
    ServerInstruments,
    ServerTelemetryMiddleware,
)

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "jwt-pizza-service"
TRACER_NAME = "jwt-pizza"
SERVER_MIDDLEWARE_FLAG = "server_telemetry_installed"
_SIGNALS = ("traces", "metrics", "logs")


@dataclass
class Telemetry:
    """One app's providers, its instruments and its Prometheus view."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider | None
    metrics: PizzaMetrics
    tracer: Tracer
    registry: CollectorRegistry | None = field(default=None, repr=False)
    # Whether spans are recorded at all (an exporter is configured): when not, no span is
    # started where starting one is a cost of its own (server and factory-client spans).
    spans_wanted: bool = False
    # Which of OpenTelemetry's private members this process may use (otel_internals.py).
    internals: Internals = field(default_factory=Internals)
    _closed: bool = field(default=False, repr=False)

    def render_prometheus(self) -> tuple[bytes, str]:
        """The body and content type for ``GET /metrics``."""
        if self.registry is None:
            raise RuntimeError("Prometheus export is off: setup_telemetry(prometheus=False)")
        # The classic 0.0.4 text format: every Prometheus and agent version reads it.
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    def shutdown(self) -> None:
        """Flush and shut down every provider; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()


def _stable_http_conventions(internals: Internals) -> None:
    """The stable HTTP semantic conventions for the instrumentations (the database spans'
    `server.address` and `server.port`), unless an operator chose otherwise."""
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    # The instrumentations read the variable once per process: if one was set up before
    # this (another library, a test), it is read again.
    if internals.has(SEMCONV_REREAD):
        otel_internals.reread_semconv_opt_in()


def _endpoint_configured(signal: str) -> bool:
    names = ("OTEL_EXPORTER_OTLP_ENDPOINT", f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    return any(os.environ.get(name, "").strip() for name in names)


def _resource(service_version: str, environment: str) -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; only
    # when neither names the service does the default name apply.
    resource = Resource.create(
        {
            "service.version": service_version,
            "deployment.environment.name": environment,
            "service.instance.id": str(uuid.uuid4()),
        }
    )
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    return resource


def _tracer_provider(
    resource: Resource,
    internals: Internals,
    exported: list[str],
    span_exporter: SpanExporter | None,
) -> tuple[TracerProvider, bool]:
    """The tracer provider, and whether it records spans at all.

    Spans that no processor will ever see cost about a fifth of an order's CPU (pizza
    bench, py-spy): with nowhere to send them they are not recorded. Their ids are still
    made, so log records keep their trace and span ids.
    """
    spans_wanted = "traces" in exported or span_exporter is not None
    tracer_provider = TracerProvider(
        resource=resource,
        shutdown_on_exit=False,
        sampler=None if spans_wanted else ALWAYS_OFF,
    )
    if "traces" in exported:
        exporter = internals.otlp_exporter(LeanSpanExporter, OTLPSpanExporter)
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    return tracer_provider, spans_wanted


def _meter_provider(
    resource: Resource, exported: list[str], prometheus: bool
) -> tuple[MeterProvider, CollectorRegistry | None]:
    """The meter provider with its readers (OTLP, Prometheus), and the Prometheus registry
    that ``/metrics`` renders when Prometheus is on."""
    readers: list[MetricReader] = []
    if "metrics" in exported:
        # The SDK's 60 s default leaves the alerts' 5-minute windows too few points;
        # None lets the reader read OTEL_METRIC_EXPORT_INTERVAL itself.
        interval = None if os.environ.get("OTEL_METRIC_EXPORT_INTERVAL") else 15_000.0
        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=interval)
        )
    registry: CollectorRegistry | None = None
    if prometheus:
        # The reader registers on prometheus_client's global REGISTRY unless told
        # otherwise, and a second app in the process would collide there.
        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
    # Exemplars (a trace id sampled into each histogram bucket) are offered by every
    # measurement inside a recorded span: about 1 % of an order's CPU with traces on,
    # for what no rule, panel or /metrics shows. OTEL_METRICS_EXEMPLAR_FILTER=trace_based
    # turns them back on (the SDK reads it when no filter is given).
    exemplars = (
        None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
    )
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=readers,
        exemplar_filter=exemplars,
        shutdown_on_exit=False,
    )
    return meter_provider, registry


def _logger_provider(
    resource: Resource, internals: Internals, exported: list[str]
) -> LoggerProvider | None:
    """A logger provider only when logs are exported over OTLP."""
    if "logs" not in exported:
        return None
    logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    logs = internals.otlp_exporter(LeanLogExporter, OTLPLogExporter)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(logs))
    return logger_provider


def _announce(exported: list[str], internals: Internals, prometheus: bool) -> None:
    """One log line each for what is exported, what is not, and any fallback taken."""
    if exported:
        log.info("OpenTelemetry: exporting %s over OTLP/HTTP", ", ".join(exported))
    warning = internals.warning()
    if warning is not None:
        log.warning("%s", warning)
    if len(exported) < len(_SIGNALS):
        missing = ", ".join(s for s in _SIGNALS if s not in exported)
        log.info(
            "OpenTelemetry: no OTLP endpoint configured for %s (set OTEL_EXPORTER_OTLP_ENDPOINT):"
            " not exported%s",
            missing,
            "; /metrics still serves Prometheus" if prometheus else "",
        )


def setup_telemetry(
    *,
    service_version: str,
    environment: str,
    prometheus: bool = True,
    span_exporter: SpanExporter | None = None,
) -> Telemetry:
    """New providers for one app; OTLP exporters only for configured endpoints.

    The exporters read OpenTelemetry's standard variables themselves (endpoint,
    headers, timeout, ...). Call ``configure_logging`` before this to see the
    line that says what is exported.
    """
    internals = otel_internals.check()
    _stable_http_conventions(internals)
    exported = [s for s in _SIGNALS if _endpoint_configured(s)]
    resource = _resource(service_version, environment)
    tracer_provider, spans_wanted = _tracer_provider(resource, internals, exported, span_exporter)
    meter_provider, registry = _meter_provider(resource, exported, prometheus)
    logger_provider = _logger_provider(resource, internals, exported)
    _announce(exported, internals, prometheus)

    meter = meter_provider.get_meter(TRACER_NAME, service_version)
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        metrics=PizzaMetrics(meter),
        tracer=tracer_provider.get_tracer(TRACER_NAME, service_version),
        registry=registry,
        spans_wanted=spans_wanted,
        internals=internals,
    )


def instrument_app(app: FastAPI, telemetry: Telemetry) -> None:
    """Server spans and ``http.server.request.duration`` (seconds) for every route but the
    probes, and an access log line per request (telemetry/server.py).

    `create_app` installs the middleware when it builds the app (Starlette takes no
    middleware once started); this hands it this app's instruments. An app built
    elsewhere (a test's) gets the middleware here.
    """
    meter = telemetry.meter_provider.get_meter(TRACER_NAME)
    duration = meter.create_histogram(
        "http.server.request.duration",
        unit="s",
        description="Duration of HTTP server requests",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
    )
    if not getattr(app.state, SERVER_MIDDLEWARE_FLAG, False):
        install_server_middleware(app)
    app.state.server_instruments = ServerInstruments(
        duration, telemetry.tracer, spans=telemetry.spans_wanted
    )


def install_server_middleware(app: FastAPI) -> None:
    """The outermost middleware of ``app``: it sees every answer as the client gets it."""
    app.add_middleware(ServerTelemetryMiddleware, state=app.state)
    setattr(app.state, SERVER_MIDDLEWARE_FLAG, True)


_instrumented_engines: weakref.WeakSet[object] = weakref.WeakSet()


def instrument_engine(engine: AsyncEngine, telemetry: Telemetry) -> None:
    """Database spans for this engine only (once, however often it is called)."""
    # SQLAlchemyInstrumentor is a process-wide singleton that patches
    # create_engine on first use and ignores later calls: the second app in a
    # process would get no spans. Its EngineTracer attaches to one engine.
    sync_engine = engine.sync_engine
    if sync_engine in _instrumented_engines:
        return
    instrumentor = SQLAlchemyInstrumentor()
    conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
    if conflict is not None:
        # The instrumentor itself would silently do nothing here.
        log.warning("SQLAlchemy instrumentation: %s; database spans may be missing", conflict)
    _instrumented_engines.add(sync_engine)
    if not telemetry.internals.has(ENGINE_TRACER):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(
                engine=sync_engine,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            )
        return
    scope = "opentelemetry.instrumentation.sqlalchemy"
    tracer = telemetry.tracer_provider.get_tracer(scope, sqlalchemy_otel)
    connections = telemetry.meter_provider.get_meter(scope, sqlalchemy_otel).create_up_down_counter(
        "db.client.connections.usage",
        unit="{connection}",
        description="Connections in the state given by the state attribute",
    )
    otel_internals.trace_engine(sync_engine, tracer, connections)


def traced_transport(
    inner: httpx.AsyncBaseTransport, telemetry: Telemetry, *, secrets: tuple[str, ...] = ()
) -> httpx.AsyncBaseTransport:
    """``inner`` with a client span per request (the factory's client), links redacted,
    ``secrets`` (the factory's API key) masked wherever they appear
    (telemetry/http_client.py); ``inner`` itself where no span is recorded: a span and the
    URL's redaction are otherwise pure cost."""
    if not telemetry.spans_wanted:
        return inner
    return TracedTransport(inner, telemetry.tracer, secrets)
