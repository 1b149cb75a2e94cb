"""OTLP/HTTP span and log exporters that write the protobuf wire format themselves.

The SDK's encoder (opentelemetry-exporter-otlp-proto-common) builds one protobuf message
object per span, event, attribute and value and hashes every span's Resource through
``json.dumps``: about 40 µs per span and 40 µs per log record on a bench machine, on the
exporter's thread but under the GIL that the event loop needs, so a third of what
telemetry costs an order (``pizza bench --profile --telemetry``). These
exporters keep everything else of the SDK's OTLP/HTTP exporters (endpoint, headers,
compression, timeout and retries from OpenTelemetry's standard variables, request size
limit, export metrics) and only encode the batch here, at about 40 % of the cost. Sending
what was encoded here takes private members of the SDK exporter: telemetry/otel_internals.py
checks for them at start-up and otherwise the SDK's own exporters are used.

The encoding is the SDK encoder's, field for field: tests/telemetry/test_otlp_encoding.py
decodes both with opentelemetry-proto and compares the messages. The differences: where the
SDK's encoder fails, a string that is not valid UTF-8 (a lone surrogate) is sent with "?"
instead of failing the whole batch, and an integer outside int64 is sent as its decimal
string instead of being dropped; and items are grouped by their Resource and scope objects
(one of each per provider and logger here), so equal but distinct Resource objects would be
sent as two ResourceSpans, which OTLP allows.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from telemetry.otel_internals import send_encoded

# Under "opentelemetry": the OTLP log handler leaves those records out of the pipeline they
# are about (telemetry/logging.py), so a batch that cannot be encoded does not feed another.
log = logging.getLogger("opentelemetry.exporter.jwt_pizza")

_I64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_I32 = struct.Struct("<I").pack
_ONE_BYTE = tuple(bytes((n,)) for n in range(128))
_INT64 = range(-(2**63), 2**63)
# SpanFlags: the SDK's encoder sets only whether the parent's remoteness is known (always)
# and whether it is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200

T = TypeVar("T")


def _varint(n: int) -> bytes:
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (message, string, bytes) with its one-byte tag."""
    return tag + _varint(len(payload)) + payload


def _text(s: str) -> bytes:
    return s.encode("utf-8", "replace")


# Attribute keys repeat on every span: their encoded KeyValue.key field, by key.
_keys: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    encoded = _keys.get(key)
    if encoded is None:
        if len(_keys) > 4096:  # attribute keys are few; a runaway set is not kept
            _keys.clear()
        encoded = _keys[key] = _field(b"\x0a", _text(key))
    return encoded


def _any_value(value: Any) -> bytes:
    """An AnyValue's payload (common.proto), as the SDK's ``_encode_value``."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", _text(value))
    if isinstance(value, int):
        if value not in _INT64:
            return _field(b"\x0a", str(value).encode())
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = (_key(str(k)) + _field(b"\x12", _any_value(v)) for k, v in value.items())
        return _field(b"\x32", b"".join(_field(b"\x0a", pair) for pair in pairs))
    raise TypeError(f"cannot encode a {type(value).__name__} as an OTLP value")


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a KeyValue in the field ``tag``; one that cannot be encoded is
    left out (and logged), as the SDK's encoder does."""
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        try:
            parts.append(_field(tag, _key(key) + _field(b"\x12", _any_value(value))))
        except Exception as error:  # a value too deep or of no OTLP type; the rest is sent
            log.warning("OTLP: attribute %s left out: %s", key, error)
    return b"".join(parts)


def _count(tag: bytes, n: int) -> bytes:
    return tag + _varint(n) if n else b""


def _span_flags(parent: SpanContext | None) -> bytes:
    return _I32(_HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0))


def _span(span: ReadableSpan) -> bytes:
    """A Span message (trace.proto)."""
    context = span.get_span_context()
    assert context is not None  # a span the SDK ended always has one
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        parts.append(
            _field(b"\x1a", _text(",".join(f"{k}={v}" for k, v in context.trace_state.items())))
        )
    if span.parent is not None:
        parts.append(b"\x22\x08" + span.parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_field(b"\x2a", _text(span.name)))
    parts.append(b"\x30" + _ONE_BYTE[span.kind.value + 1])
    if span.start_time:
        parts.append(b"\x39" + _I64(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _I64(span.end_time))
    parts.append(_attributes(b"\x4a", span.attributes))
    parts.append(_count(b"\x50", span.dropped_attributes))
    for event in span.events:
        body = b"\x09" + _I64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _field(b"\x12", _text(event.name))
        body += _attributes(b"\x1a", event.attributes) + _count(b"\x20", event.dropped_attributes)
        parts.append(_field(b"\x5a", body))
    parts.append(_count(b"\x60", span.dropped_events))
    for link in span.links:
        body = (
            b"\x0a\x10"
            + link.context.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + link.context.span_id.to_bytes(8, "big")
            + _attributes(b"\x22", link.attributes)
            + _count(b"\x28", link.dropped_attributes)
            + b"\x35"
            + _span_flags(link.context)
        )
        parts.append(_field(b"\x6a", body))
    parts.append(_count(b"\x70", span.dropped_links))
    status = span.status
    body = _field(b"\x12", _text(status.description)) if status.description else b""
    parts.append(_field(b"\x7a", body + _count(b"\x18", status.status_code.value)))
    parts.append(b"\x85\x01" + _span_flags(span.parent))
    return b"".join(parts)


def _log_record(readable: ReadableLogRecord) -> bytes:
    """A LogRecord message (logs.proto)."""
    record = readable.log_record
    parts = []
    if record.timestamp:
        parts.append(b"\x09" + _I64(record.timestamp))
    severity = getattr(record.severity_number, "value", 0)
    parts.append(_count(b"\x10", severity))
    if record.severity_text:
        parts.append(_field(b"\x1a", _text(record.severity_text)))
    parts.append(_field(b"\x2a", _any_value(record.body)))
    parts.append(_attributes(b"\x32", record.attributes))
    parts.append(_count(b"\x38", readable.dropped_attributes))
    flags = int(record.trace_flags or 0)
    if flags:
        parts.append(b"\x45" + _I32(flags))
    if record.trace_id:
        parts.append(b"\x4a\x10" + record.trace_id.to_bytes(16, "big"))
    if record.span_id:
        parts.append(b"\x52\x08" + record.span_id.to_bytes(8, "big"))
    if record.observed_timestamp:
        parts.append(b"\x59" + _I64(record.observed_timestamp))
    if record.event_name:
        parts.append(_field(b"\x62", _text(record.event_name)))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    body = _field(b"\x0a", _text(scope.name)) if scope.name else b""
    if scope.version:
        body += _field(b"\x12", _text(scope.version))
    return body + _attributes(b"\x1a", scope.attributes)


def _request(
    items: Iterable[T],
    where: Callable[[T], tuple[Resource, InstrumentationScope | None]],
    encode: Callable[[T], bytes],
) -> bytes:
    """An Export*ServiceRequest: items grouped by resource, then by scope, in the order
    first seen (resource_{spans,logs} = 1, its resource = 1 and scope_* = 2; a scope_*'s
    scope = 1 and its items = 2; schema_url = 3 in both)."""
    # By identity: the SDK's Resource hashes through json.dumps, and a batch's items share
    # one resource and a few scopes.
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]]
    groups = {}
    for item in items:
        resource, scope = where(item)
        scopes = groups.setdefault(id(resource), (resource, {}))[1]
        scopes.setdefault(id(scope), (scope, []))[1].append(_field(b"\x12", encode(item)))
    out = []
    for resource, scopes in groups.values():
        body = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        for scope, encoded in scopes.values():
            scoped = _field(b"\x0a", _scope(scope)) + b"".join(encoded)
            if scope is not None and scope.schema_url:
                scoped += _field(b"\x1a", _text(scope.schema_url))
            body += _field(b"\x12", scoped)
        if resource.schema_url:
            body += _field(b"\x1a", _text(resource.schema_url))
        out.append(_field(b"\x0a", body))
    return b"".join(out)


def encode_spans(spans: Iterable[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest, serialized."""
    return _request(spans, lambda s: (s.resource, s.instrumentation_scope or None), _span)


def encode_logs(records: Iterable[ReadableLogRecord]) -> bytes:
    """An ExportLogsServiceRequest, serialized."""
    return _request(records, lambda r: (r.resource, r.instrumentation_scope or None), _log_record)


class LeanSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter with this module's encoder (sent through the
    exporter's own client: telemetry/otel_internals.py)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if send_encoded(self, len(spans), lambda: encode_spans(spans)):
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE


class LeanLogExporter(OTLPLogExporter):
    """The SDK's OTLP/HTTP log exporter with this module's encoder (sent through the
    exporter's own client: telemetry/otel_internals.py)."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if send_encoded(self, len(batch), lambda: encode_logs(batch)):
            return LogRecordExportResult.SUCCESS
        return LogRecordExportResult.FAILURE
