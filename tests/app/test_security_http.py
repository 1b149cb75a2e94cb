"""HTTP answers, where this service is deliberately stricter than the reference
(docs/http-api.md#differences-from-the-reference-service): no stack trace (item 6), CORS
only for the configured origins (item 7), hardened headers and bounded bodies (item 14).
One class per item; each test fails on the reference's behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.deps import get_services
from app.main import create_app
from app.middleware import SecurityHeadersMiddleware
from tests.conftest import make_settings
from tests.utils.builders import Api, fast_password_hashing  # noqa: F401
from tests.utils.users import ORIGIN

pytestmark = pytest.mark.usefixtures("fast_password_hashing")


class TestItem06ErrorsCarryNoStackTrace:
    async def test_a_crash_is_a_json_500_the_page_can_read(self, api: Api) -> None:
        def broken() -> Any:
            raise RuntimeError("boom in /srv/app/secret_module.py line 42")

        api.app.dependency_overrides[get_services] = broken

        answer = await api.client.get("/api/order/menu", headers={"Origin": ORIGIN})

        assert answer.status_code == 500
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["message"] == f"internal error (error id {answer.json()['errorId']})"
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
