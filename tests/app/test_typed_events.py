"""Factory events carry their meaning in typed fields; the sentence in `detail` is for
people and is never parsed back (issue 9)."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from tests.conftest import FACTORY_KEY
from tests.utils.builders import Api
from tests.utils.incidents import async_url
from tests.utils.orders import pending_orders
from tests.utils.waiting import eventually

LINK = "https://f/api/support/***/report/fix-1"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(async_url(database_url))
    await db.migrate(engine)
    try:
        yield db.session_factory(engine)
    finally:
        await engine.dispose()


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


class TestFactoryOpsStoresFields:
    async def test_breaker_and_link_events_carry_their_states_and_the_redacted_link(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        await pending_orders(api, shop, 3)  # three failures open the breaker

        async def both() -> list[FactoryEvent]:
            # Written by the operators' bookkeeping after each answer, not awaited by it.
            async with api.services.sessions() as session:
                found = list(
                    await session.exec(select(FactoryEvent).order_by(col(FactoryEvent.id)))
                )
            kinds = {e.kind for e in found}
            return found if {EventKind.BREAKER, EventKind.LINK_DETECTED} <= kinds else []

        events = await eventually(both)
        (opened,) = [e for e in events if e.kind == EventKind.BREAKER]
        assert (opened.breaker_from, opened.breaker_to) == ("closed", "open")
        (found,) = [e for e in events if e.kind == EventKind.LINK_DETECTED]
        assert found.link is not None
        assert found.link.startswith("https://127.0.0.1/api/support/***/report/")
        assert FACTORY_KEY not in found.link
        # The sentence stays, for the history and the timeline.
        assert found.detail.startswith(found.link)
