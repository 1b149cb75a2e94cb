"""Failed sign-ins are throttled, per email and per client address (api.md, last section,
item 8: stricter than the reference). Each test fails on the reference's behaviour."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.config import Settings
from tests.conftest import make_settings, running_api
from tests.utils.builders import PASSWORD, Api
from tests.utils.clock import ManualClock
from tests.utils.users import sign_in


class TestItem08FailedSignInsAreThrottled:
    async def _fail(self, client: httpx.AsyncClient, email: str, **headers: str) -> int:
        answer = await client.put(
            "/api/auth", json={"email": email, "password": "wrong"}, headers=headers
        )
        return answer.status_code

    async def test_more_than_5_failures_for_one_email_are_a_429_with_retry_after(
        self, api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        victim = await api.register()
        bystander = await api.register()
        for _ in range(5):
            assert await self._fail(api.client, victim.email) == 404

        with caplog.at_level(logging.WARNING, logger="app.auth"):
            refused = await sign_in(api, victim.email)  # even with the right password

        assert refused.status_code == 429
        assert set(refused.json()) == {"message"}
        assert 1 <= int(refused.headers["retry-after"]) <= 300
        assert any(r.name == "app.auth" and "refused" in r.getMessage() for r in caplog.records)
        # Throttling one email does not lock out another.
        assert (await sign_in(api, bystander.email)).status_code == 200

    async def test_the_email_is_free_again_after_5_minutes(self, settings: Settings) -> None:
        clock = ManualClock(datetime.now(UTC))
        async with running_api(settings, clock=clock) as api:
            victim = await api.register()
            for _ in range(6):
                await self._fail(api.client, victim.email)
            assert (await sign_in(api, victim.email)).status_code == 429
            clock.advance(timedelta(minutes=4, seconds=59).total_seconds())
            assert (await sign_in(api, victim.email)).status_code == 429

            clock.advance(2.0)

            assert (await sign_in(api, victim.email)).status_code == 200

    async def test_30_failures_from_one_address_are_a_429_for_that_address_only(
        self, api: Api
    ) -> None:
        diner = await api.register()
        for n in range(30):
            # X-Forwarded-For from an untrusted peer is ignored: it does not help an attacker.
            assert (
                await self._fail(
                    api.client, f"guess{n}@jwt.com", **{"X-Forwarded-For": f"198.51.100.{n}"}
                )
                == 404
            )

        refused = await sign_in(api, diner.email)

        assert refused.status_code == 429
        assert "retry-after" in refused.headers
        elsewhere = httpx.ASGITransport(app=api.app, client=("10.0.0.9", 123))
        async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as other:
            answer = await other.put("/api/auth", json={"email": diner.email, "password": PASSWORD})
        assert answer.status_code == 200

    async def test_forwarded_for_is_believed_only_from_trusted_proxies(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, trusted_proxies=["127.0.0.1"])
        async with running_api(settings) as api:
            diner = await api.register()
            attacker = {"X-Forwarded-For": "203.0.113.7"}
            for n in range(30):
                await self._fail(api.client, f"guess{n}@jwt.com", **attacker)

            behind_proxy = await api.client.put(
                "/api/auth", json={"email": diner.email, "password": PASSWORD}, headers=attacker
            )
            neighbour = await api.client.put(
                "/api/auth",
                json={"email": diner.email, "password": PASSWORD},
                headers={"X-Forwarded-For": "203.0.113.8"},
            )
            untrusted = httpx.ASGITransport(app=api.app, client=("10.0.0.9", 123))
            async with httpx.AsyncClient(
                transport=untrusted, base_url="http://testserver"
            ) as direct:
                for n in range(30):
                    await self._fail(
                        direct, f"other{n}@jwt.com", **{"X-Forwarded-For": f"192.0.2.{n}"}
                    )
                spoofed = await direct.put(
                    "/api/auth",
                    json={"email": diner.email, "password": PASSWORD},
                    headers={"X-Forwarded-For": "192.0.2.200"},
                )

        assert behind_proxy.status_code == 429
        assert neighbour.status_code == 200
        assert spoofed.status_code == 429
