"""Providers per app, OTLP only when an endpoint is configured, resource, shutdown."""

from __future__ import annotations

import io
import logging
import os
import uuid
from typing import Any

import prometheus_client
import pytest
from opentelemetry.instrumentation._semconv import (
    _OpenTelemetrySemanticConventionStability,
    _OpenTelemetryStabilitySignalType,
    _StabilityMode,
)
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import telemetry.setup as telemetry_setup
from telemetry.otel_internals import Internals
from telemetry.otlp_export import LeanLogExporter, LeanSpanExporter
from tests.telemetry.conftest import MakeTelemetry, record_one_of_each, value
from tests.telemetry.otlp import Received, export_to


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which OTLP exporters setup_telemetry builds (stand-ins: no network)."""
    names: list[str] = []

    def stand_in(signal: str, factory: Any) -> Any:
        def build() -> Any:
            names.append(signal)
            return factory()

        return build

    def otlp_exporter(_internals: Internals, lean: type[Any], _stock: type[Any]) -> Any:
        if lean is LeanSpanExporter:
            return stand_in("traces", InMemorySpanExporter)()
        assert lean is LeanLogExporter
        return stand_in("logs", InMemoryLogRecordExporter)()

    monkeypatch.setattr(Internals, "otlp_exporter", otlp_exporter)
    monkeypatch.setattr(
        telemetry_setup,
        "OTLPMetricExporter",
        stand_in("metrics", lambda: ConsoleMetricExporter(out=io.StringIO())),
    )
    return names


class TestOtlpExport:
    def test_none_without_an_endpoint_and_one_line_says_so(
        self, built: list[str], make_telemetry: MakeTelemetry, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="telemetry.setup"):
            telemetry = make_telemetry()
        assert built == []
        assert telemetry.logger_provider is None
        [line] = [r.getMessage() for r in caplog.records if r.name == "telemetry.setup"]
        assert "no OTLP endpoint configured for traces, metrics, logs" in line
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" in line

    def test_all_signals_with_the_common_endpoint(
        self, built: list[str], make_telemetry: MakeTelemetry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://lgtm:4318")
        telemetry = make_telemetry()
        assert sorted(built) == ["logs", "metrics", "traces"]
        assert telemetry.logger_provider is not None

    def test_only_the_signal_that_has_its_own_endpoint(
        self, built: list[str], make_telemetry: MakeTelemetry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://lgtm:4318/v1/traces")
        telemetry = make_telemetry()
        assert built == ["traces"]
        assert telemetry.logger_provider is None

    def test_the_sdk_exporter_reads_the_standard_variables(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What setup_telemetry relies on: the exporter takes endpoint and headers itself."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example/otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic%20abc")
        exporter = LeanSpanExporter()
        try:
            assert exporter._endpoint == "https://otlp.example/otlp/v1/traces"
        finally:
            exporter.shutdown()  # type: ignore[no-untyped-call]


class TestResource:
    def test_defaults(self, make_telemetry: MakeTelemetry) -> None:
        attributes = make_telemetry().tracer_provider.resource.attributes
        assert attributes["service.name"] == "jwt-pizza-service"
        assert attributes["service.version"] == "1.2.3"
        assert attributes["deployment.environment.name"] == "test"
        uuid.UUID(str(attributes["service.instance.id"]))

    def test_service_name_from_the_environment(
        self, make_telemetry: MakeTelemetry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OTEL_SERVICE_NAME", "pizza-canary")
        assert make_telemetry().meter_provider._sdk_config.resource.attributes["service.name"] == (
            "pizza-canary"
        )

    def test_each_instance_its_own_id(self, make_telemetry: MakeTelemetry) -> None:
        ids = {
            make_telemetry().tracer_provider.resource.attributes["service.instance.id"]
            for _ in range(2)
        }
        assert len(ids) == 2


class TestSemconv:
    def test_stable_http_conventions_by_default(
        self, make_telemetry: MakeTelemetry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
        make_telemetry()
        assert os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] == "http"

    def test_even_when_an_instrumentation_read_the_variable_before(
        self, make_telemetry: MakeTelemetry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stability = _OpenTelemetrySemanticConventionStability
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
        stability._initialized = False
        # As an instrumentation set up earlier, without the variable, would have done.
        stability._initialize()  # type: ignore[no-untyped-call]
        try:
            make_telemetry()
            mode = stability._get_opentelemetry_stability_opt_in_mode(
                _OpenTelemetryStabilitySignalType.HTTP
            )
            assert mode is _StabilityMode.HTTP
        finally:
            stability._initialized = False
            stability._initialize()  # type: ignore[no-untyped-call]

    def test_an_operator_choice_is_kept(
        self, make_telemetry: MakeTelemetry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup")
        make_telemetry()
        assert os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] == "http/dup"


def test_spans_reach_the_test_exporter(make_telemetry: MakeTelemetry) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)
    with telemetry.tracer.start_as_current_span("pizza.create") as span:
        span.set_attribute("pizza.outcome", "success")
    [finished] = spans.get_finished_spans()
    assert finished.name == "pizza.create"
    assert finished.instrumentation_scope is not None
    assert finished.instrumentation_scope.name == "jwt-pizza"


def test_two_apps_in_one_process_do_not_collide(make_telemetry: MakeTelemetry) -> None:
    first, second = make_telemetry(), make_telemetry()
    record_one_of_each(first)
    first.metrics.sold(5, 1.0)
    first_page = first.render_prometheus()[0].decode()
    second_page = second.render_prometheus()[0].decode()
    assert value(first_page, "pizza_sold_total") == 7
    assert value(second_page, "pizza_sold_total") == 0
    # Nothing was registered on prometheus_client's process-wide registry.
    assert b"pizza_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


class TestLifecycle:
    def test_shutdown_is_idempotent(self, make_telemetry: MakeTelemetry) -> None:
        telemetry = make_telemetry()
        telemetry.shutdown()
        telemetry.shutdown()
        assert telemetry.render_prometheus()[0] == b""

    def test_render_needs_prometheus(self, make_telemetry: MakeTelemetry) -> None:
        with pytest.raises(RuntimeError, match="prometheus=False"):
            make_telemetry(prometheus=False).render_prometheus()

    def test_content_type_every_scraper_reads(self, make_telemetry: MakeTelemetry) -> None:
        assert make_telemetry().render_prometheus()[1].startswith("text/plain; version=0.0.4")


@pytest.mark.parametrize(("chosen", "exemplars"), [(None, False), ("trace_based", True)])
def test_exemplars_only_when_an_operator_asks_for_them(
    chosen: str | None,
    exemplars: bool,
    receiver: Received,
    make_telemetry: MakeTelemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pizza made inside a recorded span: its creation latency carries that span's
    trace as an exemplar only with OTEL_METRICS_EXEMPLAR_FILTER set (they cost CPU on
    every order and nothing shipped reads them)."""
    export_to(receiver, monkeypatch)
    if chosen is not None:
        monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", chosen)
    telemetry = make_telemetry()
    with telemetry.tracer.start_as_current_span("pizza.create"):
        telemetry.metrics.creation("success", 0.3)
    telemetry.shutdown()  # flushes every provider to the receiver

    points = [
        point
        for request in receiver.exports["/v1/metrics"]
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "pizza.creation.duration"
        for point in metric.histogram.data_points
    ]
    assert points and sum(p.count for p in points) == 1
    assert any(p.exemplars for p in points) is exemplars
