"""GET /factory/incidents lists with a bounded number of statements: it used to
load the full view (timeline included) of each listed incident, seven queries apiece."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import Incident
from tests.utils.builders import Api, Shop
from tests.utils.incidents import closed_incident, listed, when
from tests.utils.orders import all_fulfilled, pending_orders
from tests.utils.waiting import eventually


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Statements run for this task's requests (ASGITransport runs the app in the caller's
    task); the worker's and the probe's own cycles, in their tasks, are not counted."""
    seen: list[str] = []
    me = asyncio.current_task()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if asyncio.current_task() is me:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def listing_statements(api: Api, shop: Shop) -> tuple[int, list[dict[str, Any]]]:
    with statements(api.services.engine) as seen:
        found = await listed(api, shop)
    return len(seen), found


def without_as_of(impact: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in impact.items() if k != "asOf"}


class TestIncidentListing:
    async def test_twenty_incidents_cost_no_more_statements_than_one(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        ids = await pending_orders(api, shop, 3)
        await api.client.post("/factory/remediate", headers=shop.admin.headers)
        await eventually(lambda: all_fulfilled(api, shop, ids))
        real = await closed_incident(api, shop)

        one, found = await listing_statements(api, shop)
        assert [item["id"] for item in found] == [real["id"]]

        # Nineteen more closed incidents over the same window: the same three orders each.
        async with api.services.sessions() as session:
            for _ in range(19):
                session.add(
                    Incident(
                        opened_at=when(real["openedAt"]),
                        started_at=when(real["startedAt"]),
                        closed_at=when(real["closedAt"]),
                        trigger=real["trigger"],
                        fault=real["fault"],
                    )
                )
            await session.commit()

        twenty, found = await listing_statements(api, shop)
        assert len(found) == 20
        assert twenty == one, f"{one} statements for 1 incident, {twenty} for 20"
        # Fewer statements, same figures: each listed impact is the incident's own.
        assert real["impact"]["ordersAffected"] == 3
        for item in found:
            assert without_as_of(item["impact"]) == without_as_of(real["impact"])
            assert "timeline" not in item


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
