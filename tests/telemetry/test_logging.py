"""JSON lines on stdout, trace ids inside spans, OTLP logs and the log counter."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.logging import configure_logging
from tests.telemetry.conftest import MakeTelemetry

pytestmark = pytest.mark.usefixtures("restore_logging")
KEY = "factory-key-d3adb33f-s3cr3t"


def entries(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_json_object_per_line_with_extras() -> None:
    out = io.StringIO()
    configure_logging(secrets=list, stream=out)
    logging.getLogger("app.orders").info("order %d pending", 7, extra={"order_id": 7})
    [entry] = entries(out)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "app.orders"
    assert entry["message"] == "order 7 pending"
    assert entry["order_id"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["ts"])
    assert "trace_id" not in entry


def test_trace_and_span_ids_inside_a_span(make_telemetry: MakeTelemetry) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)
    out = io.StringIO()
    configure_logging(secrets=list, telemetry=telemetry, stream=out)
    with telemetry.tracer.start_as_current_span("request") as span:
        logging.getLogger("t").info("inside")
    logging.getLogger("t").info("outside")
    inside, outside = entries(out)
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in outside


def test_level_and_idempotence() -> None:
    out = io.StringIO()
    configure_logging(secrets=list, stream=io.StringIO())
    configure_logging(secrets=list, level="warning", stream=out)
    logging.getLogger("t").info("dropped")
    logging.getLogger("t").warning("kept")
    assert [e["message"] for e in entries(out)] == ["kept"]
    owned = [h for h in logging.getLogger().handlers if getattr(h, "_jwt_pizza_handler", False)]
    assert len(owned) == 2  # the redacting front handler and stdout


def test_uvicorn_loggers_go_through_it() -> None:
    error = logging.getLogger("uvicorn.error")
    error.addHandler(logging.StreamHandler(io.StringIO()))
    error.propagate = False
    error.setLevel(logging.ERROR)  # as uvicorn --log-level error leaves it
    out = io.StringIO()
    configure_logging(secrets=lambda: [KEY], stream=out)
    error.warning(
        "Invalid HTTP request received: %s", f"/x?apiKey={KEY}",
        extra={"color_message": "\x1b[36m...\x1b[0m"},
    )  # fmt: skip
    [entry] = entries(out)
    assert "color_message" not in entry
    assert entry["logger"] == "uvicorn.error"
    assert entry["message"] == "Invalid HTTP request received: /x?apiKey=***"
    assert error.handlers == []
    assert error.level == logging.NOTSET


def test_uvicorn_writes_no_access_line_of_its_own() -> None:
    """The service's access line (app.access) is the one: uvicorn's would repeat it."""
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.StreamHandler(io.StringIO()))  # as uvicorn's start leaves it
    access.propagate = True
    out = io.StringIO()
    configure_logging(secrets=list, stream=out)
    # uvicorn writes its access line only where the logger has somewhere to write it.
    assert not access.hasHandlers()
    access.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", "/x", "1.1", 200)
    assert entries(out) == []


def test_otlp_logs_are_redacted_and_carry_the_trace(make_telemetry: MakeTelemetry) -> None:
    telemetry = make_telemetry(span_exporter=InMemorySpanExporter())
    exported = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exported))
    telemetry.logger_provider = provider
    configure_logging(secrets=lambda: [KEY], telemetry=telemetry, stream=io.StringIO())
    with telemetry.tracer.start_as_current_span("request") as span:
        try:
            raise ValueError(f"key {KEY}")
        except ValueError:
            logging.getLogger("app").exception(
                "link %s", f"/api/support/{KEY}/report/1", extra={"n": 1}
            )
    [data] = exported.get_finished_logs()
    record = data.log_record
    assert record.body == "link /api/support/***/report/1"
    assert record.severity_text == "ERROR"
    assert record.trace_id == span.get_span_context().trace_id
    assert record.attributes is not None
    assert record.attributes["n"] == 1
    assert record.attributes["exception.type"] == "ValueError"
    assert KEY not in str(record.attributes["exception.stacktrace"])


def test_log_records_are_counted_by_severity(make_telemetry: MakeTelemetry) -> None:
    telemetry = make_telemetry()
    configure_logging(secrets=list, telemetry=telemetry, stream=io.StringIO())
    log = logging.getLogger("t")
    log.error("one")
    log.error("two")
    log.warning("three")
    page = telemetry.render_prometheus()[0].decode()
    counts = dict(re.findall(r'pizza_log_records_total\{.*severity="(\w+)".*\} (\S+)', page))
    assert counts["error"] == "2.0"
    assert counts["warning"] == "1.0"
    assert counts["critical"] == "0.0"


def test_no_feedback_loop_through_the_sdk_own_logs(make_telemetry: MakeTelemetry) -> None:
    """After shutdown the SDK logs "Shutdown called" for each record it is handed:
    that log must not be handed to it again (unbounded recursion)."""
    telemetry = make_telemetry()
    exported = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exported))
    telemetry.logger_provider = provider
    out = io.StringIO()
    configure_logging(secrets=list, telemetry=telemetry, stream=out)
    logging.getLogger("opentelemetry.sdk.test").warning("export failed")
    provider.shutdown()
    logging.getLogger("app").info("after shutdown")
    assert exported.get_finished_logs() == ()
    messages = [e["message"] for e in entries(out)]
    assert messages[0] == "export failed" and "after shutdown" in messages
