"""End to end over OTLP/HTTP: the service, configured only by OpenTelemetry's
standard variables, exports to a real receiver on 127.0.0.1 everything docs/telemetry.md
describes, through a healthy and then a failing factory, and no secret at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from telemetry.metrics import PROMETHEUS_NAMES
from tests.conftest import FACTORY_KEY, JWT_SECRET, make_settings, running_api
from tests.telemetry.otlp import Received, events_of, export_to
from tests.telemetry.otlp import attributes as _attributes
from tests.utils.builders import PASSWORD as ADMIN_PASSWORD
from tests.utils.builders import Account, Api, fast_password_hashing  # noqa: F401
from tests.utils.orders import distinct
from tests.utils.waiting import eventually

pytestmark = pytest.mark.usefixtures("restore_logging", "fast_password_hashing")

DINER_PASSWORD = "otlp-diner-passw0rd-9f3e1c"
HEALTHY_ORDERS = 3
FAILING_ORDERS = 3
# docs/telemetry.md#metrics, by OpenTelemetry name (process CPU and memory included).
EXPECTED_METRICS = {"http.server.request.duration", *PROMETHEUS_NAMES}


async def _orders(api: Api, shop: Any, diner: Account, count: int) -> list[httpx.Response]:
    return [await api.order(shop, diner=diner, headers=distinct()) for _ in range(count)]


async def test_every_signal_over_otlp_and_no_secret(
    receiver: Received,
    factory: httpx.Client,
    factory_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    export_to(receiver, monkeypatch)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/pizza.db", factory_url)
    tokens: list[str] = []

    # Shutting the app down flushes every provider: all is at the receiver afterwards.
    async with running_api(settings) as api:
        shop = await api.shop()
        diner = await api.register(password=DINER_PASSWORD)
        await api.login(diner.email, DINER_PASSWORD)
        tokens += [shop.admin.token, shop.diner.token, diner.token]

        healthy = await _orders(api, shop, diner, HEALTHY_ORDERS)
        assert [r.status_code for r in healthy] == [200] * HEALTHY_ORDERS
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        failing = await _orders(api, shop, diner, FAILING_ORDERS)
        assert 503 in [r.status_code for r in failing]
        status = await api.client.get("/factory/status", headers=shop.admin.headers)
        assert status.status_code == 200
        history = {e["kind"] for e in status.json()["history"]}
        assert "link_detected" in history, status.json()
        # A bad sign-in: the failure side of pizza.auth.attempts, and one more password.
        bad = await api.client.put(
            "/api/auth", json={"email": diner.email, "password": DINER_PASSWORD + "-wrong"}
        )
        assert bad.status_code in (401, 404)

    assert not receiver.errors
    assert receiver.encodings == {"gzip"}

    # Metrics: every name of docs/telemetry.md#metrics.
    missing = EXPECTED_METRICS - receiver.metric_names
    assert not missing, f"not exported over OTLP: {sorted(missing)}"

    spans = receiver.spans
    server = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    client = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    # A server span per request: every POST /api/order of the test is there.
    order_spans = [s for s in server if s.name == "POST /api/order"]
    assert len(order_spans) == HEALTHY_ORDERS + FAILING_ORDERS
    assert {s.name for s in server} >= {"PUT /api/auth", "GET /factory/status"}
    # Factory calls (httpx instrumentation) and database statements, both CLIENT spans.
    factory_calls = [s for s in client if "http.request.method" in _attributes(s)]
    assert any(_attributes(s).get("url.full", "").endswith("/api/order") for s in factory_calls)
    database = [s for s in client if "db.system" in _attributes(s)]
    assert database and {_attributes(s)["db.system"] for s in database} == {"sqlite"}

    creations = [s for s in spans if s.name == "pizza.create"]
    assert len(creations) >= HEALTHY_ORDERS + 1
    outcomes = set()
    for span in creations:
        attributes = _attributes(span)
        assert {"pizza.order.id", "pizza.order.items", "pizza.breaker.state"} <= set(attributes)
        assert attributes["pizza.order.items"] == 1
        outcomes.add(attributes["pizza.outcome"])
    assert {"success", "unavailable"} <= outcomes
    # The factory's HTTP call is a child of its pizza.create span.
    creation_ids = {s.span_id for s in creations}
    assert any(s.parent_span_id in creation_ids for s in factory_calls)

    # The link is detected inside the pizza.create span of the call that carried it.
    assert {s.name for s in events_of(spans)["factory.remediation_link.detected"]} == {
        "pizza.create"
    }

    # Logs: exported, and those written inside a request carry its trace.
    records = receiver.log_records
    assert records
    traced = [r for r in records if len(r.trace_id) == 16 and any(r.trace_id)]
    assert traced
    server_traces = {s.trace_id for s in server}
    assert any(r.trace_id in server_traces for r in traced)
    [detected] = [r for r in records if "remediation link detected" in r.body.string_value]
    assert detected.trace_id in server_traces and detected.severity_text == "ERROR"
    # Each record says where it was logged, beyond its logger (the scope).
    where = {a.key: a.value for a in detected.attributes}
    assert where["code.function.name"].string_value
    assert where["code.file.path"].string_value.endswith(".py")
    assert where["code.line.number"].int_value > 0

    # Nothing secret anywhere: decoded text, and the raw protobuf bytes.
    text = receiver.text()
    secrets = {
        "factory API key": FACTORY_KEY,
        "JWT secret": JWT_SECRET,
        "admin password": ADMIN_PASSWORD,
        "diner password": DINER_PASSWORD,
        **{f"bearer token {n}": token for n, token in enumerate(tokens)},
    }
    for what, secret in secrets.items():
        assert secret not in text, f"the {what} was exported"
        assert not any(secret.encode() in body for body in receiver.bodies), what


async def test_breaker_and_manual_remediation_events(
    receiver: Received,
    factory: httpx.Client,
    factory_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The incident as it happened (nobody follows the link automatically): the breaker
    opens inside a customer's request, an operator remediates; both are span events."""
    export_to(receiver, monkeypatch)
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path}/pizza.db",
        factory_url,
        factory_auto_remediate=False,
        breaker_fail_max=2,
        breaker_reset_s=60.0,
        # Only the customers' calls fail in this test: a retry of the first pending
        # order would otherwise race the second customer to the opening failure.
        retry_base_s=60.0,
        retry_max_s=60.0,
    )
    async with running_api(settings) as api:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        answers = [await api.order(shop, headers=distinct()) for _ in range(3)]
        assert [a.status_code for a in answers] == [503] * 3
        fixed = await api.client.post("/factory/remediate", headers=shop.admin.headers)
        assert fixed.status_code == 200 and fixed.json()["attempt"]["resolved"], fixed.text

    assert not receiver.errors
    events = events_of(receiver.spans)
    assert {s.name for s in events["factory.breaker.state_change"]} >= {"POST /api/order"}
    # The attempt is an event on its own span, a child of the operator's request.
    [remediate] = events["factory.remediation.attempt"]
    assert remediate.name == "factory.remediate"
    [request] = [s for s in receiver.spans if s.span_id == remediate.parent_span_id]
    assert request.name == "POST /factory/remediate"
    # "closed -> open" is on the trace of the order that opened the breaker.
    [change] = [
        e
        for s in events["factory.breaker.state_change"]
        for e in s.events
        if e.name == "factory.breaker.state_change" and s.name == "POST /api/order"
    ]
    assert {a.key: a.value.string_value for a in change.attributes} == {
        "from": "closed",
        "to": "open",
    }


async def test_auto_remediation_attempt_is_a_span_event(
    receiver: Received,
    factory: httpx.Client,
    factory_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    export_to(receiver, monkeypatch)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/pizza.db", factory_url)
    async with running_api(settings) as api:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        assert (await api.order(shop)).status_code == 503

        async def resolved() -> bool:
            status = await api.client.get("/factory/status", headers=shop.admin.headers)
            return any(a["resolved"] for a in status.json()["remediation"]["attempts"])

        await eventually(resolved, timeout_s=10)
    events = events_of(receiver.spans)
    assert "factory.remediation.attempt" in events
    # On a span of its own (the order's span had ended), inside the order's trace.
    assert {s.name for s in events["factory.remediation.attempt"]} == {"factory.remediate"}
