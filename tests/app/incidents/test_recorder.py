"""The recorder: a fault opens an incident, health closes it, a fault again soon after
reopens it, replicas share one; it reads the events' typed fields, never their
sentences (issues 6 and 9)."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import db
from app.incidents import Conditions, IncidentRecorder
from app.incidents.webhook import Build, WebhookPager
from app.models import EventKind, FactoryEvent, Incident
from clients.breaker import BreakerState
from tests.conftest import FACTORY_KEY, make_settings, running_api
from tests.utils.builders import Api
from tests.utils.clock import ManualClock
from tests.utils.incidents import (
    assert_impact,
    async_url,
    closed_incident,
    kinds,
    listed,
    position,
)
from tests.utils.orders import all_fulfilled, pending_orders
from tests.utils.waiting import eventually

HEALTHY = Conditions(breaker=BreakerState.CLOSED)
LINK = "https://f/api/support/***/report/fix-1"


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
        clock = ManualClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
        recorder = IncidentRecorder(sessions=sessions, clock=clock, reopen_window_s=300)
        down = Conditions(breaker=BreakerState.OPEN)

        async def fault() -> None:
            opening = await event(sessions, FactoryEvent.breaker("closed", "open"), clock.now())
            await recorder.on_event(opening, down)

        async def recovery() -> None:
            closing = await event(
                sessions, FactoryEvent.breaker("half_open", "closed"), clock.now()
            )
            await recorder.on_event(closing, HEALTHY)

        opened_at = clock.now()
        await fault()
        clock.advance(30)
        await recovery()
        [first] = await all_incidents(sessions)
        assert first.closed_at == clock.now()
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
        assert second.closed_at is None and second.opened_at == clock.now()

    async def test_an_event_with_nothing_open_and_nothing_recent_is_no_incident(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        clock = ManualClock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
        recorder = IncidentRecorder(sessions=sessions, clock=clock)
        await recorder.on_event(
            await event(sessions, FactoryEvent(kind="operator", detail="user 1: x"), clock.now()),
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


class TestTheRecorderReadsFields:
    async def test_not_the_sentence(
        self, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with httpx.AsyncClient() as http:
            pager = WebhookPager(http, "https://hooks.example/x")
            sent: list[tuple[str, Build]] = []

            def capture(incident_id: int, event: str, build: Build) -> None:
                sent.append((event, build))

            monkeypatch.setattr(pager, "send", capture)
            recorder = IncidentRecorder(sessions=sessions, pager=pager)
            down = Conditions(breaker=BreakerState.OPEN)
            # Worded unlike FactoryOps' sentences: only the fields can tell what happened.
            for event in (
                FactoryEvent(
                    kind=EventKind.BREAKER,
                    detail="opened after three failed calls",
                    breaker_from="closed",
                    breaker_to="open",
                ),
                FactoryEvent(kind=EventKind.LINK_DETECTED, detail=f"found {LINK}", link=LINK),
            ):
                async with sessions() as session:
                    session.add(event)
                    await session.commit()
                await recorder.on_event(event, down)

            async with sessions() as session:
                (incident,) = await session.exec(select(Incident))
            assert incident.trigger == "breaker" and incident.closed_at is None
            messages: dict[str, Any] = {event: await build() for event, build in sent}
            assert set(messages) == {"incident.opened", "incident.link_detected"}
            assert f"Remediation link: {LINK}." in messages["incident.link_detected"]["text"]
