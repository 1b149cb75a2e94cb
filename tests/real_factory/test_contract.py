"""What the real factory answers, where the service relies on it (docs/factory.md's facts, checked
against the factory itself rather than against what we believe of it)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from tests.utils.real_factory import RealFactory, Vendor

# The real factory runs as node on MariaDB: a process of its own, started per module.
pytestmark = pytest.mark.slow

RESOLVED = {"message": "Problem resolved. Pizza is back on the menu!"}
UNRESOLVED = {"message": "Problem unresolved"}
NO_CHAOS = {"message": "No chaos currently executing"}
BAD_KEY = {"message": "invalid authentication"}
JSON_UTF8 = "application/json; charset=utf-8"
DINER = {"id": 719, "name": "j", "email": "j@jwt.com"}
ORDER = {"id": 278, "franchiseId": 4, "storeId": 5, "items": [{"menuId": 1, "price": 0.0038}]}
CUSTOMER_WAIT_S = 5.0  # FACTORY_TIMEOUT_S's default: how long the service waits for a pizza


def order(factory: RealFactory, vendor: Vendor, *, timeout_s: float = 60.0) -> httpx.Response:
    with factory.client(timeout=timeout_s) as http:
        body = {"diner": DINER, "order": ORDER}
        return http.post("/api/order", json=body, headers=vendor.headers)


def follow(factory: RealFactory, link: str) -> httpx.Response:
    """A link as the service follows it: the factory's path, at its real scheme and port."""
    with factory.client() as http:
        return http.get(httpx.URL(link).path)


def link_shape(vendor: Vendor) -> str:
    return rf"https://127\.0\.0\.1/api/support/{vendor.api_key}/report/(\w+)"


def parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def verify(factory: RealFactory, token: str) -> dict[str, Any]:
    """The pizza's payload, checked against the published key set as the service does."""
    with factory.client() as http:
        keys = jwt.PyJWKSet.from_dict(http.get("/.well-known/jwks.json").json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    payload: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"])
    return payload


class TestWithoutChaos:
    def test_a_pizza_is_an_rs256_jws_with_its_claims_in_the_header(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        answer = order(real_factory, vendor)

        assert answer.status_code == 200
        assert answer.headers["content-type"] == JSON_UTF8
        assert list(answer.json()) == ["jwt"]  # no reportUrl without chaos
        token = answer.json()["jwt"]
        header = jwt.get_unverified_header(token)
        assert set(header) == {"alg", "kid", "iat", "exp", "iss"}
        assert (header["alg"], header["iss"]) == ("RS256", "cs329.click")
        assert header["exp"] == header["iat"] + 24 * 3600
        assert verify(real_factory, token) == {
            "vendor": {"id": vendor.id, "name": "Pizza vendor"},
            "diner": DINER,
            "order": ORDER,
        }
        with real_factory.client() as http:
            checked = http.post("/api/order/verify", json={"jwt": token})
        assert (checked.status_code, checked.json()["message"]) == (200, "valid")

    def test_the_key_set_publishes_one_rsa_key(self, real_factory: RealFactory) -> None:
        with real_factory.client() as http:
            keys = http.get("/.well-known/jwks.json").json()["keys"]

        assert len(keys) == 1
        assert set(keys[0]) == {"kty", "kid", "n", "e"}
        assert (keys[0]["kty"], keys[0]["e"]) == ("RSA", "AQAB")

    def test_the_vendor_record_carries_no_chaos_and_the_api_key(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        record = real_factory.vendor_record(vendor)

        assert record["id"] == vendor.id
        assert record["apiKey"] == vendor.api_key  # a secret the service must never show
        assert "chaos" not in record
        assert record["roles"] == ["vendor"]

    def test_the_link_says_no_chaos(self, real_factory: RealFactory, vendor: Vendor) -> None:
        answer = follow(real_factory, f"https://127.0.0.1/api/support/{vendor.api_key}/report/x")

        assert (answer.status_code, answer.json()) == (200, NO_CHAOS)


class TestEachChaosMode:
    def test_fail_answers_500_with_the_link(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "fail")

        answer = order(real_factory, vendor)

        assert answer.status_code == 500
        assert answer.headers["content-type"] == JSON_UTF8
        body = answer.json()
        assert body == {"message": "chaos monkey", "reportUrl": body["reportUrl"]}
        # https, and the host without the port the factory listens on
        fix_code = re.fullmatch(link_shape(vendor), body["reportUrl"])
        assert fix_code is not None, body["reportUrl"]
        assert fix_code[1] == real_factory.chaos_row(vendor)["fixCode"]

    def test_badjwt_answers_200_with_a_pizza_that_does_not_verify(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "badjwt")

        first, second = order(real_factory, vendor), order(real_factory, vendor)

        assert first.status_code == second.status_code == 200
        assert set(first.json()) == {"jwt", "reportUrl"}
        assert re.fullmatch(link_shape(vendor), first.json()["reportUrl"])
        token = first.json()["jwt"]
        assert second.json()["jwt"] == token  # always the same string
        with pytest.raises(jwt.PyJWTError):
            verify(real_factory, token)
        with real_factory.client() as http:
            checked = http.post("/api/order/verify", json={"jwt": token})
        assert (checked.status_code, checked.json()) == (403, {"message": "invalid"})

    def test_throttle_answers_a_valid_pizza_with_the_link_only_after_the_customer_gave_up(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        """The one test here that waits for the throttle (32 s)."""
        real_factory.start_chaos(vendor, "throttle")

        with ThreadPoolExecutor(2) as pool:
            patient = pool.submit(order, real_factory, vendor)
            customer = pool.submit(order, real_factory, vendor, timeout_s=CUSTOMER_WAIT_S)
            with pytest.raises(httpx.ReadTimeout):
                customer.result()
            # Meanwhile the vendor record already says so (the service reads it).
            assert real_factory.vendor_record(vendor)["chaos"]["type"] == "throttle"
            answer = patient.result()

        assert answer.status_code == 200
        assert set(answer.json()) == {"jwt", "reportUrl"}
        assert re.fullmatch(link_shape(vendor), answer.json()["reportUrl"])
        assert verify(real_factory, answer.json()["jwt"])["order"] == ORDER

    @pytest.mark.parametrize("mode", ["fail", "badjwt", "throttle"])
    def test_the_vendor_record_names_a_running_chaos_without_its_fix_code(
        self, real_factory: RealFactory, vendor: Vendor, mode: str
    ) -> None:
        start = real_factory.start_chaos(vendor, mode)

        record = real_factory.vendor_record(vendor)

        chaos = record["chaos"]
        assert set(chaos) == {"type", "initiatedDate", "startDate"}
        assert chaos["type"] == mode
        assert abs(parse(chaos["startDate"]) - start) < timedelta(milliseconds=1)
        assert real_factory.chaos_row(vendor)["fixCode"] not in str(record)


class TestTheFix:
    def test_following_the_link_fixes_the_chaos_and_the_record_keeps_type_none(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "fail")
        link = order(real_factory, vendor).json()["reportUrl"]

        fixed = follow(real_factory, link)

        assert (fixed.status_code, fixed.json()) == (200, RESOLVED)
        after = order(real_factory, vendor)
        assert after.status_code == 200
        assert list(after.json()) == ["jwt"]
        # The key stays: type none, with its fix date (the service must read it as no chaos).
        chaos = real_factory.vendor_record(vendor)["chaos"]
        assert set(chaos) == {"type", "initiatedDate", "startDate", "fixDate"}
        assert chaos["type"] == "none"
        assert parse(chaos["fixDate"]) >= parse(chaos["startDate"])
        again = follow(real_factory, link)
        assert (again.status_code, again.json()) == (200, NO_CHAOS)

    def test_a_wrong_fix_code_leaves_the_chaos_running(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "fail")
        link = order(real_factory, vendor).json()["reportUrl"]

        answer = follow(real_factory, link.rsplit("/", 1)[0] + "/wrongcode")

        assert (answer.status_code, answer.json()) == (400, UNRESOLVED)
        assert order(real_factory, vendor).status_code == 500

    def test_a_new_chaos_has_a_new_fix_code(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "fail")
        old = order(real_factory, vendor).json()["reportUrl"]
        real_factory.start_chaos(vendor, "fail")
        new = order(real_factory, vendor).json()["reportUrl"]

        assert old != new
        stale = follow(real_factory, old)
        assert (stale.status_code, stale.json()) == (400, UNRESOLVED)

    def test_there_is_no_chaos_none_to_end_it(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        with real_factory.client() as http:
            answer = http.put("/api/vendor/chaos/none", headers=vendor.headers)

        assert (answer.status_code, answer.json()) == (400, {"message": "Invalid chaos type"})


class TestAnAdmin:
    @pytest.mark.parametrize("fixed_first", [False, True], ids=["running", "fixed"])
    def test_removes_a_chaos_and_the_record_has_none(
        self, real_factory: RealFactory, vendor: Vendor, fixed_first: bool
    ) -> None:
        real_factory.start_chaos(vendor, "fail")
        link = order(real_factory, vendor).json()["reportUrl"]
        if fixed_first:
            follow(real_factory, link)

        removed = real_factory.remove_chaos(vendor)

        assert (removed.status_code, removed.content) == (204, b"")
        assert "chaos" not in real_factory.vendor_record(vendor)
        assert order(real_factory, vendor).status_code == 200
        after = follow(real_factory, link)
        assert (after.status_code, after.json()) == (200, NO_CHAOS)

    def test_only_an_admin_may_remove_a_chaos(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "fail")
        body = {"id": vendor.id, "deleteType": "chaos"}

        with real_factory.client() as http:
            refused = http.request("DELETE", "/api/admin/vendor", json=body, headers=vendor.headers)
            incomplete = http.request(
                "DELETE",
                "/api/admin/vendor",
                json={"id": vendor.id},
                headers=real_factory.admin_headers,
            )

        assert (refused.status_code, refused.json()) == (401, BAD_KEY)
        assert (incomplete.status_code, incomplete.json()) == (
            400,
            {"message": "Missing required parameter"},
        )
        assert order(real_factory, vendor).status_code == 500


class TestAScheduledChaos:
    def test_has_no_effect_before_its_start(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        start = real_factory.start_chaos(vendor, "fail", now=False)

        # The factory's own schedule: a random time the next morning.
        assert start > datetime.now(UTC)
        record = real_factory.vendor_record(vendor)
        assert record["chaos"]["type"] == "fail"
        assert set(record["chaos"]) == {"type", "initiatedDate", "startDate"}
        before = order(real_factory, vendor)
        assert before.status_code == 200
        assert list(before.json()) == ["jwt"]

        real_factory.move_chaos_start(vendor, datetime.now(UTC))

        assert order(real_factory, vendor).status_code == 500


class TestAWrongKey:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer not-a-vendor"}],
        ids=["none", "unknown"],
    )
    def test_is_refused_for_orders_the_vendor_record_and_chaos(
        self, real_factory: RealFactory, headers: dict[str, str]
    ) -> None:
        with real_factory.client() as http:
            answers = [
                http.post("/api/order", json={"diner": DINER, "order": ORDER}, headers=headers),
                http.get("/api/vendor", headers=headers),
                http.put("/api/vendor/chaos/fail", headers=headers),
            ]

        assert [(a.status_code, a.json()) for a in answers] == [(401, BAD_KEY)] * 3

    def test_in_a_link_fixes_nothing_and_says_no_chaos(
        self, real_factory: RealFactory, vendor: Vendor
    ) -> None:
        real_factory.start_chaos(vendor, "fail")
        link = order(real_factory, vendor).json()["reportUrl"]
        other = real_factory.new_vendor()

        wrong = follow(real_factory, link.replace(vendor.api_key, "stolen-key"))
        someone_else = follow(real_factory, link.replace(vendor.api_key, other.api_key))

        assert (wrong.status_code, wrong.json()) == (200, NO_CHAOS)
        assert (someone_else.status_code, someone_else.json()) == (200, NO_CHAOS)
        assert order(real_factory, vendor).status_code == 500
