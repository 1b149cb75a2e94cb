"""Every order's trace says what happened to it, and idle polling makes no trace
(docs/telemetry.md#traces).

Over real HTTP to an OTLP receiver that decodes protobuf, as a collector would."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from app.config import Settings
from app.orders.tracing import FULFILLED, PENDING, REFUSED
from app.orders.workflow import BREAKER_OPEN_REASON
from app.sql.rows import PendingStats
from tests.conftest import make_settings, running_api
from tests.telemetry.otlp import Received, attributes, export_to
from tests.utils.builders import Api, Shop, fast_password_hashing  # noqa: F401
from tests.utils.orders import distinct
from tests.utils.simulator import end_chaos
from tests.utils.waiting import eventually

pytestmark = pytest.mark.usefixtures("restore_logging", "fast_password_hashing")

MakeSettings = Callable[..., Settings]
# What a minute of idle service polls at WORKER_IDLE_POLL_S = 5 s: twelve cycles.
IDLE_CYCLES_PER_MINUTE = 12


def _events(span: Span) -> dict[str, dict[str, object]]:
    return {
        event.name: {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in event.attributes}
        for event in span.events
    }


def _of_order(spans: list[Span], name: str, order_id: int) -> list[Span]:
    return [s for s in spans if s.name == name and attributes(s).get("pizza.order.id") == order_id]


async def _fulfilled(api: Api, shop: Shop, order_id: int) -> None:
    async def made() -> bool:
        state = await api.client.get(f"/api/order/{order_id}", headers=shop.diner.headers)
        return bool(state.json()["status"] == "fulfilled")

    await eventually(made, timeout_s=15)


@pytest.fixture
def exporting_settings(
    receiver: Received, factory_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MakeSettings:
    """Settings for a service on SQLite exporting every signal to ``receiver``."""
    export_to(receiver, monkeypatch)

    def make(**overrides: Any) -> Settings:
        return make_settings(f"sqlite+aiosqlite:///{tmp_path}/pizza.db", factory_url, **overrides)

    return make


async def test_refused_by_the_open_breaker_then_made_by_the_worker(
    receiver: Received, factory: httpx.Client, exporting_settings: MakeSettings
) -> None:
    settings = exporting_settings(
        factory_auto_remediate=False,
        breaker_fail_max=2,
        breaker_reset_s=0.5,
    )
    async with running_api(settings) as api:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        failed = [await api.order(shop, headers=distinct()) for _ in range(2)]
        assert [a.status_code for a in failed] == [503, 503]
        refused = await api.order(shop, headers=distinct())
        assert refused.status_code == 503
        order_id = refused.json()["order"]["id"]
        end_chaos(factory)
        await _fulfilled(api, shop, order_id)

    assert not receiver.errors
    spans = receiver.spans
    # The refused order's own request: it says it was refused, why, and that it is pending.
    [request] = [
        s
        for s in spans
        if s.name == "POST /api/order" and order_id in _events(s).get(REFUSED, {}).values()
    ]
    events = _events(request)
    assert events[REFUSED]["pizza.reason"] == BREAKER_OPEN_REASON
    assert events[PENDING]["pizza.order.id"] == order_id
    # The worker's attempt that made it: linked to that first trace, and it says so.
    [retry] = [s for s in _of_order(spans, "pizza.retry", order_id) if FULFILLED in _events(s)]
    assert [(link.trace_id, link.span_id) for link in retry.links] == [
        (request.trace_id, request.span_id)
    ]
    assert retry.trace_id != request.trace_id
    # One cycle, one trace: the retry is a child of the worker's cycle span.
    [cycle] = [s for s in spans if s.span_id == retry.parent_span_id]
    assert cycle.name == "pizza.worker.cycle" and not cycle.parent_span_id
    # The factory calls that failed are errors; the one that made the pizza is not.
    creations = [s for s in spans if s.name == "pizza.create"]
    statuses = {attributes(s)["pizza.outcome"]: s.status.code for s in creations}
    assert statuses["unavailable"] == Status.STATUS_CODE_ERROR
    assert statuses["success"] != Status.STATUS_CODE_ERROR


async def test_a_late_answer_says_the_order_was_fulfilled_late(
    receiver: Received, factory: httpx.Client, exporting_settings: MakeSettings
) -> None:
    """The throttle chaos: the customer is told "pending", the pizza comes after."""
    # The simulator answers after 0.5 s; the customer waits 0.2 s.
    settings = exporting_settings(factory_timeout_s=0.2, factory_auto_remediate=False)
    async with running_api(settings) as api:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/throttle").raise_for_status()
        answer = await api.order(shop, headers=distinct())
        assert answer.status_code == 503
        order_id = answer.json()["order"]["id"]
        await _fulfilled(api, shop, order_id)

    [request] = [s for s in receiver.spans if s.name == "POST /api/order"]
    assert _events(request)[PENDING]["pizza.outcome"] == "timeout"
    [create] = _of_order(receiver.spans, "pizza.create", order_id)
    assert create.parent_span_id == request.span_id
    assert _events(create)[FULFILLED] == {"pizza.order.id": order_id, "pizza.late_answer": True}
    assert create.status.code != Status.STATUS_CODE_ERROR


async def test_a_call_stopped_by_a_shutdown_says_it_was_interrupted(
    receiver: Received, factory: httpx.Client, exporting_settings: MakeSettings
) -> None:
    """The service stops while a factory call is in flight: the order stays pending (it is
    retried at the next start) and its pizza.create span says the call was interrupted,
    not that it failed."""
    settings = exporting_settings(factory_timeout_s=0.2, factory_auto_remediate=False)
    async with running_api(settings) as api:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/throttle").raise_for_status()  # answers after 0.5 s
        answer = await api.order(shop, headers=distinct())
        assert answer.status_code == 503
        order_id = answer.json()["order"]["id"]
        # Leaving the block stops the service with the call still waiting.

    [create] = _of_order(receiver.spans, "pizza.create", order_id)
    assert attributes(create)["pizza.outcome"] == "interrupted"
    assert create.status.code != Status.STATUS_CODE_ERROR


async def test_an_idle_minute_makes_no_parentless_database_traces(
    receiver: Received,
    factory: httpx.Client,
    exporting_settings: MakeSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A minute of idle polling, at a small real poll interval: every trace that exists
    has a named root, none is a lone database statement."""
    settings = exporting_settings(worker_idle_poll_s=0.05)
    async with running_api(settings) as api:
        store = api.services.store
        polls = 0
        real_stats = store.pending_stats

        async def counted_stats() -> PendingStats:
            nonlocal polls
            polls += 1
            return await real_stats()

        monkeypatch.setattr(store, "pending_stats", counted_stats)

        async def a_minute_of_polls() -> bool:
            return polls >= IDLE_CYCLES_PER_MINUTE

        await eventually(a_minute_of_polls, timeout_s=30)

    assert not receiver.errors
    traces: dict[bytes, list[Span]] = defaultdict(list)
    for span in receiver.spans:
        traces[span.trace_id].append(span)
    database_only = [
        sorted(s.name for s in members)
        for members in traces.values()
        if all("db.system" in attributes(s) for s in members)
    ]
    assert not database_only, f"{len(database_only)} database-only traces: {database_only[:5]}"
    roots = sorted({s.name for s in receiver.spans if not s.parent_span_id})
    assert roots == ["factory.probe", "pizza.startup", "pizza.startup.factory_state"]
