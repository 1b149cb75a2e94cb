"""telemetry/otlp_export.py writes the same OTLP messages as the SDK's encoder: both are
decoded with opentelemetry-proto and compared, for spans and log records of every shape
the service makes (and a few it does not)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from opentelemetry.util.types import Attributes

from telemetry.otlp_export import LeanSpanExporter, encode_logs, encode_spans
from tests.telemetry.otlp import Received

RESOURCE = Resource(
    {"service.name": "jwt-pizza-service", "service.instance.id": "7f0c", "host.cores": 2},
    schema_url="https://opentelemetry.io/schemas/1.30.0",
)
REMOTE = SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(1),
    trace_state=TraceState([("vendor", "v1"), ("pizza", "7")]),
)
ATTRIBUTES: Attributes = {
    "http.request.method": "POST",
    "http.response.status_code": 201,
    "pizza.late_answer": False,
    "pizza.breaker.open": True,
    "duration": 0.25,
    "negative": -42,
    "big": 2**62,
    "non.ascii": "Pizza für Zoë 🍕",
    "empty": "",
    "names": ("veggie", "pepperoni"),
    "ids": [1, 2, 3],
    "flags": (True, False),
    "weights": (0.5, 1.5),
}


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    service = provider.get_tracer("jwt-pizza", "1.2.3")
    other = provider.get_tracer(
        "other.scope", schema_url="https://opentelemetry.io/schemas/1.21.0", attributes={"a": 1}
    )
    remote_parent = set_span_in_context(NonRecordingSpan(REMOTE))
    with service.start_as_current_span(
        "POST /api/order", context=remote_parent, kind=SpanKind.SERVER, attributes=ATTRIBUTES
    ):
        with service.start_as_current_span("pizza.create") as create:
            create.add_event("pizza.order.fulfilled", {"pizza.order.id": 7, "attempts": 1})
            create.add_event("bare")
            with service.start_as_current_span("POST", kind=SpanKind.CLIENT) as call:
                call.set_status(Status(StatusCode.ERROR, "factory said 500"))
        with other.start_as_current_span(
            "pizza.retry",
            kind=SpanKind.CONSUMER,
            links=[Link(REMOTE, {"pizza.link": "order placed"}), Link(REMOTE)],
        ) as retry:
            retry.set_status(Status(StatusCode.OK))
    other.start_span("", kind=SpanKind.PRODUCER).end()  # nameless, no parent
    yield list(exporter.get_finished_spans())
    provider.shutdown()


@pytest.fixture
def log_records() -> Iterator[list[ReadableLogRecord]]:
    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    access, other = provider.get_logger("app.access"), provider.get_logger("app.orders", "2")
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("t")
    with tracer.start_as_current_span("POST /api/order"):
        access.emit(
            timestamp=time.time_ns(),
            observed_timestamp=time.time_ns(),
            context=otel_context.get_current(),
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="POST /api/order 200 3.1 ms",
            attributes={"http_status": 200, "duration_ms": 3.1, "auth_sent": True, "empty": ""},
        )
    other.emit(severity_number=SeverityNumber.ERROR, body={"order": 7, "items": ["veggie"]})
    other.emit(body={1: "int key", "1": "str key", "nested": {"deeper": [None, b"\x00"]}})
    other.emit(body=None, event_name="pizza.order.failed")
    other.emit(body=["a", 1], severity_text="WARN", attributes=ATTRIBUTES)
    yield list(exporter.get_finished_logs())
    provider.shutdown()


def test_spans_encode_as_the_sdk_encodes_them(spans: list[ReadableSpan]) -> None:
    assert len(spans) == 5
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == sdk_encode_spans(spans)
    # Not vacuous: two scopes of one resource, and what the spans carry is there.
    [resource_spans] = ours.resource_spans
    assert resource_spans.schema_url == RESOURCE.schema_url
    assert [s.scope.name for s in resource_spans.scope_spans] == ["jwt-pizza", "other.scope"]
    names = {s.name for scope in resource_spans.scope_spans for s in scope.spans}
    assert names == {"POST /api/order", "pizza.create", "POST", "pizza.retry", ""}


def test_each_span_alone_encodes_as_the_sdk_encodes_it(spans: list[ReadableSpan]) -> None:
    for span in spans:
        ours = ExportTraceServiceRequest.FromString(encode_spans([span]))
        assert ours == sdk_encode_spans([span]), span.name


def test_log_records_encode_as_the_sdk_encodes_them(
    log_records: list[ReadableLogRecord],
) -> None:
    assert len(log_records) == 5
    ours = ExportLogsServiceRequest.FromString(encode_logs(log_records))
    assert ours == sdk_encode_logs(log_records)
    [resource_logs] = ours.resource_logs
    assert [s.scope.name for s in resource_logs.scope_logs] == ["app.access", "app.orders"]
    first = resource_logs.scope_logs[0].log_records[0]
    assert len(first.trace_id) == 16 and len(first.span_id) == 8


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans([]) == b""
    assert ExportTraceServiceRequest.FromString(b"") == sdk_encode_spans([])
    assert ExportLogsServiceRequest.FromString(encode_logs([])) == sdk_encode_logs([])


def test_what_the_sdk_encoder_would_fail_on_is_still_sent() -> None:
    """A lone surrogate fails the SDK's whole batch; an int past int64 loses its attribute."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span(
        "bad \udc80 name", attributes={"huge": 2**70, "ok": "yes"}
    ).end()
    [span] = exporter.get_finished_spans()
    [decoded] = (
        ExportTraceServiceRequest.FromString(encode_spans([span]))
        .resource_spans[0]
        .scope_spans[0]
        .spans
    )
    assert decoded.name == "bad ? name"
    values = {a.key: a.value for a in decoded.attributes}
    assert values["huge"].string_value == str(2**70)
    assert values["ok"].string_value == "yes"
    provider.shutdown()


def test_the_exporter_sends_through_the_sdk_client_and_keeps_its_size_limit(
    spans: list[ReadableSpan], receiver: Received
) -> None:
    """What the exporter sends is what the receiver decodes; a batch above the request
    size limit is dropped (and reported as a failure) rather than posted."""
    exporter = LeanSpanExporter(endpoint=f"{receiver.url}/v1/traces")
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    [request] = receiver.exports["/v1/traces"]
    assert request == sdk_encode_spans(spans)
    exporter.shutdown()  # type: ignore[no-untyped-call]

    small = LeanSpanExporter(endpoint=f"{receiver.url}/v1/traces", max_request_size=100)
    assert small.export(spans) == SpanExportResult.FAILURE
    assert len(receiver.exports["/v1/traces"]) == 1
    small.shutdown()  # type: ignore[no-untyped-call]
    assert small.export(spans) == SpanExportResult.FAILURE  # after shutdown: nothing sent
    assert len(receiver.exports["/v1/traces"]) == 1
