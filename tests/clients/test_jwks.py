"""The key-set cache: local RS256 verification with the claims in the protected header."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from clients.jwks import JwksCache
from tests.utils.clock import ManualClock

FACTORY = "http://factory.test"
JWKS_URL = f"{FACTORY}/.well-known/jwks.json"
NOW = 1_733_400_000.0  # 2024-12-05, the incident's day
DAY_S = 24 * 3600
PIZZA = {
    "vendor": {"id": "v1", "name": "pizza shop"},
    "diner": {"id": 719, "name": "j", "email": "j@jwt.com"},
    "order": {"id": 278, "items": [{"menuId": 1, "description": "Veggie", "price": 0.0038}]},
}


@dataclass(frozen=True)
class FactoryKey:
    """A signing key like the factory's, and tokens shaped like its pizzas."""

    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(
        self,
        payload: object = PIZZA,
        *,
        exp: float | None = NOW + DAY_S,
        kid: str | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """A pizza: iat, exp, iss and kid in the protected header (docs/factory.md)."""
        claims: dict[str, Any] = {"kid": kid or self.kid, "iat": int(NOW), "iss": "cs329.click"}
        if exp is not None:
            claims["exp"] = int(exp)
        return jwt.PyJWS().encode(
            json.dumps(payload).encode(),
            self.private,
            algorithm="RS256",
            headers={**claims, **(header or {})},
        )


@functools.cache
def factory_key(kid: str) -> FactoryKey:
    """One key per kid for the whole run: RSA generation is the slow part of these tests."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return FactoryKey(kid, private)


def key_set(*keys: FactoryKey) -> httpx.Response:
    return httpx.Response(200, json={"keys": [k.jwk() for k in keys]})


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False)


@pytest.fixture
def jwks_route(router: respx.MockRouter) -> respx.Route:
    return router.get(JWKS_URL).mock(return_value=key_set(factory_key("k1")))


@pytest.fixture
async def http(router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.MockTransport(router.async_handler)
    async with httpx.AsyncClient(base_url=FACTORY, transport=transport) as client:
        yield client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.fromtimestamp(NOW, UTC))


@pytest.fixture
def cache(http: httpx.AsyncClient, clock: ManualClock, jwks_route: respx.Route) -> JwksCache:
    return JwksCache(http, clock=clock, min_refetch_interval_s=10.0)


class TestVerify:
    async def test_pizza_verifies_and_gives_its_payload(
        self, cache: JwksCache, jwks_route: respx.Route
    ) -> None:
        assert await cache.verify(factory_key("k1").sign()) == PIZZA
        assert jwks_route.call_count == 1

    async def test_key_set_is_fetched_once_then_cached(
        self, cache: JwksCache, jwks_route: respx.Route
    ) -> None:
        for _ in range(5):
            assert await cache.verify(factory_key("k1").sign()) is not None
        assert jwks_route.call_count == 1

    async def test_expired_header_is_rejected(self, cache: JwksCache, clock: ManualClock) -> None:
        token = factory_key("k1").sign(exp=NOW + 60)
        assert await cache.verify(token) is not None
        clock.advance(60)
        assert await cache.verify(token) is None

    async def test_exp_must_be_in_the_header_not_the_payload(self, cache: JwksCache) -> None:
        payload_only = factory_key("k1").sign({**PIZZA, "exp": NOW + DAY_S}, exp=None)
        assert await cache.verify(payload_only) is None

    @pytest.mark.parametrize("exp", ["tomorrow", True, None])
    async def test_exp_that_is_not_a_time(self, cache: JwksCache, exp: object) -> None:
        assert await cache.verify(factory_key("k1").sign(header={"exp": exp})) is None

    async def test_signature_by_another_key_is_rejected(self, cache: JwksCache) -> None:
        forged = factory_key("intruder").sign(kid="k1")
        assert await cache.verify(forged) is None

    async def test_tampered_payload_is_rejected(self, cache: JwksCache) -> None:
        header, _, signature = factory_key("k1").sign().split(".")
        other = jwt.utils.base64url_encode(json.dumps({**PIZZA, "order": {}}).encode()).decode()
        assert await cache.verify(f"{header}.{other}.{signature}") is None

    @pytest.mark.parametrize("payload", [["a list"], "a string"])
    async def test_payload_that_is_not_an_object(self, cache: JwksCache, payload: object) -> None:
        assert await cache.verify(factory_key("k1").sign(payload)) is None

    @pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 5000])
    async def test_garbage_token_costs_no_fetch(
        self, cache: JwksCache, jwks_route: respx.Route, token: str
    ) -> None:
        assert await cache.verify(token) is None
        assert jwks_route.call_count == 0

    async def test_unsigned_token_is_rejected(
        self, cache: JwksCache, jwks_route: respx.Route
    ) -> None:
        unsigned = jwt.PyJWS().encode(b"{}", "", algorithm="none", headers={"kid": "k1"})
        assert await cache.verify(unsigned) is None
        assert jwks_route.call_count == 0


class TestKeyRotation:
    async def test_unknown_kid_triggers_exactly_one_refetch(
        self, cache: JwksCache, jwks_route: respx.Route, clock: ManualClock
    ) -> None:
        assert await cache.verify(factory_key("k1").sign()) is not None
        clock.advance(60)
        jwks_route.return_value = key_set(factory_key("k1"), factory_key("k2"))
        assert await cache.verify(factory_key("k2").sign()) == PIZZA
        assert await cache.verify(factory_key("k2").sign()) == PIZZA
        assert jwks_route.call_count == 2

    async def test_refetches_are_rate_limited(
        self, cache: JwksCache, jwks_route: respx.Route, clock: ManualClock
    ) -> None:
        flood = factory_key("k2").sign()  # a kid the factory does not have (yet)
        for _ in range(20):
            assert await cache.verify(flood) is None
        assert jwks_route.call_count == 1  # the first use only
        clock.advance(9.9)
        assert await cache.verify(flood) is None
        assert jwks_route.call_count == 1
        clock.advance(0.1)
        jwks_route.return_value = key_set(factory_key("k2"))
        assert await cache.verify(flood) == PIZZA
        assert jwks_route.call_count == 2

    async def test_concurrent_unknown_kids_share_one_fetch(
        self, cache: JwksCache, jwks_route: respx.Route
    ) -> None:
        async def slow_key_set(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0)  # let the other verifies reach the lock meanwhile
            return key_set(factory_key("k1"))

        jwks_route.side_effect = slow_key_set
        token = factory_key("k1").sign()
        results = await asyncio.gather(*(cache.verify(token) for _ in range(10)))
        assert results == [PIZZA] * 10
        assert jwks_route.call_count == 1

    async def test_rotated_out_key_no_longer_verifies(
        self, cache: JwksCache, jwks_route: respx.Route, clock: ManualClock
    ) -> None:
        old = factory_key("k1").sign()
        assert await cache.verify(old) is not None
        jwks_route.return_value = key_set(factory_key("k2"))
        clock.advance(60)
        assert await cache.verify(factory_key("k2").sign()) is not None
        assert await cache.verify(old) is None


class TestFetchFailure:
    @pytest.mark.parametrize(
        "failure",
        [
            httpx.Response(500, json={"message": "down"}),
            httpx.Response(200, text="<html>not json</html>"),
            httpx.Response(200, json={"no": "keys"}),
            httpx.Response(200, json=["not", "an", "object"]),
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
        ],
        ids=["500", "not-json", "no-keys", "not-object", "refused", "timeout"],
    )
    async def test_failure_gives_none_not_an_exception(
        self, cache: JwksCache, jwks_route: respx.Route, failure: httpx.Response | Exception
    ) -> None:
        jwks_route.mock(side_effect=[failure])
        assert await cache.verify(factory_key("k1").sign()) is None

    async def test_recovers_after_the_refetch_interval(
        self, cache: JwksCache, jwks_route: respx.Route, clock: ManualClock
    ) -> None:
        jwks_route.side_effect = httpx.ConnectError("refused")
        token = factory_key("k1").sign()
        assert await cache.verify(token) is None
        jwks_route.side_effect = None
        assert await cache.verify(token) is None  # still inside the interval
        clock.advance(10)
        assert await cache.verify(token) == PIZZA
        assert jwks_route.call_count == 2

    async def test_failed_refetch_keeps_the_known_keys(
        self, cache: JwksCache, jwks_route: respx.Route, clock: ManualClock
    ) -> None:
        assert await cache.verify(factory_key("k1").sign()) is not None
        jwks_route.side_effect = httpx.ConnectError("refused")
        clock.advance(60)
        assert await cache.verify(factory_key("k2").sign()) is None
        assert await cache.verify(factory_key("k1").sign()) == PIZZA

    async def test_unusable_entries_are_skipped(
        self, cache: JwksCache, jwks_route: respx.Route
    ) -> None:
        junk = [
            "not a dict",
            {"kty": "RSA", "n": "x"},  # no kid
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"},
            {"kty": "RSA", "kid": "odd", "n": 12, "e": "AQAB"},
            {"kty": "RSA", "kid": "bad", "n": "!!!", "e": "AQAB"},
        ]
        jwks_route.return_value = httpx.Response(
            200, json={"keys": [*junk, factory_key("k1").jwk()]}
        )
        assert await cache.verify(factory_key("k1").sign()) == PIZZA
