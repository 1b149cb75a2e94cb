"""Every tag telemetry/otlp_export.py writes is the tag of the field its name says, as
opentelemetry-proto's descriptors define it (number and wire type): a name that lies
about its field fails here, before any message is compared."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from telemetry import otlp_export as otlp

_WIRE = {
    FieldDescriptor.TYPE_FIXED64: otlp.FIXED64,
    FieldDescriptor.TYPE_DOUBLE: otlp.FIXED64,
    FieldDescriptor.TYPE_FIXED32: otlp.FIXED32,
    FieldDescriptor.TYPE_MESSAGE: otlp.LEN,
    FieldDescriptor.TYPE_STRING: otlp.LEN,
    FieldDescriptor.TYPE_BYTES: otlp.LEN,
    FieldDescriptor.TYPE_BOOL: otlp.VARINT,
    FieldDescriptor.TYPE_ENUM: otlp.VARINT,
    FieldDescriptor.TYPE_INT64: otlp.VARINT,
    FieldDescriptor.TYPE_UINT32: otlp.VARINT,
}
ID16, ID8 = b"\x10", b"\x08"  # the length that follows an id's tag

# (constant, message, field, bytes written after the tag with it)
TAGS: list[tuple[str, Descriptor, str, bytes]] = [
    ("_ANY_STRING", AnyValue.DESCRIPTOR, "string_value", b""),
    ("_ANY_BOOL", AnyValue.DESCRIPTOR, "bool_value", b""),
    ("_ANY_INT", AnyValue.DESCRIPTOR, "int_value", b""),
    ("_ANY_DOUBLE", AnyValue.DESCRIPTOR, "double_value", b""),
    ("_ANY_ARRAY", AnyValue.DESCRIPTOR, "array_value", b""),
    ("_ANY_KVLIST", AnyValue.DESCRIPTOR, "kvlist_value", b""),
    ("_ANY_BYTES", AnyValue.DESCRIPTOR, "bytes_value", b""),
    ("_ARRAY_VALUES", ArrayValue.DESCRIPTOR, "values", b""),
    ("_KVLIST_VALUES", KeyValueList.DESCRIPTOR, "values", b""),
    ("_KV_KEY", KeyValue.DESCRIPTOR, "key", b""),
    ("_KV_VALUE", KeyValue.DESCRIPTOR, "value", b""),
    ("_SCOPE_NAME", InstrumentationScope.DESCRIPTOR, "name", b""),
    ("_SCOPE_VERSION", InstrumentationScope.DESCRIPTOR, "version", b""),
    ("_SCOPE_ATTRIBUTES", InstrumentationScope.DESCRIPTOR, "attributes", b""),
    ("_RESOURCE_ATTRIBUTES", Resource.DESCRIPTOR, "attributes", b""),
    ("_SPAN_TRACE_ID", Span.DESCRIPTOR, "trace_id", ID16),
    ("_SPAN_SPAN_ID", Span.DESCRIPTOR, "span_id", ID8),
    ("_SPAN_TRACE_STATE", Span.DESCRIPTOR, "trace_state", b""),
    ("_SPAN_PARENT_SPAN_ID", Span.DESCRIPTOR, "parent_span_id", ID8),
    ("_SPAN_NAME", Span.DESCRIPTOR, "name", b""),
    ("_SPAN_KIND", Span.DESCRIPTOR, "kind", b""),
    ("_SPAN_START", Span.DESCRIPTOR, "start_time_unix_nano", b""),
    ("_SPAN_END", Span.DESCRIPTOR, "end_time_unix_nano", b""),
    ("_SPAN_ATTRIBUTES", Span.DESCRIPTOR, "attributes", b""),
    ("_SPAN_DROPPED_ATTRIBUTES", Span.DESCRIPTOR, "dropped_attributes_count", b""),
    ("_SPAN_EVENTS", Span.DESCRIPTOR, "events", b""),
    ("_SPAN_DROPPED_EVENTS", Span.DESCRIPTOR, "dropped_events_count", b""),
    ("_SPAN_LINKS", Span.DESCRIPTOR, "links", b""),
    ("_SPAN_DROPPED_LINKS", Span.DESCRIPTOR, "dropped_links_count", b""),
    ("_SPAN_STATUS", Span.DESCRIPTOR, "status", b""),
    ("_SPAN_FLAGS", Span.DESCRIPTOR, "flags", b""),
    ("_EVENT_TIME", Span.Event.DESCRIPTOR, "time_unix_nano", b""),
    ("_EVENT_NAME", Span.Event.DESCRIPTOR, "name", b""),
    ("_EVENT_ATTRIBUTES", Span.Event.DESCRIPTOR, "attributes", b""),
    ("_EVENT_DROPPED_ATTRIBUTES", Span.Event.DESCRIPTOR, "dropped_attributes_count", b""),
    ("_LINK_TRACE_ID", Span.Link.DESCRIPTOR, "trace_id", ID16),
    ("_LINK_SPAN_ID", Span.Link.DESCRIPTOR, "span_id", ID8),
    ("_LINK_ATTRIBUTES", Span.Link.DESCRIPTOR, "attributes", b""),
    ("_LINK_DROPPED_ATTRIBUTES", Span.Link.DESCRIPTOR, "dropped_attributes_count", b""),
    ("_LINK_FLAGS", Span.Link.DESCRIPTOR, "flags", b""),
    ("_STATUS_MESSAGE", Status.DESCRIPTOR, "message", b""),
    ("_STATUS_CODE", Status.DESCRIPTOR, "code", b""),
    ("_LOG_TIME", LogRecord.DESCRIPTOR, "time_unix_nano", b""),
    ("_LOG_SEVERITY_NUMBER", LogRecord.DESCRIPTOR, "severity_number", b""),
    ("_LOG_SEVERITY_TEXT", LogRecord.DESCRIPTOR, "severity_text", b""),
    ("_LOG_BODY", LogRecord.DESCRIPTOR, "body", b""),
    ("_LOG_ATTRIBUTES", LogRecord.DESCRIPTOR, "attributes", b""),
    ("_LOG_DROPPED_ATTRIBUTES", LogRecord.DESCRIPTOR, "dropped_attributes_count", b""),
    ("_LOG_FLAGS", LogRecord.DESCRIPTOR, "flags", b""),
    ("_LOG_TRACE_ID", LogRecord.DESCRIPTOR, "trace_id", ID16),
    ("_LOG_SPAN_ID", LogRecord.DESCRIPTOR, "span_id", ID8),
    ("_LOG_OBSERVED_TIME", LogRecord.DESCRIPTOR, "observed_time_unix_nano", b""),
    ("_LOG_EVENT_NAME", LogRecord.DESCRIPTOR, "event_name", b""),
    ("_REQUEST_RESOURCE_ITEMS", ExportTraceServiceRequest.DESCRIPTOR, "resource_spans", b""),
    ("_RESOURCE_ITEMS_RESOURCE", ResourceSpans.DESCRIPTOR, "resource", b""),
    ("_RESOURCE_ITEMS_SCOPES", ResourceSpans.DESCRIPTOR, "scope_spans", b""),
    ("_RESOURCE_ITEMS_SCHEMA_URL", ResourceSpans.DESCRIPTOR, "schema_url", b""),
    ("_RESOURCE_ITEMS_RESOURCE", ResourceLogs.DESCRIPTOR, "resource", b""),
    ("_RESOURCE_ITEMS_SCOPES", ResourceLogs.DESCRIPTOR, "scope_logs", b""),
    ("_RESOURCE_ITEMS_SCHEMA_URL", ResourceLogs.DESCRIPTOR, "schema_url", b""),
    ("_SCOPE_ITEMS_SCOPE", ScopeSpans.DESCRIPTOR, "scope", b""),
    ("_SCOPE_ITEMS_ITEMS", ScopeSpans.DESCRIPTOR, "spans", b""),
    ("_SCOPE_ITEMS_SCHEMA_URL", ScopeSpans.DESCRIPTOR, "schema_url", b""),
    ("_SCOPE_ITEMS_SCOPE", ScopeLogs.DESCRIPTOR, "scope", b""),
    ("_SCOPE_ITEMS_ITEMS", ScopeLogs.DESCRIPTOR, "log_records", b""),
    ("_SCOPE_ITEMS_SCHEMA_URL", ScopeLogs.DESCRIPTOR, "schema_url", b""),
]


@pytest.mark.parametrize(
    ("constant", "message", "field", "after"),
    TAGS,
    ids=[f"{t[0]}={t[1].name}.{t[2]}" for t in TAGS],
)
def test_the_tag_is_the_named_fields(
    constant: str, message: Descriptor, field: str, after: bytes
) -> None:
    described = message.fields_by_name[field]
    expected = otlp._tag(field=described.number, wire=_WIRE[described.type])
    assert getattr(otlp, constant) == expected + after


def test_every_tag_of_the_module_is_checked() -> None:
    constants = {n for n, v in vars(otlp).items() if n.isupper() and isinstance(v, bytes)}
    not_tags = {"_ID16", "_ID8", "_ANY_TRUE", "_ANY_FALSE"}  # lengths, a whole bool value
    assert constants - not_tags == {t[0] for t in TAGS}


def test_a_field_above_15_takes_two_bytes_of_tag() -> None:
    # Span.flags: 16 << 3 | FIXED32 = 133, a varint of two bytes.
    assert otlp._tag(field=16, wire=otlp.FIXED32) == b"\x85\x01"
