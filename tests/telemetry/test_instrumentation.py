"""Server, database and factory-client spans, each on its own app's providers."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from telemetry.setup import instrument_app, instrument_engine, traced_transport
from tests.telemetry.conftest import MakeTelemetry

KEY = "factory-key-d3adb33f-s3cr3t"


def tiny_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/order/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    for path in ("/metrics", "/healthz", "/readyz"):
        app.add_api_route(path, lambda: {"ok": True})
    return app


async def test_server_spans_and_request_duration_in_seconds(make_telemetry: MakeTelemetry) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)
    app = tiny_app()
    instrument_app(app, telemetry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path in ("/api/order/5", "/metrics", "/healthz", "/readyz"):
            assert (await client.get(path)).status_code == 200
    server = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert [s.name for s in server] == ["GET /api/order/{order_id}"]
    assert server[0].attributes is not None
    assert server[0].attributes["http.route"] == "/api/order/{order_id}"
    page = telemetry.render_prometheus()[0].decode()
    # Stable semantic conventions: seconds, route and method labels; probes excluded.
    assert 'http_route="/api/order/{order_id}"' in page
    assert "http_server_request_duration_seconds_bucket" in page
    assert "http_server_duration_milliseconds" not in page
    assert 'http_route="/metrics"' not in page and 'http_route="/healthz"' not in page


async def test_database_spans_for_this_engine_only(make_telemetry: MakeTelemetry) -> None:
    """The instrumentation declares sqlalchemy<2.1 (docs/telemetry.md#traces): spans must
    really appear."""
    first_spans, second_spans = InMemorySpanExporter(), InMemorySpanExporter()
    first = make_telemetry(span_exporter=first_spans)
    second = make_telemetry(span_exporter=second_spans)
    first_engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    second_engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        instrument_engine(first_engine, first)
        instrument_engine(first_engine, first)  # twice: still one span per statement
        instrument_engine(second_engine, second)
        async with first_engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        async with second_engine.connect() as conn:
            await conn.execute(text("SELECT 2"))
    finally:
        await first_engine.dispose()
        await second_engine.dispose()
    [one] = [s for s in first_spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    [two] = [s for s in second_spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert one.attributes is not None and two.attributes is not None
    assert "SELECT 1" in str(
        one.attributes.get("db.statement", one.attributes.get("db.query.text"))
    )
    assert "SELECT 2" in str(
        two.attributes.get("db.statement", two.attributes.get("db.query.text"))
    )


async def test_factory_client_spans_without_the_key(make_telemetry: MakeTelemetry) -> None:
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)

    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("traceparent"))
        status = 500 if request.url.path == "/api/vendor" else 200
        return httpx.Response(status, json={"message": "Problem resolved"})

    factory = httpx.AsyncClient(
        transport=traced_transport(httpx.MockTransport(answer), telemetry, secrets=(KEY,))
    )
    other = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    async with factory, other:
        await factory.get(f"https://factory.example/api/support/{KEY}/report/fix-1")
        await factory.get(f"https://resolve.example/fix?apiKey={KEY}&fixCode=2")
        await factory.get("https://factory.example/api/vendor")
        await other.get("https://elsewhere.example/")
    client = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    urls = [str((s.attributes or {})["url.full"]) for s in client]
    assert urls == [
        "https://factory.example/api/support/***/report/fix-1",
        "https://resolve.example/fix?apiKey=***&fixCode=2",
        "https://factory.example/api/vendor",
    ]
    for span in client:
        assert KEY not in str(span.attributes) and KEY not in span.name
    # The factory is told which span called it (W3C trace context), and an answer that
    # failed marks its span so.
    assert [header.split("-")[1:3] for header in sent[:3] if header] == [
        [f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}"] for s in client
    ]
    assert sent[3] is None  # the other client is not instrumented
    statuses = [(s.attributes or {})["http.response.status_code"] for s in client]
    assert statuses == [200, 200, 500]
    assert [s.status.status_code for s in client] == [
        StatusCode.UNSET,
        StatusCode.UNSET,
        StatusCode.ERROR,
    ]


async def test_the_factory_key_is_masked_wherever_a_link_puts_it(
    make_telemetry: MakeTelemetry,
) -> None:
    """A link of a shape no redaction pattern knows still never carries the key."""
    spans = InMemorySpanExporter()
    telemetry = make_telemetry(span_exporter=spans)
    answer = httpx.MockTransport(lambda _: httpx.Response(200))
    factory = httpx.AsyncClient(transport=traced_transport(answer, telemetry, secrets=(KEY,)))
    async with factory:
        await factory.get(f"https://factory.example/fix/{KEY}/now")
    [span] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert (span.attributes or {})["url.full"] == "https://factory.example/fix/***/now"
