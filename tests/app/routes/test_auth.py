"""Register, sign in, sign out (docs/http-api.md#auth), and what a token is worth afterwards."""

from __future__ import annotations

import jwt
import pytest

from app.security import issue_token
from tests.conftest import JWT_SECRET
from tests.utils.builders import PASSWORD, Api, fast_password_hashing  # noqa: F401
from tests.utils.users import bearer

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestRegister:
    async def test_answers_the_diner_and_a_working_token(self, api: Api) -> None:
        answer = await api.client.post(
            "/api/auth", json={"name": "pizza diner", "email": "d@jwt.com", "password": "diner"}
        )

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"user", "token"}
        user = body["user"]
        assert user == {
            "id": user["id"],
            "name": "pizza diner",
            "email": "d@jwt.com",
            "roles": [{"role": "diner"}],
        }
        me = await api.client.get("/api/user/me", headers=bearer(body["token"]))
        assert me.json() == user

    async def test_a_missing_field_is_a_400_naming_it(self, api: Api) -> None:
        for missing in ["name", "email", "password"]:
            body = {"name": "n", "email": "n@jwt.com", "password": "p"}
            del body[missing]

            answer = await api.client.post("/api/auth", json=body)

            assert answer.status_code == 400
            assert answer.json()["message"].startswith(f"{missing}:"), answer.text

    async def test_a_taken_email_is_a_409(self, api: Api) -> None:
        await api.register(email="taken@jwt.com")

        answer = await api.client.post(
            "/api/auth", json={"name": "second", "email": "taken@jwt.com", "password": "x"}
        )

        assert answer.status_code == 409
        assert answer.json() == {"message": "email already registered"}

    async def test_a_body_that_is_not_json_is_a_400(self, api: Api) -> None:
        answer = await api.client.post(
            "/api/auth", content=b"{not json", headers={"Content-Type": "application/json"}
        )

        assert answer.status_code == 400
        assert answer.json() == {"message": "request body is not valid JSON"}


class TestLogin:
    async def test_answers_the_user_and_a_new_token(self, api: Api) -> None:
        diner = await api.register(name="kai", email="kai@jwt.com")

        answer = await api.client.put(
            "/api/auth", json={"email": "kai@jwt.com", "password": PASSWORD}
        )

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user"] == {
            "id": diner.id,
            "name": "kai",
            "email": "kai@jwt.com",
            "roles": [{"role": "diner"}],
        }
        assert body["token"] != diner.token
        assert (await api.client.get("/api/user/me", headers=bearer(body["token"]))).is_success

    async def test_the_email_is_not_case_sensitive(self, api: Api) -> None:
        diner = await api.register(email="mixed@jwt.com")

        answer = await api.client.put(
            "/api/auth", json={"email": "MIXED@JWT.com", "password": PASSWORD}
        )

        assert answer.status_code == 200
        assert answer.json()["user"]["id"] == diner.id

    async def test_wrong_email_and_wrong_password_get_the_same_answer(self, api: Api) -> None:
        await api.register(email="known@jwt.com")

        wrong_password = await api.client.put(
            "/api/auth", json={"email": "known@jwt.com", "password": "not it"}
        )
        wrong_email = await api.client.put(
            "/api/auth", json={"email": "nobody@jwt.com", "password": PASSWORD}
        )

        assert wrong_password.status_code == wrong_email.status_code == 404
        assert wrong_password.json() == wrong_email.json() == {"message": "unknown user"}

    async def test_a_missing_password_is_a_400(self, api: Api) -> None:
        answer = await api.client.put("/api/auth", json={"email": "x@jwt.com"})

        assert answer.status_code == 400
        assert "password" in answer.json()["message"]


class TestLogout:
    async def test_the_token_stops_working_at_once(self, api: Api) -> None:
        diner = await api.register()

        answer = await api.client.delete("/api/auth", headers=diner.headers)

        assert answer.status_code == 200
        assert answer.json() == {"message": "logout successful"}
        me = await api.client.get("/api/user/me", headers=diner.headers)
        assert me.status_code == 401
        assert me.json() == {"message": "unauthorized"}
        again = await api.client.delete("/api/auth", headers=diner.headers)
        assert again.status_code == 401

    async def test_other_sessions_of_the_same_user_go_on(self, api: Api) -> None:
        phone = await api.register()
        laptop = await api.login(phone.email)

        await api.client.delete("/api/auth", headers=phone.headers)

        assert (await api.client.get("/api/user/me", headers=laptop.headers)).status_code == 200

    async def test_without_a_token_is_a_401(self, api: Api) -> None:
        answer = await api.client.delete("/api/auth")

        assert answer.status_code == 401
        assert answer.json() == {"message": "unauthorized"}


class TestTokensThatAreRefused:
    """Missing, malformed, forged, expired or revoked: 401 with a JSON message."""

    async def _me(self, api: Api, headers: dict[str, str]) -> int:
        answer = await api.client.get("/api/user/me", headers=headers)
        if answer.status_code == 401:
            assert answer.json() == {"message": "unauthorized"}
        return answer.status_code

    async def test_missing(self, api: Api) -> None:
        assert await self._me(api, {}) == 401

    async def test_malformed(self, api: Api) -> None:
        await api.register()

        for header in ["Bearer", "Bearer ", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "token"]:
            assert await self._me(api, {"Authorization": header}) == 401, header

    async def test_signed_with_another_secret(self, api: Api) -> None:
        diner = await api.register()
        claims = jwt.decode(diner.token, options={"verify_signature": False})
        forged = jwt.encode(claims, "another-secret-" + "x" * 40, algorithm="HS256")

        assert await self._me(api, bearer(forged)) == 401

    async def test_unsigned(self, api: Api) -> None:
        diner = await api.register()
        claims = jwt.decode(diner.token, options={"verify_signature": False})
        unsigned = jwt.encode(claims, None, algorithm="none")

        assert await self._me(api, bearer(unsigned)) == 401

    async def test_well_signed_but_never_issued(self, api: Api) -> None:
        diner = await api.register()
        stray = issue_token(diner.id, secret=JWT_SECRET, ttl_s=3600, now=api.services.clock.now())

        assert await self._me(api, bearer(stray.token)) == 401
