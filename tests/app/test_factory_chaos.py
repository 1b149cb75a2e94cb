"""Chaos the factory reports, known at once
(docs/resilience.md#chaos-the-factory-reports)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.factory.chaos import CHAOS_READ_MIN_S
from tests.conftest import make_settings, running_api
from tests.utils.builders import Api
from tests.utils.clock import ManualClock
from tests.utils.incidents import Receiver, kinds, listed, only_incident
from tests.utils.orders import all_fulfilled, in_history, pending_orders, status
from tests.utils.simulator import end_chaos
from tests.utils.waiting import eventually

TOMORROW_S = 16 * 3600  # the real factory schedules chaos for the next morning


@pytest.fixture
async def manual(database_url: str, factory_url: str) -> AsyncIterator[Api]:
    # A failed order waits for the remediation: no retry opens the breaker meanwhile.
    settings = make_settings(
        database_url,
        factory_url,
        factory_auto_remediate=False,
        retry_base_s=600,
        retry_max_s=600,
    )
    async with running_api(settings) as api:
        yield api


def chaos_metric(api: Api) -> dict[tuple[str, str], int]:
    observed = api.services.metrics._observe_chaos(None)  # type: ignore[arg-type]
    return {
        (str(o.attributes["type"]), str(o.attributes["phase"])): int(o.value)
        for o in observed
        if o.attributes
    }


class TestARunningChaos:
    async def test_is_read_at_the_first_failed_call_and_shown_everywhere(
        self, manual: Api, factory: httpx.Client
    ) -> None:
        api = manual
        shop = await api.shop()
        # Before any chaos every series exists, at 0.
        assert set(chaos_metric(api).values()) == {0}
        assert ("throttle", "scheduled") in chaos_metric(api)
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        await pending_orders(api, shop, 1)

        async def reported() -> dict[str, Any] | None:
            chaos: dict[str, Any] | None = (await status(api, shop))["chaos"]
            return chaos

        chaos = await eventually(reported, timeout_s=5)
        assert (chaos["type"], chaos["phase"]) == ("fail", "running")
        assert chaos["startDate"]

        async def reported_events() -> list[dict[str, Any]]:
            # The history is written beside the status, a moment after it.
            history = (await status(api, shop))["history"]
            return [e for e in history if e["kind"] == "chaos_reported"]

        [event] = await eventually(reported_events)
        assert event["detail"].startswith("running: the factory reports chaos fail running since")
        assert chaos_metric(api)[("fail", "running")] == 1

        async def on_the_incident() -> bool:
            # Tagged with the incident just after it is written to the history.
            body = await only_incident(api, shop)
            return body is not None and "chaos_reported" in kinds(body)

        assert await eventually(on_the_incident)

    async def test_is_recorded_once_however_often_it_is_read(
        self, manual: Api, factory: httpx.Client
    ) -> None:
        api = manual
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        for _ in range(3):
            await api.services.ops.probe()
        history = (await status(api, shop))["history"]
        assert [e["kind"] for e in history].count("chaos_reported") == 1

        end_chaos(factory)
        await api.services.ops.probe()
        now = await status(api, shop)
        assert now["chaos"] is None
        assert await eventually(lambda: in_history(api, shop, "chaos_cleared"))
        assert set(chaos_metric(api).values()) == {0}


async def reported_chaos(api: Api, shop: Any) -> dict[str, Any] | None:
    chaos: dict[str, Any] | None = (await status(api, shop))["chaos"]
    return chaos


class TestAFixedChaos:
    """The real factory keeps `{"type": "none", ..., "fixDate"}` after a fix (and the
    simulator answers as it does): that is no chaos, anywhere."""

    async def test_is_cleared_everywhere_and_the_incident_closes(
        self, manual: Api, factory: httpx.Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        api = manual
        shop = await api.shop()
        factory.put("/api/vendor/chaos/fail").raise_for_status()
        ids = await pending_orders(api, shop, 1)
        chaos = await eventually(lambda: reported_chaos(api, shop), timeout_s=5)
        assert (chaos["type"], chaos["phase"]) == ("fail", "running")
        # Both are logged at ERROR, each before its event is written: wait for the events.
        assert await eventually(lambda: in_history(api, shop, "link_detected"))
        assert await eventually(lambda: in_history(api, shop, "chaos_reported"))

        caplog.clear()
        with caplog.at_level(logging.WARNING):
            fixed = await api.client.post("/factory/remediate", headers=shop.admin.headers)
            assert fixed.json()["attempt"]["resolved"] is True
            assert factory.get("/api/vendor").json()["chaos"]["type"] == "none"
            await eventually(lambda: all_fulfilled(api, shop, ids))
            await api.services.ops.probe()  # the periodic read, which sees the fixed record

            now = await status(api, shop)
            assert now["chaos"] is None
            assert now["chaosScheduled"] is None
            assert set(chaos_metric(api).values()) == {0}
            assert await eventually(lambda: in_history(api, shop, "chaos_cleared"))

            async def closed_incidents() -> list[dict[str, Any]]:
                return [i for i in await listed(api, shop) if i["closedAt"] is not None]

            # The incident watch closes it on its next look, which a busy machine delays.
            [_incident] = await eventually(closed_incidents)
            assert len(await listed(api, shop)) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []

    @pytest.mark.parametrize(
        "record",
        [
            {"type": "none", "initiatedDate": "2026-01-01T08:00:00.000Z",
             "startDate": "2026-01-01T09:00:00.000Z", "fixDate": "2026-01-01T09:05:00.000Z"},
            {"type": "fail", "startDate": "2026-01-01T09:00:00.000Z",
             "fixDate": "2026-01-01T09:05:00.000Z"},
            {"type": "meteor", "startDate": "2026-01-01T09:00:00.000Z"},
        ],
        ids=["type none", "a fix date", "not a chaos type"],
    )  # fmt: skip
    async def test_a_record_that_is_no_chaos_ends_a_reported_one(
        self, manual: Api, record: dict[str, Any]
    ) -> None:
        api = manual
        shop = await api.shop()
        watch = api.services.ops.chaos
        await watch.news({"type": "fail", "startDate": "2026-01-01T09:00:00.000Z"})
        assert chaos_metric(api)[("fail", "running")] == 1

        await watch.news(record)

        assert (await status(api, shop))["chaos"] is None
        assert set(chaos_metric(api).values()) == {0}
        assert watch.seen is None


class TestReadingTheVendorRecord:
    async def test_happens_at_most_every_few_seconds_while_failures_go_on(
        self, database_url: str, factory_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        clock = ManualClock(datetime.now(UTC))
        settings = make_settings(database_url, factory_url, factory_auto_remediate=False)
        async with running_api(settings, clock=clock) as api:
            ops = api.services.ops
            reads: list[float] = []

            async def read() -> None:  # the read that a failure starts (not the periodic probe)
                reads.append(clock.monotonic())

            monkeypatch.setattr(ops, "_probe_logged", read)
            started = clock.monotonic()
            seconds = int(2 * CHAOS_READ_MIN_S) + 2
            for _ in range(seconds):  # a timed-out call every second
                ops.observe_timeout("timed out")
                await asyncio.sleep(0)  # the spawned read runs
                clock.advance(1.0)
        # The first at once, then one per CHAOS_READ_MIN_S: at 0, 5 and 10 s of 12.
        assert [at - started for at in reads] == [0.0, CHAOS_READ_MIN_S, 2 * CHAOS_READ_MIN_S]

    async def test_a_read_due_inside_the_window_is_made_when_the_window_allows(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        """A fail chaos that starts just after a read: its first failure opens the breaker,
        no call follows, and the vendor record is read when the window allows."""
        clock = ManualClock(datetime.now(UTC))
        settings = make_settings(
            database_url,
            factory_url,
            factory_auto_remediate=False,
            breaker_fail_max=1,
            breaker_reset_s=600,
        )
        async with running_api(settings, clock=clock) as api:
            shop = await api.shop()
            ops = api.services.ops
            ops.observe_timeout("no answer within 2 s")  # a read now: no chaos yet

            async def read_made() -> bool:
                return not ops._tasks

            await eventually(read_made)
            factory.put("/api/vendor/chaos/fail").raise_for_status()
            clock.advance(1.0)
            await pending_orders(api, shop, 1)  # fails, opens the breaker; no read yet
            assert api.services.breaker.state.value == "open"
            assert (await status(api, shop))["chaos"] is None

            clock.advance(CHAOS_READ_MIN_S)

            chaos = await eventually(lambda: reported_chaos(api, shop), timeout_s=5)
            assert (chaos["type"], chaos["phase"]) == ("fail", "running")


class TestAScheduledChaos:
    async def test_is_announced_before_it_strikes(
        self,
        database_url: str,
        factory_url: str,
        factory: httpx.Client,
        receiver: Receiver,
    ) -> None:
        settings = make_settings(
            database_url, factory_url, alert_webhook_url=receiver.url, factory_auto_remediate=False
        )
        async with running_api(settings) as api:
            shop = await api.shop()
            factory.put(
                "/api/vendor/chaos/fail", params={"start_delay_s": TOMORROW_S}
            ).raise_for_status()
            await api.services.ops.probe()  # the periodic read

            now = await status(api, shop)
            assert now["chaos"]["phase"] == "scheduled"
            assert now["chaos"]["type"] == "fail"
            assert chaos_metric(api)[("fail", "scheduled")] == 1
            assert any(
                e["kind"] == "chaos_reported" and "scheduled for" in e["detail"]
                for e in now["history"]
            )
            # Pizzas are still made: it has not struck yet.
            assert (await api.order(shop)).status_code == 200

            async def paged() -> bool:
                return "incident.chaos_reported" in receiver.events()

            await eventually(paged)
            [page] = [m for m in receiver.messages if m["event"] == "incident.chaos_reported"]
            assert "chaos fail scheduled for" in page["text"]
            end_chaos(factory)
