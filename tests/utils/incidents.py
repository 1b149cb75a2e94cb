"""Reading incidents the way an operator does (GET /factory/incidents), checking what
their JSON says against the orders table, and a receiver for the pages they send."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import col, select

from app.config import Settings
from app.models import DinerOrder
from tests.utils.builders import Api, Shop
from tests.utils.waiting import eventually


def when(value: str) -> datetime:
    """A JSON time (ISO 8601, Z) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def async_url(database_url: str) -> str:
    """The URL as the service maps it to its async driver."""
    return Settings(_env_file=None, database_url=database_url).database_url  # type: ignore[call-arg]


async def listed(api: Api, shop: Shop) -> list[dict[str, Any]]:
    answer = await api.client.get("/factory/incidents", headers=shop.admin.headers)
    assert answer.status_code == 200, answer.text
    incidents: list[dict[str, Any]] = answer.json()["incidents"]
    return incidents


async def incident(api: Api, shop: Shop, incident_id: int) -> dict[str, Any]:
    answer = await api.client.get(f"/factory/incidents/{incident_id}", headers=shop.admin.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def only_incident(api: Api, shop: Shop) -> dict[str, Any] | None:
    """The one incident, read in full; None while there is none."""
    found = await listed(api, shop)
    assert len(found) <= 1, found
    return await incident(api, shop, found[0]["id"]) if found else None


async def closed_incident(api: Api, shop: Shop) -> dict[str, Any]:
    """The one incident, once it has closed and every affected order is made."""

    async def probe() -> dict[str, Any] | None:
        body = await only_incident(api, shop)
        done = body is not None and body["status"] == "closed" and body["impact"]["pending"] == 0
        return body if done else None

    found = await eventually(probe)
    assert found is not None
    return found


PIZZA = Decimal("0.0038")  # the first menu item of `api.shop()`


def first_made(body: dict[str, Any]) -> datetime:
    """When the first order after the fault was fulfilled. Not necessarily after the
    remediation event: a call that timed out under load may still be answered with a
    pizza once the factory is fixed, a moment before the event is timed."""
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


WEBHOOK_TOKEN = "T0-webhook-s3cr3t"  # in the receiver's URL: such URLs are credentials


@dataclass
class Receiver:
    """A webhook that keeps every message POSTed to it (ALERT_WEBHOOK_URL in tests)."""

    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def events(self) -> list[str]:
        return [m["event"] for m in self.messages]
