"""Incidents as people read them: each chaos mode replayed against the simulator leaves an
incident whose timeline tells the story and whose impact counts every order
(docs/resilience.md#incidents)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import FACTORY_KEY, make_settings, running_api
from tests.utils.builders import Api
from tests.utils.incidents import (
    assert_impact,
    closed_incident,
    first_made,
    incident,
    kinds,
    listed,
    position,
    story,
    when,
)
from tests.utils.orders import all_fulfilled, pending_orders
from tests.utils.waiting import eventually


class TestFailChaos:
    async def test_the_timeline_tells_the_story_and_the_impact_counts_every_order(
        self, manual_api: Api, factory: httpx.Client, factory_url: str
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
        # The link as the service follows it (at FACTORY_URL), key masked.
        followed = f"{factory_url}/api/support/***/report/"
        assert body["timeline"][link]["detail"].startswith(followed)
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
        assert attempt["link"].startswith(followed)
        assert attempt["by"] == f"{shop.admin.name} (user {shop.admin.id})"
        times = [when(entry["at"]) for entry in body["timeline"]]
        assert times == sorted(times)
        assert all(entry["at"].endswith("Z") for entry in body["timeline"])

        await assert_impact(api, body, ids)
        # What the customer really got: 503 (the front end sends no Prefer: respond-async).
        first_failed = body["timeline"][position(body, "first_failed_order")]
        assert f"order {first_failed['orderId']} answered 503 (pending" in first_failed["detail"]
        assert "202" not in first_failed["detail"]
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
            # Told "pending" when its wait ended: a 503, as it sent no Prefer.
            first_failed = body["timeline"][position(body, "first_failed_order")]
            assert "answered 503 (pending" in first_failed["detail"]


class TestWhatTheCustomerWasAnswered:
    async def test_a_client_that_asked_for_respond_async_was_answered_202(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        placed = await api.order(shop, headers={"Prefer": "respond-async"})
        assert placed.status_code == 202, placed.text
        [opened] = await eventually(lambda: listed(api, shop))
        body = await incident(api, shop, opened["id"])
        first_failed = body["timeline"][position(body, "first_failed_order")]
        assert first_failed["orderId"] == placed.json()["order"]["id"]
        assert "answered 202 (pending" in first_failed["detail"]


class TestBadJwtChaos:
    async def test_a_pizza_that_did_not_verify_is_an_affected_order(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        # No retry before the operator acts, however slowly this test runs: three retries
        # of the order would open the breaker (BREAKER_FAIL_MAX 3) before the remediation.
        # The remediation brings the order's next attempt forward to now.
        settings = make_settings(
            database_url,
            factory_url,
            factory_auto_remediate=False,
            breaker_fail_max=3,
            breaker_reset_s=600,
            retry_base_s=600,
            retry_max_s=600,
        )
        async with running_api(settings) as api:
            await self._check(api, factory)

    async def _check(self, api: Api, factory: httpx.Client) -> None:
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
