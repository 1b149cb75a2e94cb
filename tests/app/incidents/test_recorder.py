"""Incidents as data: each chaos mode replayed against the simulator leaves an incident
with its timeline and its impact; a flapping outage stays one incident (issue 6)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from app.incidents import Conditions, IncidentRecorder
from app.models import DinerOrder, FactoryEvent, Incident
from clients.breaker import BreakerState
from tests.conftest import FACTORY_KEY, make_settings, running_api
from tests.utils.builders import Api
from tests.utils.incidents import async_url, closed_incident, listed, when
from tests.utils.orders import all_fulfilled, pending_orders
from tests.utils.waiting import eventually

HEALTHY = Conditions(breaker=BreakerState.CLOSED)
PIZZA = Decimal("0.0038")  # the first menu item of `api.shop()`


def first_made(body: dict[str, Any]) -> datetime:
    """When the first order after the fault was fulfilled. Not necessarily after the
    remediation event: a call that timed out under load may still be answered with a
    pizza once the factory is fixed, a moment before the event is written."""
    return when(body["timeline"][position(body, "first_fulfilled_order")]["at"])


def kinds(body: dict[str, Any]) -> list[str]:
    return [entry["kind"] for entry in body["timeline"]]


def story(body: dict[str, Any]) -> str:
    """The timeline, one line an entry: what a failed assertion shows."""
    return "\n".join(f"{e['at']} {e['kind']}: {e['detail']}" for e in body["timeline"])


def position(body: dict[str, Any], kind: str, detail: str = "") -> int:
    """Index of the first timeline entry of `kind` whose detail contains `detail`."""
    for index, entry in enumerate(body["timeline"]):
        if entry["kind"] == kind and detail in entry["detail"]:
            return index
    raise AssertionError(f"no {kind} {detail!r} in {kinds(body)}")


async def orders_of(api: Api, ids: list[int]) -> list[DinerOrder]:
    async with api.services.sessions() as session:
        return list(await session.exec(select(DinerOrder).where(col(DinerOrder.id).in_(ids))))


async def assert_impact(api: Api, body: dict[str, Any], ids: list[int]) -> None:
    """The impact figures are exactly what the orders table says about these orders."""
    orders = await orders_of(api, ids)
    impact = body["impact"]
    assert impact["ordersAffected"] == len(ids)
    assert impact["fulfilledLate"] == len(ids)
    assert impact["pending"] == 0
    assert impact["failed"] == 0
    assert impact["customersAffected"] == 1
    assert impact["revenueDelayed"] == str(PIZZA * len(ids)).rstrip("0")
    assert Decimal(impact["revenueLost"]) == 0
    waits = {o.id: (o.finished_at - o.date).total_seconds() for o in orders if o.finished_at}
    longest = max(waits, key=lambda i: waits[i])
    assert impact["longestWaitOrderId"] == longest
    assert impact["longestWaitS"] == pytest.approx(waits[longest], abs=0.001)
    first = min(orders, key=lambda o: (o.deferred_at, o.id))
    assert body["timeline"][position(body, "first_failed_order")]["orderId"] == first.id
    assert first.deferred_at is not None
    assert when(body["startedAt"]) <= first.deferred_at


class TestFailChaos:
    async def test_the_timeline_tells_the_story_and_the_impact_counts_every_order(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        assert await listed(api, shop) == []
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        ids = await pending_orders(api, shop, 5)  # 3 fail and open the breaker, 2 refused

        [opened] = await listed(api, shop)
        assert opened["status"] == "open"
        # The link and the chaos the vendor record names (read at the same failed call)
        # race each other; either opens the incident.
        assert opened["trigger"] in ("link", "chaos")
        assert "unavailable" in opened["fault"] and "chaos monkey" in opened["fault"]
        assert FACTORY_KEY not in str(opened)

        asked = datetime.now(UTC)
        answer = await api.client.post("/factory/remediate", headers=shop.admin.headers)
        assert answer.json()["attempt"]["resolved"] is True
        await eventually(lambda: all_fulfilled(api, shop, ids))
        body = await closed_incident(api, shop)

        assert body["id"] == opened["id"]
        link = position(body, "link_detected")
        assert "/api/support/***/report/" in body["timeline"][link]["detail"]
        assert position(body, "first_failed_order") < position(body, "breaker", "closed -> open")
        assert link < position(body, "breaker", "closed -> open")
        remediation = position(body, "remediation")
        assert body["timeline"][remediation]["by"] == f"{shop.admin.name} (user {shop.admin.id})"
        assert position(body, "breaker", "closed -> open") < remediation
        assert remediation < position(body, "breaker", "-> closed")
        assert first_made(body) >= asked, story(body)
        assert position(body, "breaker", "-> closed") < position(body, "incident", "closed")
        [attempt] = body["remediationAttempts"]
        assert attempt["mode"] == "manual" and attempt["resolved"] is True
        assert attempt["by"] == f"{shop.admin.name} (user {shop.admin.id})"
        times = [when(entry["at"]) for entry in body["timeline"]]
        assert times == sorted(times)
        assert all(entry["at"].endswith("Z") for entry in body["timeline"])

        await assert_impact(api, body, ids)
        assert body["timeToMitigateS"] == pytest.approx(
            (when(body["closedAt"]) - when(body["startedAt"])).total_seconds(), abs=0.001
        )


class TestThrottleChaos:
    async def test_the_late_pizza_is_fulfilled_late_and_detection_lags_the_first_failure(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        # The simulator answers after 0.5 s; the customer waits 0.2 s. Auto-remediation on.
        settings = make_settings(database_url, factory_url, factory_timeout_s=0.2)
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/throttle").raise_for_status()
            ids = await pending_orders(api, shop, 1)
            body = await closed_incident(api, shop)

            # The link only comes with the late answer, about 0.3 s after the customer was
            # told "pending"; the vendor record, read at the timed-out call, says so first.
            assert body["trigger"] == "chaos"
            assert "throttle" in body["fault"]
            assert position(body, "chaos_reported") < position(body, "link_detected")
            assert position(body, "first_failed_order") < position(body, "link_detected")
            assert 0.0 <= body["timeToDetectS"] < 5
            [attempt] = body["remediationAttempts"]
            assert attempt["mode"] == "auto" and attempt["by"] == "the service"
            assert attempt["resolved"] is True
            assert "breaker" not in kinds(body)  # one timeout never opened it
            await assert_impact(api, body, ids)


class TestBadJwtChaos:
    async def test_a_pizza_that_did_not_verify_is_an_affected_order(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/badjwt").raise_for_status()
        ids = await pending_orders(api, shop, 1)
        [opened] = await listed(api, shop)
        assert "bad_jwt" in opened["fault"]
        asked = datetime.now(UTC)
        await api.client.post("/factory/remediate", headers=shop.admin.headers)
        await eventually(lambda: all_fulfilled(api, shop, ids))
        body = await closed_incident(api, shop)
        # The breaker never opened: the resolved link alone closes the incident, and the
        # retry worker makes the order (just before or just after the close).
        assert position(body, "remediation") < position(body, "incident", "closed")
        assert first_made(body) >= asked, story(body)
        assert "breaker" not in kinds(body)
        await assert_impact(api, body, ids)


class TestUnauthorized:
    async def test_a_refused_key_opens_an_incident_until_the_key_works(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        settings = make_settings(database_url, factory_url, factory_api_key="not-the-key")
        async with running_api(settings) as api:
            shop = await api.shop()
            await api.services.ops.probe()
            ids = await pending_orders(api, shop, 2)
            [opened] = await listed(api, shop)
            assert opened["trigger"] == "unauthorized"
            assert "FACTORY_API_KEY" in opened["fault"]
            assert opened["impact"]["ordersAffected"] == 2
            assert opened["impact"]["pending"] == 2

            monkeypatch.setattr(api.services.factory, "_api_key", FACTORY_KEY)
            await api.services.ops.probe()
            api.services.worker.wake()
            await eventually(lambda: all_fulfilled(api, shop, ids))
            body = await closed_incident(api, shop)
            assert position(body, "config_fault") < position(body, "config_fault_cleared")
            assert body["impact"]["fulfilledLate"] == 2


class TestFlapping:
    async def test_a_fault_again_soon_after_the_close_reopens_the_same_incident(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        ids: list[int] = []
        for _ in range(2):  # auto-remediation ends each one
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            ids += await pending_orders(api, shop, 1)
            await eventually(functools.partial(all_fulfilled, api, shop, list(ids)))
            await closed_incident(api, shop)
        body = await closed_incident(api, shop)
        assert body["reopened"] == 1
        assert kinds(body).count("link_detected") == 2
        assert len(body["remediationAttempts"]) == 2
        await assert_impact(api, body, ids)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The schema on a fresh database, without a running service."""
    engine = db.create_engine(async_url(database_url))
    await db.migrate(engine)
    try:
        yield db.session_factory(engine)
    finally:
        await engine.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


async def event(
    sessions: async_sessionmaker[AsyncSession], stored: FactoryEvent, at: datetime
) -> FactoryEvent:
    """A factory event stored as FactoryOps stores it."""
    stored.at = at
    async with sessions() as session:
        session.add(stored)
        await session.commit()
    return stored


async def all_incidents(sessions: async_sessionmaker[AsyncSession]) -> list[Incident]:
    async with sessions() as session:
        return list(await session.exec(select(Incident).order_by(col(Incident.id))))


class TestTheFlapWindow:
    async def test_within_the_window_it_reopens_after_it_a_new_incident_opens(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        clock = Clock()
        recorder = IncidentRecorder(sessions=sessions, clock=clock, reopen_window_s=300)
        down = Conditions(breaker=BreakerState.OPEN)

        async def fault() -> None:
            opening = await event(sessions, FactoryEvent.breaker("closed", "open"), clock())
            await recorder.on_event(opening, down)

        async def recovery() -> None:
            closing = await event(sessions, FactoryEvent.breaker("half_open", "closed"), clock())
            await recorder.on_event(closing, HEALTHY)

        opened_at = clock()
        await fault()
        clock.advance(30)
        await recovery()
        [first] = await all_incidents(sessions)
        assert first.closed_at == clock.now
        assert first.opened_at == first.started_at == opened_at

        clock.advance(299)  # flapping: one incident
        await fault()
        [first] = await all_incidents(sessions)
        assert first.closed_at is None and first.reopened == 1
        clock.advance(10)
        await recovery()

        clock.advance(301)  # a new outage
        await fault()
        first, second = await all_incidents(sessions)
        assert first.closed_at is not None and first.opened_at == opened_at
        assert second.closed_at is None and second.opened_at == clock.now

    async def test_an_event_with_nothing_open_and_nothing_recent_is_no_incident(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        clock = Clock()
        recorder = IncidentRecorder(sessions=sessions, clock=clock)
        await recorder.on_event(
            await event(sessions, FactoryEvent(kind="operator", detail="user 1: x"), clock()),
            HEALTHY,
        )
        assert await all_incidents(sessions) == []


class TestReplicas:
    async def test_two_replicas_that_see_one_fault_at_once_open_one_incident(
        self, database_url: str, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        other_engine = db.create_engine(async_url(database_url))
        try:
            replicas = [
                IncidentRecorder(sessions=sessions),
                IncidentRecorder(sessions=db.session_factory(other_engine)),
            ]
            now = datetime.now(UTC)
            events = [
                await event(
                    sessions,
                    FactoryEvent.link_detected("https://f/api/support/***/report/x", "fail"),
                    now,
                ),
                await event(sessions, FactoryEvent.breaker("closed", "open"), now),
            ]
            down = Conditions(breaker=BreakerState.OPEN)
            await asyncio.gather(
                *(r.on_event(e, down) for r, e in zip(replicas, events, strict=True))
            )
            [only] = await all_incidents(sessions)
            async with sessions() as session:
                tagged = list(
                    await session.exec(
                        select(FactoryEvent).where(FactoryEvent.incident_id == only.id)
                    )
                )
            assert {e.kind for e in tagged} >= {"link_detected", "breaker"}
            [note] = [e.detail for e in tagged if e.kind == "incident"]
            assert note.startswith("opened")
        finally:
            await other_engine.dispose()


class TestOperatorSurface:
    async def test_incidents_are_for_admins_only_and_unknown_ids_are_404(self, api: Api) -> None:
        shop = await api.shop()
        assert (await api.client.get("/factory/incidents")).status_code == 401
        diner = shop.diner.headers
        assert (await api.client.get("/factory/incidents", headers=diner)).status_code == 403
        assert (await api.client.get("/factory/incidents/1", headers=diner)).status_code == 403
        admin = shop.admin.headers
        assert (await api.client.get("/factory/incidents/1", headers=admin)).status_code == 404
        answer = await api.client.get("/factory/incidents/1/report", headers=admin)
        assert answer.status_code == 404
        assert answer.json() == {"message": "no incident 1"}

    async def test_the_status_page_lists_them(self, api: Api) -> None:
        page = await api.client.get("/factory/status", headers={"accept": "text/html"})
        assert '<tbody id="incidents">' in page.text
        assert "/factory/incidents?limit=" in page.text
