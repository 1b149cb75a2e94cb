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


# Protobuf wire types: how the value after a field's tag is laid out.
VARINT = 0
FIXED64 = 1  # 8 bytes little-endian: fixed64, double
LEN = 2  # a varint length, then that many bytes: a message, string or bytes
FIXED32 = 5  # 4 bytes little-endian: fixed32


def _tag(*, field: int, wire: int) -> bytes:
    """A field's tag as it is written before its value: varint(field number << 3 | wire)."""
    return _varint(field << 3 | wire)


# Every tag this module writes, by message and field name as in opentelemetry-proto's
# .proto files (common, resource, trace, logs, and the collector's Export*ServiceRequest).
# Computed once here: encoding appends these bytes.
_ID16, _ID8 = _varint(16), _varint(8)  # the length of a trace id, of a span id

# common.proto AnyValue: its one value, by type.
_ANY_STRING = _tag(field=1, wire=LEN)  # AnyValue.string_value
_ANY_BOOL = _tag(field=2, wire=VARINT)  # AnyValue.bool_value
_ANY_INT = _tag(field=3, wire=VARINT)  # AnyValue.int_value (int64, two's complement)
_ANY_DOUBLE = _tag(field=4, wire=FIXED64)  # AnyValue.double_value
_ANY_ARRAY = _tag(field=5, wire=LEN)  # AnyValue.array_value
_ANY_KVLIST = _tag(field=6, wire=LEN)  # AnyValue.kvlist_value
_ANY_BYTES = _tag(field=7, wire=LEN)  # AnyValue.bytes_value
_ARRAY_VALUES = _tag(field=1, wire=LEN)  # ArrayValue.values
_KVLIST_VALUES = _tag(field=1, wire=LEN)  # KeyValueList.values
_KV_KEY = _tag(field=1, wire=LEN)  # KeyValue.key
_KV_VALUE = _tag(field=2, wire=LEN)  # KeyValue.value
_ANY_TRUE, _ANY_FALSE = _ANY_BOOL + _varint(1), _ANY_BOOL + _varint(0)
_SCOPE_NAME = _tag(field=1, wire=LEN)  # InstrumentationScope.name
_SCOPE_VERSION = _tag(field=2, wire=LEN)  # InstrumentationScope.version
_SCOPE_ATTRIBUTES = _tag(field=3, wire=LEN)  # InstrumentationScope.attributes
# resource.proto
_RESOURCE_ATTRIBUTES = _tag(field=1, wire=LEN)  # Resource.attributes

# trace.proto Span and its Event, Link and Status.
_SPAN_TRACE_ID = _tag(field=1, wire=LEN) + _ID16  # Span.trace_id
_SPAN_SPAN_ID = _tag(field=2, wire=LEN) + _ID8  # Span.span_id
_SPAN_TRACE_STATE = _tag(field=3, wire=LEN)  # Span.trace_state
_SPAN_PARENT_SPAN_ID = _tag(field=4, wire=LEN) + _ID8  # Span.parent_span_id
_SPAN_NAME = _tag(field=5, wire=LEN)  # Span.name
_SPAN_KIND = _tag(field=6, wire=VARINT)  # Span.kind
_SPAN_START = _tag(field=7, wire=FIXED64)  # Span.start_time_unix_nano
_SPAN_END = _tag(field=8, wire=FIXED64)  # Span.end_time_unix_nano
_SPAN_ATTRIBUTES = _tag(field=9, wire=LEN)  # Span.attributes
_SPAN_DROPPED_ATTRIBUTES = _tag(field=10, wire=VARINT)  # Span.dropped_attributes_count
_SPAN_EVENTS = _tag(field=11, wire=LEN)  # Span.events
_SPAN_DROPPED_EVENTS = _tag(field=12, wire=VARINT)  # Span.dropped_events_count
_SPAN_LINKS = _tag(field=13, wire=LEN)  # Span.links
_SPAN_DROPPED_LINKS = _tag(field=14, wire=VARINT)  # Span.dropped_links_count
_SPAN_STATUS = _tag(field=15, wire=LEN)  # Span.status
_SPAN_FLAGS = _tag(field=16, wire=FIXED32)  # Span.flags (two bytes: field 16 > 15)
_EVENT_TIME = _tag(field=1, wire=FIXED64)  # Span.Event.time_unix_nano
_EVENT_NAME = _tag(field=2, wire=LEN)  # Span.Event.name
_EVENT_ATTRIBUTES = _tag(field=3, wire=LEN)  # Span.Event.attributes
_EVENT_DROPPED_ATTRIBUTES = _tag(field=4, wire=VARINT)  # Span.Event.dropped_attributes_count
_LINK_TRACE_ID = _tag(field=1, wire=LEN) + _ID16  # Span.Link.trace_id
_LINK_SPAN_ID = _tag(field=2, wire=LEN) + _ID8  # Span.Link.span_id
_LINK_ATTRIBUTES = _tag(field=4, wire=LEN)  # Span.Link.attributes
_LINK_DROPPED_ATTRIBUTES = _tag(field=5, wire=VARINT)  # Span.Link.dropped_attributes_count
_LINK_FLAGS = _tag(field=6, wire=FIXED32)  # Span.Link.flags
_STATUS_MESSAGE = _tag(field=2, wire=LEN)  # Status.message
_STATUS_CODE = _tag(field=3, wire=VARINT)  # Status.code

# logs.proto LogRecord.
_LOG_TIME = _tag(field=1, wire=FIXED64)  # LogRecord.time_unix_nano
_LOG_SEVERITY_NUMBER = _tag(field=2, wire=VARINT)  # LogRecord.severity_number
_LOG_SEVERITY_TEXT = _tag(field=3, wire=LEN)  # LogRecord.severity_text
_LOG_BODY = _tag(field=5, wire=LEN)  # LogRecord.body
_LOG_ATTRIBUTES = _tag(field=6, wire=LEN)  # LogRecord.attributes
_LOG_DROPPED_ATTRIBUTES = _tag(field=7, wire=VARINT)  # LogRecord.dropped_attributes_count
_LOG_FLAGS = _tag(field=8, wire=FIXED32)  # LogRecord.flags
_LOG_TRACE_ID = _tag(field=9, wire=LEN) + _ID16  # LogRecord.trace_id
_LOG_SPAN_ID = _tag(field=10, wire=LEN) + _ID8  # LogRecord.span_id
_LOG_OBSERVED_TIME = _tag(field=11, wire=FIXED64)  # LogRecord.observed_time_unix_nano
_LOG_EVENT_NAME = _tag(field=12, wire=LEN)  # LogRecord.event_name

# The request around them; ResourceSpans and ResourceLogs (ScopeSpans and ScopeLogs) have
# the same field numbers.
_REQUEST_RESOURCE_ITEMS = _tag(field=1, wire=LEN)  # Export*ServiceRequest.resource_{spans,logs}
_RESOURCE_ITEMS_RESOURCE = _tag(field=1, wire=LEN)  # Resource{Spans,Logs}.resource
_RESOURCE_ITEMS_SCOPES = _tag(field=2, wire=LEN)  # Resource{Spans,Logs}.scope_{spans,logs}
_RESOURCE_ITEMS_SCHEMA_URL = _tag(field=3, wire=LEN)  # Resource{Spans,Logs}.schema_url
_SCOPE_ITEMS_SCOPE = _tag(field=1, wire=LEN)  # Scope{Spans,Logs}.scope
_SCOPE_ITEMS_ITEMS = _tag(field=2, wire=LEN)  # Scope{Spans,Logs}.{spans,log_records}
_SCOPE_ITEMS_SCHEMA_URL = _tag(field=3, wire=LEN)  # Scope{Spans,Logs}.schema_url


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (message, string, bytes) after its tag."""
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
        encoded = _keys[key] = _field(_KV_KEY, _text(key))
    return encoded


def _any_value(value: Any) -> bytes:
    """An AnyValue's payload (common.proto), as the SDK's ``_encode_value``."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_TRUE if value else _ANY_FALSE
    if isinstance(value, str):
        return _field(_ANY_STRING, _text(value))
    if isinstance(value, int):
        if value not in _INT64:
            return _field(_ANY_STRING, str(value).encode())
        return _ANY_INT + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(_ANY_BYTES, value)
    if isinstance(value, Sequence):
        values = b"".join(_field(_ARRAY_VALUES, _any_value(v)) for v in value)
        return _field(_ANY_ARRAY, values)
    if isinstance(value, Mapping):
        pairs = (_key(str(k)) + _field(_KV_VALUE, _any_value(v)) for k, v in value.items())
        return _field(_ANY_KVLIST, b"".join(_field(_KVLIST_VALUES, pair) for pair in pairs))
    raise TypeError(f"cannot encode a {type(value).__name__} as an OTLP value")


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a KeyValue in the field ``tag``; one that cannot be encoded is
    left out (and logged), as the SDK's encoder does."""
    if not attributes:
        return b""
    parts = []
    for key, value in attributes.items():
        try:
            parts.append(_field(tag, _key(key) + _field(_KV_VALUE, _any_value(value))))
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
        _SPAN_TRACE_ID + context.trace_id.to_bytes(16, "big"),
        _SPAN_SPAN_ID + context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
        parts.append(_field(_SPAN_TRACE_STATE, _text(state)))
    if span.parent is not None:
        parts.append(_SPAN_PARENT_SPAN_ID + span.parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_field(_SPAN_NAME, _text(span.name)))
    # SpanKind: the SDK's enum counts from 0, OTLP's from 1 (0 is "unspecified").
    parts.append(_SPAN_KIND + _ONE_BYTE[span.kind.value + 1])
    if span.start_time:
        parts.append(_SPAN_START + _I64(span.start_time))
    if span.end_time:
        parts.append(_SPAN_END + _I64(span.end_time))
    parts.append(_attributes(_SPAN_ATTRIBUTES, span.attributes))
    parts.append(_count(_SPAN_DROPPED_ATTRIBUTES, span.dropped_attributes))
    for event in span.events:
        body = _EVENT_TIME + _I64(event.timestamp) if event.timestamp else b""
        if event.name:
            body += _field(_EVENT_NAME, _text(event.name))
        body += _attributes(_EVENT_ATTRIBUTES, event.attributes)
        body += _count(_EVENT_DROPPED_ATTRIBUTES, event.dropped_attributes)
        parts.append(_field(_SPAN_EVENTS, body))
    parts.append(_count(_SPAN_DROPPED_EVENTS, span.dropped_events))
    for link in span.links:
        body = (
            _LINK_TRACE_ID
            + link.context.trace_id.to_bytes(16, "big")
            + _LINK_SPAN_ID
            + link.context.span_id.to_bytes(8, "big")
            + _attributes(_LINK_ATTRIBUTES, link.attributes)
            + _count(_LINK_DROPPED_ATTRIBUTES, link.dropped_attributes)
            + _LINK_FLAGS
            + _span_flags(link.context)
        )
        parts.append(_field(_SPAN_LINKS, body))
    parts.append(_count(_SPAN_DROPPED_LINKS, span.dropped_links))
    status = span.status
    body = _field(_STATUS_MESSAGE, _text(status.description)) if status.description else b""
    parts.append(_field(_SPAN_STATUS, body + _count(_STATUS_CODE, status.status_code.value)))
    parts.append(_SPAN_FLAGS + _span_flags(span.parent))
    return b"".join(parts)


def _log_record(readable: ReadableLogRecord) -> bytes:
    """A LogRecord message (logs.proto)."""
    record = readable.log_record
    parts = []
    if record.timestamp:
        parts.append(_LOG_TIME + _I64(record.timestamp))
    severity = getattr(record.severity_number, "value", 0)
    parts.append(_count(_LOG_SEVERITY_NUMBER, severity))
    if record.severity_text:
        parts.append(_field(_LOG_SEVERITY_TEXT, _text(record.severity_text)))
    parts.append(_field(_LOG_BODY, _any_value(record.body)))
    parts.append(_attributes(_LOG_ATTRIBUTES, record.attributes))
    parts.append(_count(_LOG_DROPPED_ATTRIBUTES, readable.dropped_attributes))
    flags = int(record.trace_flags or 0)
    if flags:
        parts.append(_LOG_FLAGS + _I32(flags))
    if record.trace_id:
        parts.append(_LOG_TRACE_ID + record.trace_id.to_bytes(16, "big"))
    if record.span_id:
        parts.append(_LOG_SPAN_ID + record.span_id.to_bytes(8, "big"))
    if record.observed_timestamp:
        parts.append(_LOG_OBSERVED_TIME + _I64(record.observed_timestamp))
    if record.event_name:
        parts.append(_field(_LOG_EVENT_NAME, _text(record.event_name)))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    body = _field(_SCOPE_NAME, _text(scope.name)) if scope.name else b""
    if scope.version:
        body += _field(_SCOPE_VERSION, _text(scope.version))
    return body + _attributes(_SCOPE_ATTRIBUTES, scope.attributes)


def _request(
    items: Iterable[T],
    where: Callable[[T], tuple[Resource, InstrumentationScope | None]],
    encode: Callable[[T], bytes],
) -> bytes:
    """An Export*ServiceRequest: items grouped by resource, then by scope, in the order
    first seen."""
    # By identity: the SDK's Resource hashes through json.dumps, and a batch's items share
    # one resource and a few scopes.
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]]
    groups = {}
    for item in items:
        resource, scope = where(item)
        scopes = groups.setdefault(id(resource), (resource, {}))[1]
        encoded = scopes.setdefault(id(scope), (scope, []))[1]
        encoded.append(_field(_SCOPE_ITEMS_ITEMS, encode(item)))
    out = []
    for resource, scopes in groups.values():
        attributes = _attributes(_RESOURCE_ATTRIBUTES, resource.attributes)
        body = _field(_RESOURCE_ITEMS_RESOURCE, attributes)
        for scope, encoded in scopes.values():
            scoped = _field(_SCOPE_ITEMS_SCOPE, _scope(scope)) + b"".join(encoded)
            if scope is not None and scope.schema_url:
                scoped += _field(_SCOPE_ITEMS_SCHEMA_URL, _text(scope.schema_url))
            body += _field(_RESOURCE_ITEMS_SCOPES, scoped)
        if resource.schema_url:
            body += _field(_RESOURCE_ITEMS_SCHEMA_URL, _text(resource.schema_url))
        out.append(_field(_REQUEST_RESOURCE_ITEMS, body))
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
