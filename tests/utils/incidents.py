"""Reading incidents the way an operator does (GET /factory/incidents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.config import Settings
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


async def closed_incident(api: Api, shop: Shop) -> dict[str, Any]:
    """The one incident, once it has closed and every affected order is made."""

    async def probe() -> dict[str, Any] | None:
        found = await listed(api, shop)
        assert len(found) <= 1, found
        if not found:
            return None
        body = await incident(api, shop, found[0]["id"])
        done = body["status"] == "closed" and body["impact"]["pending"] == 0
        return body if done else None

    found = await eventually(probe)
    assert found is not None
    return found
