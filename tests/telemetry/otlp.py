"""A real OTLP/HTTP receiver for tests: decodes protobuf (gzip or not) as a collector
would, and keeps every export request, by signal."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from google.protobuf import text_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pizza_tools.bench.stores import serve_handler

_MESSAGES: dict[str, type[Message]] = {
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
}


@dataclass
class Received:
    """Every export request the receiver decoded, by path, and the raw (inflated) bodies."""

    url: str
    exports: dict[str, list[Any]] = field(default_factory=lambda: {p: [] for p in _MESSAGES})
    bodies: list[bytes] = field(default_factory=list)
    encodings: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def spans(self) -> list[Span]:
        return [
            span
            for request in self.exports["/v1/traces"]
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    @property
    def metric_names(self) -> set[str]:
        return {
            metric.name
            for request in self.exports["/v1/metrics"]
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    @property
    def log_records(self) -> list[Any]:
        return [
            record
            for request in self.exports["/v1/logs"]
            for resource in request.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]

    def text(self) -> str:
        """Every decoded export in protobuf text form (strings shown as UTF-8)."""
        return "\n".join(
            text_format.MessageToString(message, as_utf8=True)
            for messages in self.exports.values()
            for message in messages
        )


@contextmanager
def otlp_receiver() -> Iterator[Received]:
    """A real OTLP/HTTP receiver (protobuf, gzip or not) on a free port of 127.0.0.1."""
    received = Received(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporters expect

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            encoding = (self.headers.get("content-encoding") or "identity").lower()
            kind = self.headers.get("content-type", "")
            message_type = _MESSAGES.get(self.path)
            try:
                if message_type is None or kind != "application/x-protobuf":
                    raise ValueError(f"unexpected {self.path} ({kind})")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                message = message_type()
                message.ParseFromString(body)
            except Exception as error:  # recorded, then asserted on by the test
                with lock:
                    received.errors.append(f"{self.path}: {error!r}")
                self.send_response(400)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            with lock:
                received.exports[self.path].append(message)
                received.bodies.append(body)
                received.encodings.add(encoding)
            # An empty Export*ServiceResponse: everything accepted.
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    with serve_handler(Handler, "otlp-receiver") as url:
        received.url = url
        yield received


def attributes(span: Span) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind) if kind else None
    return values


def export_to(receiver: Received, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only OpenTelemetry's own variables, as an operator would set them; set before
    the app starts, since its lifespan builds the exporters."""
    for name, value in export_env(receiver).items():
        monkeypatch.setenv(name, value)


def export_env(receiver: Received) -> dict[str, str]:
    """The variables that send every signal to ``receiver``, quickly (small real intervals)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }


def events_of(spans: list[Span]) -> dict[str, list[Span]]:
    """Span event name -> the spans that carry it."""
    found: dict[str, list[Span]] = {}
    for span in spans:
        for event in span.events:
            found.setdefault(event.name, []).append(span)
    return found
