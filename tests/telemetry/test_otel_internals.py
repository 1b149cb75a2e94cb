"""The private OpenTelemetry members the service uses (telemetry/otel_internals.py): all
there in the versions the lock installs, and when one is gone (a release that changed it)
the service says so in one warning line and still exports its spans, the stock way."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

from telemetry import otel_internals
from telemetry.otel_internals import ENGINE_TRACER, LEAN_EXPORT, SEMCONV_REREAD
from telemetry.otlp_export import LeanSpanExporter
from tests.conftest import make_settings, running_api
from tests.telemetry.otlp import Received, export_to
from tests.telemetry.otlp import attributes as _attributes

pytestmark = pytest.mark.usefixtures("restore_logging")

# What each feature needs, as a test removes it: (module, member).
REMOVED = {
    LEAN_EXPORT: ("opentelemetry.exporter.otlp.proto.http._common", "_is_request_too_large"),
    SEMCONV_REREAD: (
        "opentelemetry.instrumentation._semconv",
        "_OpenTelemetrySemanticConventionStability",
    ),
    ENGINE_TRACER: ("opentelemetry.instrumentation.sqlalchemy.engine", "EngineTracer"),
}


def test_the_locked_opentelemetry_has_every_member_used() -> None:
    """A canary for upgrades: the lock's versions take no fallback. When this fails after an
    upgrade, the service still works (the tests below), only the slower way."""
    assert otel_internals.check().missing == {}


@pytest.mark.parametrize("feature", list(REMOVED))
async def test_spans_are_still_exported_without_it(
    feature: str,
    receiver: Received,
    factory_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    module, member = REMOVED[feature]
    monkeypatch.delattr(importlib.import_module(module), member)
    export_to(receiver, monkeypatch)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/pizza.db", factory_url)
    try:
        with caplog.at_level(logging.WARNING, logger="telemetry.setup"):
            async with running_api(settings) as api:
                assert api.app.state.services.telemetry.internals.missing.keys() == {feature}
                menu = await api.client.get("/api/order/menu")
                assert menu.status_code == 200
    finally:
        if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
            SQLAlchemyInstrumentor().uninstrument()
    warnings = [r.getMessage() for r in caplog.records if r.name == "telemetry.setup"]
    [line] = [w for w in warnings if w.startswith("OpenTelemetry internals")]
    assert feature in line and member.split(".")[-1] in line
    assert receiver.errors == []
    names = {span.name for span in receiver.spans}
    assert "GET /api/order/menu" in names
    # The start's database statements, whichever way the engine was instrumented.
    assert any("db.system" in _attributes(span) for span in receiver.spans), names


def test_an_exporter_without_a_member_is_replaced_by_the_stock_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Renamed(LeanSpanExporter):
        """As a release that renamed the exporter's HTTP client would build it."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._http_client = self._client
            del self._client

        def shutdown(self) -> None:
            self._http_client.shutdown()

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    internals = otel_internals.check()
    exporter = internals.otlp_exporter(Renamed, OTLPSpanExporter)
    try:
        assert type(exporter) is OTLPSpanExporter
        assert internals.missing == {LEAN_EXPORT: ["OTLPSpanExporter._client"]}
        assert internals.warning() == (
            "OpenTelemetry internals: lean OTLP export: OTLPSpanExporter._client missing,"
            " using the SDK's own OTLP exporters"
        )
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
