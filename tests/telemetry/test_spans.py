"""telemetry/spans.py's current span behaves as `start_as_current_span` with the exception
recorded and an ERROR status set, as the hot spans had it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from telemetry.spans import current_span


@pytest.fixture
def spans() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("t"), exporter
    provider.shutdown()


def test_current_inside_ended_after_with_its_attributes(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    with tracer.start_as_current_span("POST /api/order") as outer:
        with current_span(tracer, "pizza.create", kind=SpanKind.CLIENT, attributes={"a": 1}) as s:
            assert trace.get_current_span() is s
        assert trace.get_current_span() is outer
    create, request = exporter.get_finished_spans()
    assert create.name == "pizza.create" and create.kind == SpanKind.CLIENT
    assert dict(create.attributes or {}) == {"a": 1}
    assert create.parent is not None and create.parent.span_id == request.context.span_id
    assert create.status.status_code == StatusCode.UNSET


def test_an_escaping_error_is_recorded_and_sets_error(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    with pytest.raises(ValueError), current_span(tracer, "pizza.create"):
        raise ValueError("no dough")
    [span] = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "ValueError: no dough"
    [event] = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_cancellation_ends_the_span_without_an_error(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans

    async def call() -> None:
        with current_span(tracer, "POST", kind=SpanKind.CLIENT):
            await asyncio.sleep(10)

    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [span] = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.UNSET and not span.events
