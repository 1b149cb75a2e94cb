"""A remediation is recorded as done only once the breaker lets a probe in
(app/factory/links.py): whoever reads it done (an operator, the orders it frees, another
replica's watch) never finds it behind a breaker that still refuses every call. On the
timeline the remediation comes before the breaker changes it causes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.models import RemediationAttempt
from clients.breaker import BreakerState
from tests.utils.builders import Api
from tests.utils.incidents import closed_incident, position, story
from tests.utils.orders import pending_orders, status
from tests.utils.waiting import eventually


@pytest.fixture
def breaker_when_recorded(manual_api: Api) -> Iterator[list[BreakerState]]:
    """The service's breaker state each time a resolved remediation reaches the
    database, read in the very flush that writes it."""
    seen: list[BreakerState] = []
    breaker = manual_api.services.breaker

    def on_flush(session: Session, _context: Any) -> None:
        for row in session.new:
            if isinstance(row, RemediationAttempt) and row.resolved:
                seen.append(breaker.state)

    event.listen(Session, "after_flush", on_flush)
    try:
        yield seen
    finally:
        event.remove(Session, "after_flush", on_flush)


async def test_a_resolved_remediation_is_recorded_after_the_breaker_half_opens(
    manual_api: Api, factory: httpx.Client, breaker_when_recorded: list[BreakerState]
) -> None:
    api = manual_api
    shop = await api.shop()
    factory.put("/api/vendor/chaos/fail").raise_for_status()
    await pending_orders(api, shop, 3)  # fail_max=3: open, with a link to follow
    assert api.services.breaker.state is BreakerState.OPEN

    fixed = await api.client.post("/factory/remediate", headers=shop.admin.headers)

    assert fixed.json()["attempt"]["resolved"] is True
    # Half-open, or already closed: the retry worker may have sent a due order through
    # as the probe, and the fixed factory made it, before the flush.
    assert breaker_when_recorded in ([BreakerState.HALF_OPEN], [BreakerState.CLOSED])


async def test_the_timeline_puts_the_remediation_before_the_breaker_changes_it_causes(
    manual_api: Api, factory: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the retry worker's probe closes the breaker before the remediation is
    written down: the half-open step here waits for that close."""
    api = manual_api
    shop = await api.shop()
    factory.put("/api/vendor/chaos/fail").raise_for_status()
    await pending_orders(api, shop, 3)  # fail_max=3: open, with a link to follow
    breaker = api.services.breaker
    half_open = breaker.half_open

    async def closed() -> bool:
        return breaker.state is BreakerState.CLOSED

    async def half_open_until_a_probe_closes_it() -> None:
        await half_open()
        await eventually(closed)

    monkeypatch.setattr(breaker, "half_open", half_open_until_a_probe_closes_it)
    fixed = await api.client.post("/factory/remediate", headers=shop.admin.headers)
    assert fixed.json()["attempt"]["resolved"] is True

    body = await closed_incident(api, shop)
    remediation = position(body, "remediation")
    half_opened = position(body, "breaker", "open -> half_open")
    assert remediation < half_opened < position(body, "breaker", "half_open -> closed"), story(body)
    # The status page's history, newest first, agrees.
    history = [(e["kind"], e["detail"]) for e in (await status(api, shop))["history"]]
    closed_at = history.index(("breaker", "half_open -> closed"))
    half_opened_at = history.index(("breaker", "open -> half_open"))
    [remediated_at] = [i for i, (kind, _) in enumerate(history) if kind == "remediation"]
    assert closed_at < half_opened_at < remediated_at, history
