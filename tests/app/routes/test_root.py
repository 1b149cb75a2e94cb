"""The public surface: welcome, endpoint list, unknown paths, health, and how the front end
really talks (preflights, JSON content type on bodiless calls, tokens on public calls)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from app.version import VERSION
from tests.conftest import FACTORY_KEY, JWT_SECRET
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

ORIGIN = "http://localhost:5173"
FRONT_END = {"Origin": ORIGIN, "Content-Type": "application/json"}


class TestWelcome:
    async def test_says_welcome_and_the_version(self, api: Api) -> None:
        answer = await api.client.get("/")

        assert answer.status_code == 200
        assert answer.json() == {"message": "welcome to JWT Pizza", "version": VERSION}


class TestApiDocs:
    async def test_lists_every_customer_endpoint_with_its_auth(
        self, api: Api, factory_url: str
    ) -> None:
        answer = await api.client.get("/api/docs")

        assert answer.status_code == 200
        body = answer.json()
        assert body["version"] == VERSION
        assert body["config"] == {"factory": factory_url}
        listed = {(e["method"], e["path"]): e for e in body["endpoints"]}
        for key in [
            ("POST", "/api/auth"),
            ("PUT", "/api/auth"),
            ("DELETE", "/api/auth"),
            ("GET", "/api/user/me"),
            ("PUT", "/api/user/{userId}"),
            ("GET", "/api/user"),
            ("DELETE", "/api/user/{userId}"),
            ("GET", "/api/order/menu"),
            ("PUT", "/api/order/menu"),
            ("GET", "/api/order"),
            ("GET", "/api/order/{orderId}"),
            ("POST", "/api/order"),
            ("GET", "/api/franchise"),
            ("GET", "/api/franchise/{userId}"),
            ("POST", "/api/franchise"),
            ("DELETE", "/api/franchise/{franchiseId}"),
            ("POST", "/api/franchise/{franchiseId}/store"),
            ("DELETE", "/api/franchise/{franchiseId}/store/{storeId}"),
        ]:
            assert key in listed, key
        for entry in listed.values():
            assert set(entry) == {
                "method",
                "path",
                "description",
                "example",
                "response",
                "requiresAuth",
            }
        assert listed[("GET", "/api/order/menu")]["requiresAuth"] is False
        assert listed[("GET", "/api/franchise")]["requiresAuth"] is False
        assert listed[("POST", "/api/order")]["requiresAuth"] is True
        assert listed[("DELETE", "/api/franchise/{franchiseId}")]["requiresAuth"] is True

    async def test_tells_no_secret(self, api: Api, database_url: str) -> None:
        for path in ("/api/docs", "/openapi.json", "/"):
            text = (await api.client.get(path)).text

            assert FACTORY_KEY not in text, path
            assert JWT_SECRET not in text, path
            assert database_url not in text, path
            assert "postgres@" not in text, path
            assert "pizza.db" not in text, path


class TestUnknownPath:
    async def test_is_a_404_in_json_for_any_method(self, api: Api) -> None:
        for method in ("GET", "POST", "PUT", "DELETE"):
            answer = await api.client.request(method, "/api/nothing/here", headers=FRONT_END)

            assert answer.status_code == 404, method
            assert answer.json() == {"message": "unknown endpoint"}
            assert answer.headers["access-control-allow-origin"] == ORIGIN

    async def test_a_wrong_method_is_json_too(self, api: Api) -> None:
        answer = await api.client.patch("/api/auth", json={})

        assert answer.status_code == 405
        assert answer.headers["content-type"].startswith("application/json")
        assert set(answer.json()) == {"message"}


class TestHealth:
    async def test_healthz_and_readyz_answer_without_auth(self, api: Api) -> None:
        alive = await api.client.get("/healthz")
        ready = await api.client.get("/readyz")

        assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})

    async def test_readyz_is_a_503_when_the_database_does_not_answer(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Nothing listens on port 1: the connection is refused at once.
        unreachable = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
        monkeypatch.setattr(api.services, "engine", unreachable)

        answer = await api.client.get("/readyz")
        alive = await api.client.get("/healthz")

        await unreachable.dispose()
        assert answer.status_code == 503
        assert answer.json()["status"] == "database unavailable"
        assert alive.status_code == 200


class TestHowTheFrontEndTalks:
    async def test_every_call_is_preflighted_and_allowed(self, api: Api) -> None:
        for method, path in (
            ("GET", "/api/order/menu"),
            ("PUT", "/api/auth"),
            ("POST", "/api/order"),
            ("DELETE", "/api/auth"),
            ("PUT", "/api/user/1"),
        ):
            answer = await api.client.options(
                path,
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "content-type,authorization",
                },
            )

            assert 200 <= answer.status_code < 300, (method, path, answer.status_code)
            assert answer.headers["access-control-allow-origin"] == ORIGIN
            assert answer.headers["access-control-allow-credentials"] == "true"
            assert method in answer.headers["access-control-allow-methods"]
            allowed = answer.headers["access-control-allow-headers"].lower()
            assert "content-type" in allowed and "authorization" in allowed

    async def test_bodiless_calls_with_a_json_content_type_work(self, api: Api) -> None:
        diner = await api.register()
        headers = {**FRONT_END, **diner.headers}

        menu = await api.client.get("/api/order/menu", headers=headers)
        franchises = await api.client.get("/api/franchise?page=0&limit=10&name=*", headers=headers)
        me = await api.client.get("/api/user/me", headers=headers)
        logout = await api.client.delete("/api/auth", headers=headers)

        assert [a.status_code for a in (menu, franchises, me, logout)] == [200] * 4
        assert me.headers["access-control-allow-origin"] == ORIGIN

    async def test_a_signed_out_token_on_a_public_call_is_ignored(self, api: Api) -> None:
        diner = await api.register()
        await api.client.delete("/api/auth", headers=diner.headers)

        menu = await api.client.get("/api/order/menu", headers=diner.headers)
        franchises = await api.client.get("/api/franchise", headers=diner.headers)

        assert menu.status_code == franchises.status_code == 200

    async def test_a_refusal_reaches_the_page_with_its_message(self, api: Api) -> None:
        answer = await api.client.put(
            "/api/auth", headers=FRONT_END, json={"email": "no@jwt.com", "password": "x"}
        )

        assert answer.status_code == 404
        assert answer.json() == {"message": "unknown user"}
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        assert answer.headers["access-control-allow-credentials"] == "true"
