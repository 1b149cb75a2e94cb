"""Sessions: tokens expire and are revocable (stricter than the reference:
docs/http-api.md#differences-from-the-reference-service, item 5). Each test fails on the
reference's behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings, describe_errors
from tests.conftest import JWT_SECRET, make_settings, running_api
from tests.utils.builders import Api
from tests.utils.clock import ManualClock
from tests.utils.users import bearer, me_status


class TestItem05TokensExpireAndAreRevocable:
    async def test_a_token_lasts_the_configured_time(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, token_ttl_s=600)
        async with running_api(settings) as api:
            diner = await api.register()

        claims = jwt.decode(diner.token, JWT_SECRET, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 600

    async def test_a_token_stops_working_after_24_hours(self, settings: Settings) -> None:
        clock = ManualClock(datetime.now(UTC))
        async with running_api(settings, clock=clock) as api:
            diner = await api.register()

            clock.advance(timedelta(hours=23, minutes=59).total_seconds())
            assert await me_status(api, diner.headers) == 200
            clock.advance(timedelta(minutes=1, seconds=1).total_seconds())
            assert await me_status(api, diner.headers) == 401

    async def test_an_expired_signature_is_refused_even_with_a_live_session(self, api: Api) -> None:
        diner = await api.register()
        claims = jwt.decode(diner.token, JWT_SECRET, algorithms=["HS256"])
        # The same session id, re-signed with an expiry in the past.
        past = {**claims, "exp": claims["iat"] - 1, "iat": claims["iat"] - 60}
        expired = jwt.encode(past, JWT_SECRET, algorithm="HS256")

        assert await me_status(api, bearer(expired)) == 401
        assert await me_status(api, diner.headers) == 200

    async def test_logout_revokes_at_once(self, api: Api) -> None:
        diner = await api.register()

        await api.client.delete("/api/auth", headers=diner.headers)

        assert await me_status(api, diner.headers) == 401

    @pytest.mark.parametrize(
        "change",
        [{"password": "brand new pw"}, {"email": "moved@jwt.com"}],
        ids=["password", "email"],
    )
    async def test_a_credential_change_ends_other_sessions_and_answers_a_fresh_token(
        self, api: Api, change: dict[str, str]
    ) -> None:
        phone = await api.register()
        laptop = await api.login(phone.email)

        answer = await api.client.put(f"/api/user/{phone.id}", headers=phone.headers, json=change)

        assert answer.status_code == 200, answer.text
        fresh = answer.json()["token"]
        assert fresh not in (phone.token, laptop.token)
        assert await me_status(api, bearer(fresh)) == 200
        assert await me_status(api, laptop.headers) == 401

    async def test_an_admin_resetting_a_password_ends_all_of_that_user_s_sessions(
        self, api: Api
    ) -> None:
        admin = await api.admin()
        diner = await api.register()

        answer = await api.client.put(
            f"/api/user/{diner.id}", headers=admin.headers, json={"password": "reset pw"}
        )

        assert answer.status_code == 200
        assert await me_status(api, diner.headers) == 401
        assert await me_status(api, admin.headers) == 200
        assert await me_status(api, bearer(answer.json()["token"])) == 200

    async def test_deleting_a_user_ends_all_of_their_sessions(self, api: Api) -> None:
        admin = await api.admin()
        phone = await api.register()
        laptop = await api.login(phone.email)

        await api.client.delete(f"/api/user/{phone.id}", headers=admin.headers)

        assert await me_status(api, phone.headers) == 401
        assert await me_status(api, laptop.headers) == 401

    def test_production_refuses_a_weak_or_missing_secret(self) -> None:
        base: dict[str, Any] = {
            "pizza_env": "production",
            "factory_url": "https://factory.example",
            "factory_api_key": "k",
        }
        for secret in (None, "secret", "x" * 31):
            with pytest.raises(ValidationError) as refused:
                Settings(_env_file=None, **base, jwt_secret=secret)  # type: ignore[call-arg]

            [line] = describe_errors(refused.value)
            assert line.startswith("JWT_SECRET"), line
        strong = Settings(_env_file=None, **base, jwt_secret="s" * 32)  # type: ignore[call-arg]
        assert strong.jwt_secret == SecretStr("s" * 32)
