"""The Prometheus scrape behind METRICS_TOKEN, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import make_settings, running_api
from tests.utils.builders import Api

TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
async def guarded(database_url: str, factory_url: str, factory: httpx.Client) -> AsyncIterator[Api]:
    async with running_api(make_settings(database_url, factory_url, metrics_token=TOKEN)) as api:
        yield api


class TestMetricsToken:
    async def test_only_the_token_opens_the_scrape(self, guarded: Api) -> None:
        def scrape(token: str | None) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"} if token else {}

        client = guarded.client
        assert (await client.get("/metrics")).status_code == 401
        # Same length, last character wrong: refused like any other guess.
        wrong = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")
        assert (await client.get("/metrics", headers=scrape(wrong))).status_code == 401
        assert (await client.get("/metrics", headers=scrape(TOKEN[:-1]))).status_code == 401
        answer = await client.get("/metrics", headers=scrape(TOKEN))
        assert answer.status_code == 200
        assert "pizza_service_heartbeat" in answer.text

    async def test_the_comparison_takes_constant_time(
        self, guarded: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # `!=` stops at the first differing character: a timing oracle for the token.
        # hmac.compare_digest does not; spy on it to see that the guess goes through it.
        compared: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            compared.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        guess = "g" * len(TOKEN)
        answer = await guarded.client.get("/metrics", headers={"Authorization": f"Bearer {guess}"})
        assert answer.status_code == 401
        assert compared == [(guess.encode(), TOKEN.encode())]
