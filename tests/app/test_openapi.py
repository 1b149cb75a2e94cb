"""/openapi.json and the service agree: the status codes each operation
answers are the ones it documents, and a 405 lists exactly the methods of its path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.utils.builders import Api, fast_password_hashing  # noqa: F401

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
OPERATOR_ENDPOINTS = [
    ("get", "/factory/status"),
    ("post", "/factory/remediate"),
    ("put", "/factory/breaker"),
    ("get", "/factory/incidents"),
    ("get", "/factory/incidents/{incident_id}"),
    ("get", "/factory/incidents/{incident_id}/report"),
]


async def _document(api: Api) -> dict[str, Any]:
    answer = await api.client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def _documented_error(document: dict[str, Any], method: str, path: str, code: int) -> bool:
    response = document["paths"][path][method]["responses"].get(str(code))
    if response is None:
        return False
    return bool(response["content"]["application/json"]["schema"] == ERROR_BODY)


class TestValidationErrors:
    async def test_a_non_json_body_is_a_400_and_documented_so(self, api: Api) -> None:
        admin = await api.admin()

        answer = await api.client.put(
            "/factory/breaker",
            headers={**admin.headers, "Content-Type": "application/json"},
            content=b"open, please",
        )
        document = await _document(api)

        assert answer.status_code == 400
        assert set(answer.json()) == {"message"}
        assert _documented_error(document, "put", "/factory/breaker", 400)

    async def test_no_operation_documents_a_422_or_a_range(self, api: Api) -> None:
        document = await _document(api)

        for path, item in document["paths"].items():
            for method, operation in item.items():
                codes = set(operation["responses"])
                assert "422" not in codes, (method, path)
                assert not {c for c in codes if not c.isdigit()}, (method, path, codes)
        assert "HTTPValidationError" not in document["components"]["schemas"]


class TestOperatorEndpoints:
    @pytest.mark.parametrize(("method", "path"), OPERATOR_ENDPOINTS)
    async def test_document_401_and_403(self, api: Api, method: str, path: str) -> None:
        document = await _document(api)

        assert _documented_error(document, method, path, 401)
        assert _documented_error(document, method, path, 403)

    @pytest.mark.parametrize(("method", "path"), OPERATOR_ENDPOINTS)
    async def test_answer_401_and_403_as_documented(self, api: Api, method: str, path: str) -> None:
        diner = await api.register()
        url = path.replace("{incident_id}", "1")
        body = {"state": "auto"} if method == "put" else None

        anonymous = await api.client.request(method, url, json=body)
        signed_in = await api.client.request(method, url, json=body, headers=diner.headers)

        assert anonymous.status_code == 401
        assert signed_in.status_code == 403
        assert set(anonymous.json()) == set(signed_in.json()) == {"message"}

    async def test_a_markdown_report_still_documents_json_errors(self, api: Api) -> None:
        document = await _document(api)
        report = document["paths"]["/factory/incidents/{incident_id}/report"]["get"]

        assert set(report["responses"]["200"]["content"]) == {"text/markdown"}
        assert _documented_error(document, "get", "/factory/incidents/{incident_id}/report", 404)


class TestOrderAnswers:
    async def test_every_answer_of_an_order_is_documented(self, api: Api) -> None:
        document = await _document(api)
        responses = document["paths"]["/api/order"]["post"]["responses"]
        answer_body = {"$ref": "#/components/schemas/OrderAnswerOut"}

        assert set(responses) == {"200", "202", "400", "401", "409", "413", "502", "503"}
        for code in ("200", "202", "502", "503"):
            assert responses[code]["content"]["application/json"]["schema"] == answer_body
        assert set(responses["202"]["headers"]) == {"Location", "Preference-Applied"}
        assert set(responses["503"]["headers"]) == {"Retry-After"}
        assert set(document["paths"]["/api/auth"]["put"]["responses"]["429"]["headers"]) == {
            "Retry-After"
        }


class TestMethodNotAllowed:
    @pytest.mark.parametrize(
        ("path", "allowed"),
        [
            ("/api/franchise", {"GET", "POST"}),
            ("/api/order", {"GET", "POST"}),
            ("/api/order/menu", {"GET", "PUT"}),
            ("/api/user/1", {"PUT", "DELETE"}),
            ("/api/auth", {"POST", "PUT", "DELETE"}),
            ("/api/franchise/1", {"GET", "DELETE"}),
            ("/api/user/me", {"GET"}),
        ],
    )
    async def test_allow_lists_exactly_what_the_path_serves(
        self, api: Api, path: str, allowed: set[str]
    ) -> None:
        # OPTIONS without Origin/Access-Control-Request-Method: not a preflight.
        answer = await api.client.options(path)

        assert answer.status_code == 405
        assert set(answer.headers["allow"].split(", ")) == allowed
        assert set(answer.json()) == {"message"}

    async def test_a_literal_path_is_not_taken_for_a_template(self, api: Api) -> None:
        admin = await api.admin()

        # /api/user/me serves GET only: PUT /api/user/{userId} must not take "me" for an id.
        answer = await api.client.put("/api/user/me", headers=admin.headers, json={"name": "x"})

        assert answer.status_code == 405
        assert answer.headers["allow"] == "GET"

    async def test_the_document_has_one_path_item_per_url_template(self, api: Api) -> None:
        document = await _document(api)
        served = {
            (method.upper(), path) for path, item in document["paths"].items() for method in item
        }

        assert ("GET", "/api/franchise/{id}") in served
        assert ("DELETE", "/api/franchise/{id}") in served
        for path in document["paths"]:
            methods = {m.upper() for m in document["paths"][path]}
            example = path.replace("{id}", "1").replace("{userId}", "1")
            if "{" in example:
                continue
            answer = await api.client.request("PATCH", example)
            assert set(answer.headers["allow"].split(", ")) - {"HEAD"} == methods, path

    async def test_a_browser_preflight_is_still_answered_by_cors(self, api: Api) -> None:
        answer = await api.client.options(
            "/api/franchise",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
            },
        )

        assert answer.status_code == 200
        assert "POST" in answer.headers["access-control-allow-methods"]
