"""Spans cost CPU on every order (pizza bench): only those someone will read are recorded."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.setup import instrument_app
from tests.telemetry.conftest import MakeTelemetry
from tests.telemetry.test_instrumentation import tiny_app


@pytest.fixture(autouse=True)
def no_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_without_a_span_consumer_spans_are_not_recorded_but_keep_their_ids(
    make_telemetry: MakeTelemetry,
) -> None:
    telemetry = make_telemetry()
    with telemetry.tracer.start_as_current_span("pizza.create") as span:
        assert not span.is_recording()
        # Log records inside a request still carry a trace and a span id.
        assert span.get_span_context().is_valid


def test_with_an_exporter_spans_are_recorded(make_telemetry: MakeTelemetry) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)
    with telemetry.tracer.start_as_current_span("pizza.create") as span:
        assert span.is_recording()
    assert [s.name for s in spans.get_finished_spans()] == ["pizza.create"]


async def test_one_server_span_per_request_without_asgi_message_spans(
    make_telemetry: MakeTelemetry,
) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)
    app = tiny_app()
    instrument_app(app, telemetry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/order/5")).status_code == 200
    assert [s.name for s in spans.get_finished_spans()] == ["GET /api/order/{order_id}"]
