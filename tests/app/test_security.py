"""The fourteen places where this service is deliberately stricter than the reference
(api.md, last section). One class per item; each test fails on the reference's behaviour."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import delete
from sqlmodel import col

import app.deps
import app.users.logins
from app.config import Settings, describe_errors
from app.deps import get_services
from app.main import create_app
from app.middleware import SecurityHeadersMiddleware
from app.models import Role, User, UserRole, utcnow
from tests.conftest import FACTORY_KEY, JWT_SECRET, make_settings, running_api
from tests.utils.builders import PASSWORD, Account, Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

ORIGIN = "http://localhost:5173"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me_status(api: Api, headers: dict[str, str]) -> int:
    return (await api.client.get("/api/user/me", headers=headers)).status_code


async def sign_in(api: Api, email: str, password: str = PASSWORD) -> httpx.Response:
    return await api.client.put("/api/auth", json={"email": email, "password": password})


async def set_role(api: Api, user_id: int, role: Role, object_id: int | None = None) -> None:
    async with api.services.sessions() as session:
        session.add(UserRole(user_id=user_id, role=role, object_id=object_id))
        await session.commit()


async def drop_roles(api: Api, user_id: int, role: Role) -> None:
    async with api.services.sessions() as session:
        await session.exec(  # type: ignore[call-overload]
            delete(UserRole).where(col(UserRole.user_id) == user_id, col(UserRole.role) == role)
        )
        await session.commit()


class TestItem01SqlIsParameterised:
    """The reference built `UPDATE user` from strings."""

    async def test_quotes_in_name_and_email_are_stored_literally(self, api: Api) -> None:
        admin = await api.admin()
        diner = await api.register(name="plain")
        bystander = await api.register(name="bystander")
        name = "x', name='pwned', email='" + admin.email + "' -- x"
        email = "o'brien--@jwt.com"

        answer = await api.client.put(
            f"/api/user/{diner.id}", headers=diner.headers, json={"name": name, "email": email}
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["name"] == name
        assert answer.json()["user"]["email"] == email
        fresh = bearer(answer.json()["token"])
        assert (await api.client.get("/api/user/me", headers=fresh)).json()["name"] == name
        users = (await api.client.get("/api/user", headers=admin.headers)).json()["users"]
        by_id = {u["id"]: u for u in users}
        assert by_id[bystander.id]["name"] == "bystander"
        assert by_id[admin.id]["email"] == admin.email
        assert (await sign_in(api, email)).status_code == 200

    async def test_quotes_in_a_sign_in_sign_nobody_in(self, api: Api) -> None:
        await api.register()

        for email in ("' OR '1'='1", "x@jwt.com' OR 1=1 -- "):
            answer = await sign_in(api, email, "' OR '1'='1")

            assert answer.status_code == 404, email

    async def test_name_filters_match_literally(self, api: Api) -> None:
        admin = await api.admin()
        await api.register(name="100% pepperoni")
        await api.register(name="plain_cheese")
        await api.franchise(admin, name="50% off")
        await api.franchise(admin, name="o'brien's")

        async def users(pattern: str) -> list[str]:
            answer = await api.client.get(
                "/api/user", params={"name": pattern}, headers=admin.headers
            )
            assert answer.status_code == 200, answer.text
            return [u["name"] for u in answer.json()["users"]]

        async def franchises(pattern: str) -> list[str]:
            answer = await api.client.get("/api/franchise", params={"name": pattern})
            assert answer.status_code == 200, answer.text
            return [f["name"] for f in answer.json()["franchises"]]

        assert await users("' OR '1'='1") == []
        assert await users("x' OR name LIKE '%") == []
        assert await users("*%*") == ["100% pepperoni"]
        assert await users("plain_*") == ["plain_cheese"]
        assert await users("plain*") == ["plain_cheese"]
        assert await users("%") == []
        assert await franchises("' OR 1=1 -- ") == []
        assert await franchises("*%*") == ["50% off"]
        assert await franchises("o'brien*") == ["o'brien's"]


class TestItem02PricesComeFromTheMenu:
    """The reference trusted the client's price."""

    async def test_a_price_of_zero_is_ignored_everywhere(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        veggie = shop.menu[0]

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json={
                "franchiseId": shop.franchise["id"],
                "storeId": shop.store["id"],
                "items": [{"menuId": veggie["id"], "description": "free pizza", "price": 0}],
            },
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["order"]["items"][0]["price"] == 0.0038
        assert answer.json()["order"]["items"][0]["description"] == "Veggie"
        made = factory.post("/api/order/verify", json={"jwt": answer.json()["jwt"]}).json()
        assert made["payload"]["order"]["items"][0]["price"] == 0.0038
        listed = await api.client.get("/api/franchise", headers=shop.admin.headers)
        assert listed.json()["franchises"][0]["stores"][0]["totalRevenue"] == 0.0038

    async def test_a_missing_price_is_no_problem(self, api: Api) -> None:
        shop = await api.shop()

        answer = await api.client.post(
            "/api/order",
            headers=shop.diner.headers,
            json={
                "franchiseId": shop.franchise["id"],
                "storeId": shop.store["id"],
                "items": [{"menuId": shop.menu[1]["id"]}],
            },
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["order"]["items"][0]["price"] == 0.0042


class TestItem03DeletingAFranchiseNeedsAnAdmin:
    """The reference's DELETE /api/franchise/{id} required nothing."""

    async def test_nobody_else_can(self, api: Api) -> None:
        admin = await api.admin()
        owner = await api.register()
        diner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])
        path = f"/api/franchise/{franchise['id']}"

        anonymous = await api.client.delete(path)
        by_diner = await api.client.delete(path, headers=diner.headers)
        by_owner = await api.client.delete(path, headers=owner.headers)

        assert anonymous.status_code == 401
        assert by_diner.status_code == by_owner.status_code == 403
        listed = (await api.client.get("/api/franchise")).json()["franchises"]
        assert [f["id"] for f in listed] == [franchise["id"]]


class TestItem04NoBuiltInAdmin:
    async def test_the_reference_s_default_admins_cannot_sign_in(self, api: Api) -> None:
        for email in ("a@jwt.com", "admin@jwt.com"):
            for password in ("admin", "a", "password", ""):
                assert (await sign_in(api, email, password)).status_code == 404

    async def test_its_email_is_free_and_gives_no_power(self, api: Api) -> None:
        squatter = await api.register(email="a@jwt.com", password="admin")

        assert squatter.roles == [{"role": "diner"}]
        assert (await api.client.get("/api/user", headers=squatter.headers)).status_code == 403

    async def test_the_first_admin_can_come_from_configuration(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(
            database_url, factory_url, admin_email="Boss@jwt.com", admin_password="s3cret pw"
        )
        async with running_api(settings) as api:
            answer = await sign_in(api, "boss@jwt.com", "s3cret pw")

        assert answer.status_code == 200
        assert {"role": "admin"} in answer.json()["user"]["roles"]


class TestItem05TokensExpireAndAreRevocable:
    async def test_a_token_lasts_the_configured_time(
        self, database_url: str, factory_url: str, factory: httpx.Client
    ) -> None:
        settings = make_settings(database_url, factory_url, token_ttl_s=600)
        async with running_api(settings) as api:
            diner = await api.register()

        claims = jwt.decode(diner.token, JWT_SECRET, algorithms=["HS256"])
        assert claims["exp"] - claims["iat"] == 600

    async def test_a_token_stops_working_after_24_hours(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        diner = await api.register()
        start = utcnow()

        monkeypatch.setattr(app.deps, "utcnow", lambda: start + timedelta(hours=23, minutes=59))
        assert await me_status(api, diner.headers) == 200
        monkeypatch.setattr(app.deps, "utcnow", lambda: start + timedelta(hours=24, seconds=1))
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


class TestItem06ErrorsCarryNoStackTrace:
    async def test_a_crash_is_a_json_500_the_page_can_read(self, api: Api) -> None:
        def broken() -> Any:
            raise RuntimeError("boom in /srv/app/secret_module.py line 42")

        api.app.dependency_overrides[get_services] = broken

        answer = await api.client.get("/api/order/menu", headers={"Origin": ORIGIN})

        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {"message": "internal error"}
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert answer.headers["x-content-type-options"] == "nosniff"
        for leak in ("Traceback", "RuntimeError", "secret_module", "line 42"):
            assert leak not in answer.text

    async def test_bad_input_is_never_a_500_or_html(self, api: Api) -> None:
        diner = await api.register()
        for method, path, body in [
            ("POST", "/api/auth", b"[1, 2"),
            ("POST", "/api/auth", b"\xff\xfe"),
            ("PUT", "/api/auth", b'"just a string"'),
            ("POST", "/api/order", b"null"),
            ("PUT", f"/api/user/{diner.id}", b'{"name": 5}'),
            ("GET", "/api/order/not-a-number", b""),
            ("GET", "/api/franchise?page=1e999", b""),
        ]:
            answer = await api.client.request(
                method,
                path,
                content=body,
                headers={**diner.headers, "Content-Type": "application/json"},
            )

            assert 400 <= answer.status_code < 500, (path, body, answer.text)
            assert set(answer.json()) == {"message"}, answer.text


class TestItem07CorsOnlyForConfiguredOrigins:
    """The reference echoed any origin, with credentials."""

    async def test_an_unknown_origin_gets_no_allow_origin(self, api: Api) -> None:
        diner = await api.register()
        for origin in ("https://evil.example", "null", "http://localhost:5174"):
            simple = await api.client.get(
                "/api/user/me", headers={"Origin": origin, **diner.headers}
            )
            refused = await api.client.get("/api/user/me", headers={"Origin": origin})
            preflight = await api.client.options(
                "/api/user/me",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "content-type,authorization",
                },
            )

            for answer in (simple, refused, preflight):
                # Without Allow-Origin the browser shows the page nothing, whatever else is sent.
                assert "access-control-allow-origin" not in answer.headers, origin
            assert not preflight.is_success

    async def test_the_configured_origin_gets_exactly_itself_on_every_answer(
        self, api: Api
    ) -> None:
        diner = await api.register()
        headers = {"Origin": ORIGIN, "Content-Type": "application/json"}
        answers = [
            await api.client.get("/api/user/me", headers={**headers, **diner.headers}),
            await api.client.get("/api/user/me", headers=headers),
            await api.client.get("/api/user", headers={**headers, **diner.headers}),
            await api.client.get("/api/nowhere", headers=headers),
            await api.client.post("/api/auth", headers=headers, json={}),
            await api.client.put("/api/auth", headers=headers, json={"email": "x", "password": ""}),
        ]

        assert [a.status_code for a in answers] == [200, 401, 403, 404, 400, 404]
        for answer in answers:
            assert answer.headers["access-control-allow-origin"] == ORIGIN
            assert answer.headers["access-control-allow-credentials"] == "true"
            assert "origin" in answer.headers.get("vary", "").lower()

    async def test_preflight_for_the_configured_origin_is_2xx(self, api: Api) -> None:
        answer = await api.client.options(
            "/api/order",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )

        assert answer.is_success
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"


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

    async def test_the_email_is_free_again_after_5_minutes(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        victim = await api.register()
        for _ in range(6):
            await self._fail(api.client, victim.email)
        assert (await sign_in(api, victim.email)).status_code == 429
        later = utcnow() + timedelta(minutes=5, seconds=1)

        monkeypatch.setattr(app.users.logins, "utcnow", lambda: later)

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


class TestItem09OneAccountPerEmail:
    async def test_the_same_email_in_any_case_is_a_409(self, api: Api) -> None:
        admin = await api.admin()
        first = await api.register(email="Dup@jwt.com")

        for email in ("Dup@jwt.com", "dup@jwt.com", "DUP@JWT.COM"):
            answer = await api.client.post(
                "/api/auth", json={"name": "twin", "email": email, "password": "other pw"}
            )
            assert answer.status_code == 409, email

        users = await api.client.get("/api/user?name=twin", headers=admin.headers)
        assert users.json()["users"] == []
        assert (await sign_in(api, "dup@jwt.com")).json()["user"]["id"] == first.id
        assert (await sign_in(api, "dup@jwt.com", "other pw")).status_code == 404


class TestItem10TheFactoryKeyNeverLeaves:
    async def test_no_answer_carries_it_even_during_chaos(
        self, api: Api, factory: httpx.Client
    ) -> None:
        shop = await api.shop()
        answers = [await api.order(shop)]
        for chaos in ("fail", "badjwt"):
            factory.put(f"/api/vendor/chaos/{chaos}").raise_for_status()
            placed = await api.order(shop)
            answers.append(placed)
            assert placed.status_code != 200, placed.text
            order_id = placed.json()["order"]["id"]
            answers.append(
                await api.client.get(f"/api/order/{order_id}", headers=shop.diner.headers)
            )
            factory.put("/api/vendor/chaos/none").raise_for_status()
        answers += [
            await api.client.get("/api/order", headers=shop.diner.headers),
            await api.client.get("/api/franchise", headers=shop.admin.headers),
            await api.client.get("/api/docs"),
            await api.client.get("/openapi.json"),
        ]

        for answer in answers:
            seen = answer.text + repr(answer.headers.raw)
            assert FACTORY_KEY not in seen, answer.request.url
            assert "reportUrl" not in seen and "followLinkToEndChaos" not in seen


class TestItem11RolesAreReadOnEveryRequest:
    """The reference trusted the roles inside the token."""

    async def test_a_revoked_franchisee_is_refused_at_once_with_the_same_token(
        self, api: Api
    ) -> None:
        admin = await api.admin()
        owner = await api.register()
        franchise = await api.franchise(admin, admins=[owner.email])
        owner = await api.login(owner.email)  # roles as of now are in nothing but the DB
        path = f"/api/franchise/{franchise['id']}/store"
        assert (await api.client.post(path, headers=owner.headers, json={"name": "a"})).is_success

        await drop_roles(api, owner.id, Role.FRANCHISEE)

        answer = await api.client.post(path, headers=owner.headers, json={"name": "b"})
        assert answer.status_code == 403

    async def test_a_revoked_admin_is_refused_at_once(self, api: Api) -> None:
        admin = await api.admin()
        assert (await api.client.get("/api/user", headers=admin.headers)).status_code == 200

        await drop_roles(api, admin.id, Role.ADMIN)

        assert (await api.client.get("/api/user", headers=admin.headers)).status_code == 403
        me = await api.client.get("/api/user/me", headers=admin.headers)
        assert {"role": "admin"} not in me.json()["roles"]

    async def test_a_granted_role_works_at_once(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)
        diner = await api.register()
        path = f"/api/franchise/{franchise['id']}/store"
        assert (
            await api.client.post(path, headers=diner.headers, json={"name": "a"})
        ).status_code == 403

        await set_role(api, diner.id, Role.FRANCHISEE, franchise["id"])

        assert (await api.client.post(path, headers=diner.headers, json={"name": "a"})).is_success


class TestItem12InputIsValidated:
    async def _expect_400(
        self,
        api: Api,
        method: str,
        path: str,
        field: str,
        account: Account | None = None,
        **kwargs: Any,
    ) -> None:
        headers = {**(account.headers if account else {}), **kwargs.pop("headers", {})}
        answer = await api.client.request(method, path, headers=headers, **kwargs)
        assert answer.status_code == 400, (path, kwargs, answer.text)
        message = answer.json()["message"]
        assert message.split(":")[0] == field, (path, kwargs, message)

    async def test_registration(self, api: Api) -> None:
        good = {"name": "n", "email": "n@jwt.com", "password": "pw"}
        for field, value in [
            ("email", "not an email"),
            ("email", "a@b"),
            ("email", ""),
            ("email", 7),
            ("email", "x@pizza.test"),
            ("email", "n\x00@jwt.com"),
            ("name", ""),
            ("name", "   "),
            ("name", "n" * 101),
            ("name", None),
            ("name", "a\x00b"),
            ("password", ""),
            ("password", "   "),
            ("password", "p" * 129),
        ]:
            await self._expect_400(api, "POST", "/api/auth", field, json={**good, field: value})

        assert (await api.client.post("/api/auth", json=good)).status_code == 200

    async def test_text_the_database_cannot_store_is_a_400_not_a_crash(self, api: Api) -> None:
        # NUL is legal JSON but not PostgreSQL text; a lone surrogate is not even UTF-8.
        admin = await api.admin()
        for field, raw in [
            ("name", b'{"name": "\\ud800", "email": "s@jwt.com", "password": "pw"}'),
            ("password", b'{"name": "n", "email": "s@jwt.com", "password": "\\udfff"}'),
        ]:
            await self._expect_400(
                api,
                "POST",
                "/api/auth",
                field,
                content=raw,
                headers={"Content-Type": "application/json"},
            )
        await self._expect_400(
            api, "PUT", "/api/auth", "email", json={"email": "a\x00@jwt.com", "password": "x"}
        )
        await self._expect_400(
            api,
            "PUT",
            "/api/auth",
            "password",
            content=b'{"email": "a@jwt.com", "password": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        for path in ("/api/user?name=a%00", "/api/franchise?name=%00*"):
            await self._expect_400(api, "GET", path, "name", admin)
        await self._expect_400(
            api,
            "PUT",
            f"/api/user/{admin.id}",
            "name",
            admin,
            content=b'{"name": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        assert (await api.client.get("/api/user/me", headers=admin.headers)).is_success

    async def test_an_empty_or_missing_password_never_signs_anyone_in(self, api: Api) -> None:
        # An account whose stored hash is of the empty password (e.g. imported data).
        async with api.services.sessions() as session:
            hashed = app.users.passwords._hasher.hash("")
            session.add(User(name="legacy", email="legacy@jwt.com", password_hash=hashed))
            await session.commit()

        empty = await sign_in(api, "legacy@jwt.com", "")
        missing = await api.client.put("/api/auth", json={"email": "legacy@jwt.com"})
        null = await api.client.put("/api/auth", json={"email": "legacy@jwt.com", "password": None})

        assert empty.status_code == 404
        assert missing.status_code == null.status_code == 400
        assert "token" not in empty.text + missing.text + null.text

    async def test_user_updates(self, api: Api) -> None:
        diner = await api.register()
        path = f"/api/user/{diner.id}"
        for field, value in [
            ("email", "nope"),
            ("name", " "),
            ("password", "  "),
            ("password", ""),
        ]:
            await self._expect_400(api, "PUT", path, field, diner, json={field: value})

        await self._expect_400(api, "PUT", "/api/user/abc", "userId", diner, json={})
        await self._expect_400(api, "PUT", "/api/user/0", "userId", diner, json={})

    async def test_prices_are_positive(self, api: Api) -> None:
        admin = await api.admin()
        item = {"title": "t", "description": "d", "image": "i.png"}
        for price in (0, -0.0001, -5, "abc", "NaN", "1", True, 1e300, 0.000000001):
            await self._expect_400(
                api, "PUT", "/api/order/menu", "price", admin, json={**item, "price": price}
            )
        # BTC has eight decimals: finer prices are rounded to them.
        menu = await api.client.put(
            "/api/order/menu", headers=admin.headers, json={**item, "price": 0.123456789}
        )
        assert [m["price"] for m in menu.json()] == [0.12345679]

    async def test_pages_and_limits_are_bounded_integers(self, api: Api) -> None:
        admin = await api.admin()
        for path in ("/api/franchise", "/api/user"):
            for query, field in [
                ("page=-1", "page"),
                ("page=abc", "page"),
                ("page=1.5", "page"),
                ("limit=100000", "limit"),
                ("limit=abc", "limit"),
                ("limit=0", "limit"),
                ("limit=-3", "limit"),
                ("name=" + "n" * 101, "name"),
            ]:
                await self._expect_400(api, "GET", f"{path}?{query}", field, admin)
        for query in ("page=0", "page=-1", "page=abc", "page=100001"):
            await self._expect_400(api, "GET", f"/api/order?{query}", "page", admin)

    async def test_orders(self, api: Api) -> None:
        shop = await api.shop()
        good: dict[str, Any] = {
            "franchiseId": shop.franchise["id"],
            "storeId": shop.store["id"],
            "items": [{"menuId": shop.menu[0]["id"]}],
        }
        for field, body in [
            ("franchiseId", {**good, "franchiseId": "abc"}),
            ("storeId", {**good, "storeId": -1}),
            ("storeId", {**good, "storeId": 2**40}),
            ("items", {**good, "items": "all of them"}),
            ("items.0.menuId", {**good, "items": [{"menuId": "x"}]}),
            ("items.0", {**good, "items": [7]}),
            # Ids are whole numbers, or their plain decimal digits: not booleans, not "01".
            ("storeId", {**good, "storeId": True}),
            ("storeId", {**good, "storeId": "01"}),
            ("storeId", {**good, "storeId": " 1"}),
            ("storeId", {**good, "storeId": "+1"}),
            ("storeId", {**good, "storeId": 1.5}),
        ]:
            await self._expect_400(api, "POST", "/api/order", field, shop.diner, json=body)
        history = await api.client.get("/api/order", headers=shop.diner.headers)
        assert history.json()["orders"] == []

    async def test_franchises_and_stores(self, api: Api) -> None:
        admin = await api.admin()
        franchise = await api.franchise(admin)
        for field, body in [
            ("name", {"name": ""}),
            ("name", {"name": "x" * 101}),
            ("name", {"name": "a\x00b"}),
            ("admins", {"name": "ok", "admins": "me"}),
        ]:
            await self._expect_400(api, "POST", "/api/franchise", field, admin, json=body)
        await self._expect_400(
            api,
            "POST",
            f"/api/franchise/{franchise['id']}/store",
            "name",
            admin,
            json={"name": "  "},
        )


class TestItem13AnEmailInUseCannotBeTaken:
    """The reference let a user take the admin's email, then sign in as the admin."""

    async def test_changing_to_an_email_in_use_is_a_409(self, api: Api) -> None:
        admin = await api.admin()
        attacker = await api.register(email="attacker@jwt.com", password="attacker pw")

        for email in (admin.email, admin.email.upper()):
            answer = await api.client.put(
                f"/api/user/{attacker.id}", headers=attacker.headers, json={"email": email}
            )
            assert answer.status_code == 409
            assert answer.json() == {"message": "email already in use"}

        assert (await sign_in(api, admin.email, attacker.password)).status_code == 404
        me = await api.client.get("/api/user/me", headers=attacker.headers)
        assert me.json()["email"] == "attacker@jwt.com"
        assert (await sign_in(api, admin.email)).json()["user"]["id"] == admin.id


class TestItem14HardenedHttp:
    async def test_no_banner_and_nosniff_on_every_answer(self, api: Api) -> None:
        diner = await api.register()
        answers = [
            await api.client.get("/"),
            await api.client.get("/api/user/me", headers=diner.headers),
            await api.client.get("/api/user/me"),
            await api.client.get("/api/user", headers=diner.headers),
            await api.client.get("/nowhere"),
            await api.client.post("/api/auth", json={}),
            await api.client.patch("/api/auth"),
            await api.client.post("/api/auth", content=b"x" * (64 * 1024 + 1)),
        ]

        assert [a.status_code for a in answers] == [200, 200, 401, 403, 404, 400, 405, 413]
        for answer in answers:
            assert answer.headers.get("x-content-type-options") == "nosniff", answer.request.url
            assert "server" not in answer.headers
            assert "x-powered-by" not in answer.headers

    async def test_an_oversized_body_is_a_413_declared_or_streamed(self, api: Api) -> None:
        big = b'{"name": "' + b"x" * (64 * 1024) + b'"}'

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 4096):
                yield big[start : start + 4096]

        declared = await api.client.post(
            "/api/auth", content=big, headers={"Content-Type": "application/json"}
        )
        streamed = await api.client.post(
            "/api/auth", content=chunks(), headers={"Content-Type": "application/json"}
        )

        for answer in (declared, streamed):
            assert answer.status_code == 413
            assert answer.json() == {"message": "request body too large"}
        assert "content-length" not in streamed.request.headers

    async def test_preflights_carry_nosniff_too(self, api: Api) -> None:
        answer = await api.client.options(
            "/api/auth", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
        )

        assert answer.status_code == 200
        assert answer.headers.get("x-content-type-options") == "nosniff"

    async def test_security_headers_outside_cors_harden_preflights(
        self, tmp_path: Path, factory_url: str
    ) -> None:
        # CORS answers a preflight before any route or database: one backend is enough.
        service = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/x.db", factory_url))
        service.add_middleware(SecurityHeadersMiddleware)
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            preflight = await client.options(
                "/api/auth", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"}
            )
            refused = await client.options(
                "/api/auth",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
            )

        for answer in (preflight, refused):
            assert answer.headers.get_list("x-content-type-options") == ["nosniff"]
            assert "server" not in answer.headers
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
