"""The factory misbehaves; customers, the breaker, the status page and the orders cope.

Against the simulator over real HTTP: outcomes, the breaker, remediation and pending orders
as docs/resilience.md describes them.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.models import DinerOrder
from app.sql.rows import StoreError, StoreUnavailable
from clients.schemas import Outcome
from factory_sim import SimulatorConfig, create_simulator_app
from telemetry.logging import configure_logging
from tests.conftest import FACTORY_KEY, make_settings, running_api
from tests.utils.builders import Api
from tests.utils.clock import ManualClock
from tests.utils.orders import (
    all_fulfilled,
    distinct,
    in_history,
    order_status,
    pending_orders,
    status,
)
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.simulator import end_chaos
from tests.utils.waiting import eventually


class TestFailChaos:
    async def test_orders_are_kept_breaker_opens_and_the_link_reaches_the_operator(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()

        ids = await pending_orders(api, shop, 3)
        state = await status(api, shop)
        assert state["breaker"]["state"] == "open"
        # Three customer calls, perhaps a worker retry between them: all failures.
        assert set(state["recentOutcomes"]) == {"unavailable"}
        assert state["recentOutcomes"]["unavailable"] >= 3
        assert state["lastFailure"]["outcome"] == "unavailable"
        link = state["remediation"]["link"]
        assert link.startswith("https://127.0.0.1/api/support/" + FACTORY_KEY + "/report/")
        assert state["pending"]["count"] == 3

        # While open, an order costs no factory call and no wait.
        calls_before = factory.get("/api/sim/stats").json()["calls"]
        ids += await pending_orders(api, shop, 2)
        await api.services.worker.run_once()
        assert factory.get("/api/sim/stats").json()["calls"] == calls_before

        # The operator follows the link from the server: the factory is fixed, the breaker
        # goes half-open, the worker's probe closes it and every order is made.
        answer = await api.client.post("/factory/remediate", headers=shop.admin.headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["attempt"]["resolved"] is True
        await eventually(lambda: all_fulfilled(api, shop, ids))
        state = await status(api, shop)
        assert state["breaker"]["state"] == "closed"
        assert state["remediation"]["link"] is None
        assert state["pending"]["count"] == 0
        kinds = [event["kind"] for event in state["history"]]
        assert "link_detected" in kinds and "remediation" in kinds and "breaker" in kinds
        assert state["remediation"]["attempts"][0]["mode"] == "manual"

    async def test_auto_remediation_ends_the_chaos_without_a_person(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        ids = await pending_orders(api, shop, 1)
        await eventually(lambda: all_fulfilled(api, shop, ids))
        state = await status(api, shop)
        assert state["remediation"]["attempts"][0]["mode"] == "auto"
        assert state["remediation"]["attempts"][0]["resolved"] is True
        # Fixed: the factory keeps the chaos as type none, with its fix date.
        fixed = factory.get("/api/vendor").json()["chaos"]
        assert (fixed["type"], bool(fixed["fixDate"])) == ("none", True)
        answer = await api.order(shop)
        assert answer.status_code == 200


class TestBadJwtChaos:
    async def test_a_pizza_that_does_not_verify_never_reaches_the_customer(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/badjwt").raise_for_status()
        ids = await pending_orders(api, shop, 1)
        order = (await api.client.get(f"/api/order/{ids[0]}", headers=shop.diner.headers)).json()
        assert order["jwt"] is None
        state = await status(api, shop)
        assert state["lastFailure"]["outcome"] == "bad_jwt"
        assert state["remediation"]["link"] is not None
        await api.client.post("/factory/remediate", headers=shop.admin.headers)
        await eventually(lambda: all_fulfilled(api, shop, ids))
        made = (await api.client.get(f"/api/order/{ids[0]}", headers=shop.diner.headers)).json()
        verified = factory.post("/api/order/verify", json={"jwt": made["jwt"]})
        assert verified.status_code == 200


class TestThrottleChaos:
    async def test_the_late_answer_still_makes_the_pizza_and_shows_the_link(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        # The simulator answers after 0.5 s; the customer waits 0.2 s.
        settings = make_settings(
            database_url, factory_url, factory_timeout_s=0.2, factory_auto_remediate=False
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/throttle").raise_for_status()
            ids = await pending_orders(api, shop, 1)
            await eventually(lambda: all_fulfilled(api, shop, ids))

            async def link_shown() -> bool:
                # The pizza is stored first; the link it carried is recorded just after.
                return (await status(api, shop))["remediation"]["link"] is not None

            await eventually(link_shown)
            state = await status(api, shop)
            # Counted once, as the timeout the customer saw, not again as the late answer.
            assert state["recentOutcomes"] == {"timeout": 1}
            assert state["breaker"]["state"] == "closed"


class TestFactoryAnswersThatAreNotChaos:
    async def test_hang_is_a_timeout_and_the_order_waits(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(
            database_url, factory_url, factory_timeout_s=0.2, factory_call_max_s=0.4
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/hang").raise_for_status()
            ids = await pending_orders(api, shop, 1)
            state = await status(api, shop)
            assert set(state["recentOutcomes"]) == {"timeout"}
            assert state["lastFailure"]["outcome"] == "timeout"
            end_chaos(factory)
            await eventually(lambda: all_fulfilled(api, shop, ids))

    async def test_body_that_is_not_json_is_unavailable(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        factory.put("/api/vendor/chaos/notjson").raise_for_status()
        ids = await pending_orders(api, shop, 1)
        assert (await status(api, shop))["lastFailure"]["outcome"] == "unavailable"
        end_chaos(factory)
        await eventually(lambda: all_fulfilled(api, shop, ids))

    async def test_refused_connection_keeps_the_order(
        self, database_url: str, factory: httpx.Client
    ) -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        settings = make_settings(database_url, dead, breaker_fail_max=2)
        async with running_api(settings) as api:
            shop = await api.shop()
            ids = await pending_orders(api, shop, 2)
            state = await status(api, shop)
            assert state["lastFailure"]["outcome"] == "unavailable"
            assert state["breaker"]["state"] == "open"
            assert await order_status(api, shop, ids[0]) == "pending"

    async def test_oven_full_is_rejected_failed_and_never_retried(
        self, api: Api, factory: httpx.Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shop = await api.shop()
        client = api.services.factory
        original = client.create_pizza

        async def empty_order(diner: Any, order: Any, *, timeout_s: float) -> Any:
            # Only a bug here could send the factory an order without items.
            return await original(diner, dataclasses.replace(order, items=()), timeout_s=timeout_s)

        monkeypatch.setattr(client, "create_pizza", empty_order)
        answer = await api.order(shop)
        assert answer.status_code == 502
        assert answer.json()["order"]["status"] == "failed"
        assert "refused" in answer.json()["message"]
        state = await status(api, shop)
        assert state["breaker"]["state"] == "closed"
        assert state["pending"]["count"] == 0

    async def test_wrong_api_key_is_a_configuration_fault_shown_to_operators(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        settings = make_settings(database_url, factory_url, factory_api_key="not-the-key")
        async with running_api(settings) as api:
            shop = await api.shop()
            await api.services.ops.probe()
            state = await status(api, shop)
            assert "FACTORY_API_KEY" in state["configuration"]["fault"]
            ids = await pending_orders(api, shop, 2)
            # Not retried as if the factory were down: no call while the key is refused.
            calls = factory.get("/api/sim/stats").json()["calls"]
            await api.services.worker.run_once()
            assert factory.get("/api/sim/stats").json()["calls"] == calls
            assert await order_status(api, shop, ids[0]) == "pending"


class TestOperatorControls:
    async def test_forced_open_holds_until_handed_back(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        answer = await api.client.put(
            "/factory/breaker", headers=shop.admin.headers, json={"state": "open"}
        )
        assert answer.json() == {"state": "forced_open", "forced": True}
        ids = await pending_orders(api, shop, 1)
        await api.services.worker.run_once()
        assert await order_status(api, shop, ids[0]) == "pending"
        await api.client.put("/factory/breaker", headers=shop.admin.headers, json={"state": "auto"})
        await eventually(lambda: all_fulfilled(api, shop, ids))

    async def test_operator_surface_is_for_admins_only(self, api: Api) -> None:
        shop = await api.shop()
        assert (await api.client.get("/factory/status")).status_code == 401
        diner = shop.diner.headers
        assert (await api.client.get("/factory/status", headers=diner)).status_code == 403
        assert (await api.client.post("/factory/remediate", headers=diner)).status_code == 403
        answer = await api.client.put("/factory/breaker", headers=diner, json={"state": "open"})
        assert answer.status_code == 403
        answer = await api.client.put(
            "/factory/breaker", headers=shop.admin.headers, json={"state": "sideways"}
        )
        assert answer.status_code == 400
        answer = await api.client.post("/factory/remediate", headers=shop.admin.headers)
        assert answer.status_code == 404


class TestOrderLifetime:
    async def test_an_order_past_its_age_fails_and_is_not_charged(
        self, calm_settings: Settings, factory: httpx.Client
    ) -> None:
        clock = ManualClock(datetime.now(UTC))
        async with running_api(calm_settings, clock=clock) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            ids = await pending_orders(api, shop, 1)
            clock.advance(api.services.settings.order_max_age_s + 1)
            await api.services.worker.run_once()
            answer = await api.client.get(f"/api/order/{ids[0]}", headers=shop.diner.headers)
            assert answer.json()["status"] == "failed"
            listing = (await api.client.get("/api/franchise", headers=shop.admin.headers)).json()
            store = listing["franchises"][0]["stores"][0]
            assert store["totalRevenue"] == 0


class TestSecretsStayInside:
    async def test_no_answer_and_no_log_line_carries_the_factory_key_during_chaos(
        self, api: Api, factory: httpx.Client
    ) -> None:
        written = io.StringIO()
        services = api.services
        configure_logging(
            secrets=services.settings.secrets, telemetry=services.telemetry, stream=written
        )
        shop = await api.shop()
        answers = []
        for mode in ("fail", "badjwt", "notjson"):
            factory.put(f"/api/vendor/chaos/{mode}").raise_for_status()
            answer = await api.order(shop)
            answers.append(answer.text)
            answers.append((await api.client.get("/api/order", headers=shop.diner.headers)).text)
            answers.append((await api.client.get("/api/docs")).text)
        end_chaos(factory)
        for text in answers:
            assert FACTORY_KEY not in text
        log = written.getvalue()
        # The log really carries the detection (so the scan saw the link), but not the key.
        assert "remediation link detected" in log
        assert "/api/support/***/report/" in log
        assert FACTORY_KEY not in log


class TestStatusIsNeverCached:
    async def test_the_json_with_the_link_and_the_page_are_not_stored_by_caches(
        self, api: Api
    ) -> None:
        shop = await api.shop()
        answer = await api.client.get("/factory/status", headers=shop.admin.headers)
        assert answer.headers["cache-control"] == "no-store"
        assert "Accept" in answer.headers["vary"]
        page = await api.client.get("/factory/status", headers={"accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


class TestGracefulShutdown:
    async def test_an_interrupted_call_is_retried_at_once_after_a_restart(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        # The call may run 30 s; the customer waits 0.2 s. Shutdown interrupts the call.
        settings = make_settings(
            database_url, factory_url, factory_timeout_s=0.2, factory_call_max_s=30
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/hang").raise_for_status()
            ids = await pending_orders(api, shop, 1)
            assert api.services.orders.in_flight.calling() == set(ids)
        end_chaos(factory)
        async with running_api(settings) as api:
            # Not after the 35 s lease: the claim was handed back at shutdown.
            await eventually(lambda: all_fulfilled(api, shop, ids), timeout_s=10)

    async def test_a_release_the_database_refuses_is_said_and_the_shutdown_goes_on(
        self,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Seen once: SQLite's write lock stayed taken for its busy timeout at shutdown.
        The claims are then left to run out; the rest of the shutdown still happens."""
        async with running_api(settings) as api:
            services = api.services
            services.orders.in_flight.start_attempt(7)  # an attempt the shutdown interrupts

            async def locked(ids: list[int]) -> int:
                raise StoreUnavailable("OperationalError: database is locked")

            monkeypatch.setattr(services.store, "unclaim", locked)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("orders [7] keep their leases" in m for m in warnings), warnings
        assert services.factory_http.is_closed  # a later step of the shutdown ran


class TestLinksTheServiceMayNotFollow:
    @pytest.fixture
    def foreign_link_factory(self) -> Iterator[tuple[str, httpx.Client]]:
        """A factory whose links point at its operators' own host (docs/factory.md)."""
        config = SimulatorConfig(
            api_key=FACTORY_KEY,
            link_style="query",
            resolve_url="https://ops.vendor.example/resolve",
        )
        auth = {"Authorization": f"Bearer {FACTORY_KEY}"}
        with (
            serve_in_thread(create_simulator_app(config)) as url,
            httpx.Client(base_url=url, headers=auth) as vendor,
        ):
            yield url, vendor

    async def test_a_foreign_link_is_shown_never_fetched_and_ends_when_pizzas_flow(
        self, database_url: str, foreign_link_factory: tuple[str, httpx.Client]
    ) -> None:
        url, vendor = foreign_link_factory
        async with running_api(make_settings(database_url, url, breaker_fail_max=50)) as api:
            shop = await api.shop()
            vendor.put("/api/vendor/chaos/fail").raise_for_status()
            await pending_orders(api, shop, 1)
            state = await status(api, shop)
            assert state["remediation"]["link"].startswith(
                "https://ops.vendor.example/resolve?apiKey="
            )
            assert state["remediation"]["followable"] is False
            answer = await api.client.post("/factory/remediate", headers=shop.admin.headers)
            assert answer.json()["attempt"]["resolved"] is False
            assert "FACTORY_REMEDIATION_HOSTS" in answer.json()["attempt"]["message"]
            # A person follows it in their browser; the factory makes pizzas again.
            end_chaos(vendor)
            assert (await api.order(shop)).status_code == 200
            state = await status(api, shop)
            assert state["remediation"]["link"] is None
            assert await eventually(lambda: in_history(api, shop, "links_cleared"))


class TestLinksSeenAgain:
    async def test_a_link_seen_again_after_a_restart_is_stored_once_and_quietly(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        await pending_orders(api, shop, 1)
        ops = api.services.ops
        link = (await status(api, shop))["remediation"]["link"]
        ops.links._known_links.clear()  # what a restarted process (or another replica) knows
        await ops.links.record(link, Outcome.UNAVAILABLE)
        state = await status(api, shop)
        # As the service follows it (FACTORY_URL's scheme, host and port), key masked.
        followed = state["remediation"]["followUrl"]
        assert [item["link"] for item in state["remediation"]["links"]] == [
            followed.replace(FACTORY_KEY, "***")
        ]
        assert [e["kind"] for e in state["history"]].count("link_detected") == 1


class TestAddressesCarryNoCredentials:
    def test_factory_url_with_user_and_password_is_refused(self) -> None:
        with pytest.raises(ValueError, match="credentials"):
            make_settings("sqlite:///x.db", "http://user:pw@127.0.0.1:3100")


class TestOurOwnDatabaseFailing:
    async def test_a_database_error_after_the_factory_answered_is_no_factory_failure(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        settings = make_settings(database_url, factory_url, breaker_fail_max=2)
        async with running_api(settings) as api:
            shop = await api.shop()

            async def locked(*args: Any, **kwargs: Any) -> Any:
                raise StoreError("OperationalError: database is locked")

            monkeypatch.setattr(api.services.orders, "_record", locked)
            answers = [await api.order(shop, headers=distinct()) for _ in range(3)]
            # The order is stored: the customer hears "pending", never a 500.
            assert [a.status_code for a in answers] == [503] * 3
            # The factory made the pizzas: the breaker has no reason to open.
            assert (await status(api, shop))["breaker"]["state"] == "closed"


class TestFailedOrdersSayWhy:
    async def test_an_order_failed_by_a_store_deletion_says_so(
        self, manual_api: Api, factory: httpx.Client
    ) -> None:
        api = manual_api
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        key = {"Idempotency-Key": "store-goes-away"}
        assert (await api.order(shop, headers=key)).status_code == 503
        path = f"/api/franchise/{shop.franchise['id']}/store/{shop.store['id']}"
        assert (await api.client.delete(path, headers=shop.admin.headers)).status_code == 200
        replay = await api.order(shop, headers=key)
        assert replay.status_code == 502
        assert replay.json()["order"]["status"] == "failed"
        assert "store deleted" in replay.json()["message"]
        assert "refused" not in replay.json()["message"]


class TestClaimLeases:
    """A claim is short and renewed while its call runs, so that a replica that dies
    leaves its orders to the others soon; the clock is moved, not slept."""

    async def test_a_claim_is_renewed_while_its_call_runs_and_ends_soon_without(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(
            database_url, factory_url, factory_timeout_s=0.2, factory_call_max_s=60
        )
        clock = ManualClock(datetime.now(UTC))
        async with running_api(settings, clock=clock) as api:
            shop = await api.shop()
            factory.put("/api/vendor/chaos/hang").raise_for_status()
            [order_id] = await pending_orders(api, shop, 1)
            assert api.services.orders.in_flight.calling() == {order_id}
            placed = (await claimed_until(api, order_id)) - clock.now()
            # Not FACTORY_CALL_MAX_S (60 s) + a margin: a dead replica's claim ends soon.
            assert placed <= timedelta(seconds=settings.claim_lease_s)

            clock.advance(50)  # the call is still running then
            assert await api.services.orders.leases.renew_once() == 1
            assert await claimed_until(api, order_id) == clock.now() + timedelta(
                seconds=settings.claim_lease_s
            )
            end_chaos(factory)


async def claimed_until(api: Api, order_id: int) -> datetime:
    async with api.services.sessions() as session:
        order = await session.get(DinerOrder, order_id)
    assert order is not None and order.claimed_until is not None
    return order.claimed_until


class TestAPizzaMadeWhileTheDatabaseIsAway:
    async def test_is_stored_when_the_database_is_back_and_not_made_again(
        self, api: Api, factory: httpx.Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Found by pizza soak: the factory made the pizza during a PostgreSQL restart;
        the answer is kept and stored once the database answers, instead of the order
        being made a second time after its lease."""
        shop = await api.shop()
        store = api.services.store
        real_fulfil = store.fulfil
        refusals = [StoreError("ConnectionRefusedError: [Errno 111] Connection refused")] * 3

        async def fulfil_after_an_outage(order_id: int, jwt: str, now: datetime) -> bool:
            if refusals:
                raise refusals.pop()
            return await real_fulfil(order_id, jwt, now)

        monkeypatch.setattr(store, "fulfil", fulfil_after_an_outage)
        before = factory.get("/api/sim/stats").json()  # one simulator for every test
        answer = await api.order(shop)
        assert answer.status_code == 503, answer.text  # kept pending: not stored yet
        order_id = str(answer.json()["order"]["id"])
        await eventually(lambda: all_fulfilled(api, shop, [int(order_id)]))
        after = factory.get("/api/sim/stats").json()
        assert after["pizzas"][order_id] - before["pizzas"].get(order_id, 0) == 1
        assert after["calls"] == before["calls"] + 1
