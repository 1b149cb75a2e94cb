"""The simulator answers as docs/factory.md says the factory does, over real HTTP."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from factory_sim import BAD_JWT, VENDOR_ID, SimulatorConfig, create_simulator_app
from tests.clients.conftest import SIMULATOR_API_KEY as KEY
from tests.clients.conftest import SIMULATOR_AUTH as AUTH
from tests.clients.conftest import FakeClock
from tests.utils.servers import serve_in_thread
from tests.utils.simulator import REMOVAL, admin

JSON_UTF8 = "application/json; charset=utf-8"
FRONT_END = "http://localhost:5173"
RESOLVED = {"message": "Problem resolved. Pizza is back on the menu!"}
UNRESOLVED = {"message": "Problem unresolved"}
NO_CHAOS = {"message": "No chaos currently executing"}
BAD_KEY = {"message": "invalid authentication"}
DINER = {"id": 719, "name": "j", "email": "j@jwt.com"}
VENDOR = {"id": VENDOR_ID, "name": "JWT Pizza Simulator"}
_order_ids = itertools.count(1000)


def new_order(items: int = 1) -> dict[str, Any]:
    """An order body with an id no other test uses (stats are per order id)."""
    item = {"menuId": 1, "description": "Veggie", "price": 0.0038}
    order = {"id": next(_order_ids), "franchiseId": 4, "storeId": 5, "items": [item] * items}
    return {"diner": DINER, "order": order}


async def order(client: httpx.AsyncClient, body: dict[str, Any] | None = None) -> httpx.Response:
    return await client.post("/api/order", json=body or new_order(), headers=AUTH)


async def chaos(client: httpx.AsyncClient, kind: str, **params: object) -> None:
    answer = await client.put(f"/api/vendor/chaos/{kind}", params=params, headers=AUTH)
    assert answer.json() == {"message": "Chaos initiated"}


async def verify_locally(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """Check a pizza as a client would: against the published key set."""
    keys = jwt.PyJWKSet.from_dict((await client.get("/.well-known/jwks.json")).json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key, algorithms=["RS256"])


def at(base_url: str, link: str) -> str:
    """A remediation link followed at the simulator's real scheme and port (docs/factory.md)."""
    return re.sub(r"^https:?//127\.0\.0\.1", base_url, link)


def fix_code(link: str) -> str:
    return re.split(r"[/=]", link)[-1]


class TestPizza:
    async def test_a_pizza_is_rs256_signed_with_its_claims_in_the_header(
        self, simulator: httpx.AsyncClient, simulator_clock: FakeClock
    ) -> None:
        body = new_order()
        answer = await order(simulator, body)

        assert answer.status_code == 200
        assert list(answer.json()) == ["jwt"]
        token = answer.json()["jwt"]
        assert await verify_locally(simulator, token) == {
            "vendor": VENDOR,
            **body,
        }
        header = jwt.get_unverified_header(token)
        assert set(header) == {"alg", "kid", "iat", "exp", "iss"}  # as the real factory's
        assert header["alg"] == "RS256"
        assert header["iss"] == "cs329.click"
        assert header["iat"] == int(simulator_clock())
        assert header["exp"] == header["iat"] + 24 * 3600

    async def test_the_key_set_publishes_one_rsa_2048_signing_key(
        self, simulator: httpx.AsyncClient
    ) -> None:
        keys = (await simulator.get("/.well-known/jwks.json")).json()["keys"]

        assert len(keys) == 1
        key = keys[0]
        assert set(key) == {"kty", "kid", "n", "e"}  # as the real factory's
        assert (key["kty"], key["e"]) == ("RSA", "AQAB")
        assert key["kid"]
        modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
        assert len(modulus) * 8 == 2048

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer not-the-key"}, {"Authorization": f"Basic {KEY}"}],
        ids=["no key", "wrong key", "another scheme"],
    )
    async def test_a_wrong_key_is_refused_before_the_body_is_read(
        self, simulator: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        answer = await simulator.post("/api/order", content=b"not json", headers=headers)

        assert (answer.status_code, answer.json()) == (401, BAD_KEY)

    @pytest.mark.parametrize(
        "body",
        [{"order": new_order()["order"]}, {"diner": DINER}, "not json"],
        ids=["no diner", "no order", "not json"],
    )
    async def test_an_incomplete_order_is_refused(
        self, simulator: httpx.AsyncClient, body: object
    ) -> None:
        content = body if isinstance(body, str) else json.dumps(body)
        answer = await simulator.post("/api/order", content=content, headers=AUTH)

        assert answer.status_code == 400
        assert answer.json() == {"message": "Missing required parameters"}

    @pytest.mark.parametrize("items", [0, 21])
    async def test_an_empty_or_oversized_order_is_refused_slowly(
        self, simulator: httpx.AsyncClient, items: int
    ) -> None:
        started = time.monotonic()
        answer = await order(simulator, new_order(items))

        assert time.monotonic() - started >= 0.1
        assert answer.status_code == 503
        assert answer.json() == {"message": "Unable to satisfy pizza order. The oven is full."}

    async def test_twenty_items_still_make_a_pizza(self, simulator: httpx.AsyncClient) -> None:
        assert (await order(simulator, new_order(20))).status_code == 200


class TestVerify:
    async def test_a_fresh_pizza_is_valid(self, simulator: httpx.AsyncClient) -> None:
        body = new_order()
        token = (await order(simulator, body)).json()["jwt"]

        answer = await simulator.post("/api/order/verify", json={"jwt": token})

        assert answer.status_code == 200
        assert answer.json() == {
            "message": "valid",
            "payload": {"vendor": VENDOR, **body},
        }

    async def test_only_the_signature_is_checked_as_by_the_real_factory(
        self, simulator: httpx.AsyncClient, simulator_clock: FakeClock
    ) -> None:
        """A pizza past its header's exp still verifies here: the service checks exp."""
        token = (await order(simulator)).json()["jwt"]
        simulator_clock.advance(24 * 3600 + 1)

        answer = await simulator.post("/api/order/verify", json={"jwt": token})

        assert (answer.status_code, answer.json()["message"]) == (200, "valid")

    async def test_a_pizza_signed_by_another_key_is_invalid(
        self, simulator: httpx.AsyncClient, simulator_clock: FakeClock
    ) -> None:
        genuine = jwt.get_unverified_header((await order(simulator)).json()["jwt"])
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(new_order(), other_key, algorithm="RS256", headers=genuine)

        answer = await simulator.post("/api/order/verify", json={"jwt": forged})

        assert (answer.status_code, answer.json()) == (403, {"message": "invalid"})

    @pytest.mark.parametrize("body", [{"jwt": BAD_JWT}, {"jwt": "a.b.c"}, {"jwt": 7}, {}], ids=repr)
    async def test_anything_else_is_invalid(
        self, simulator: httpx.AsyncClient, body: dict[str, object]
    ) -> None:
        answer = await simulator.post("/api/order/verify", json=body)

        assert (answer.status_code, answer.json()) == (403, {"message": "invalid"})


class TestChaos:
    async def test_fail_answers_500_at_once_with_a_link(self, simulator: httpx.AsyncClient) -> None:
        await chaos(simulator, "fail")

        answer = await order(simulator)

        assert answer.status_code == 500
        assert answer.headers["content-type"] == JSON_UTF8
        assert answer.json() == {"message": "chaos monkey", "reportUrl": answer.json()["reportUrl"]}
        assert answer.json()["reportUrl"].startswith("https://")

    async def test_throttle_makes_a_valid_pizza_after_the_delay(
        self, simulator: httpx.AsyncClient
    ) -> None:
        await chaos(simulator, "throttle")

        started = time.monotonic()
        answer = await order(simulator)

        assert time.monotonic() - started >= 0.2
        assert answer.status_code == 200
        assert answer.json()["reportUrl"].startswith("https://")
        assert await verify_locally(simulator, answer.json()["jwt"])

    async def test_the_throttle_delay_can_be_set_with_the_chaos(
        self, simulator: httpx.AsyncClient
    ) -> None:
        await chaos(simulator, "throttle", throttle_delay_s=0.35)

        started = time.monotonic()
        answer = await order(simulator)

        assert time.monotonic() - started >= 0.35
        assert answer.status_code == 200

    async def test_badjwt_always_answers_the_same_unverifiable_token(
        self, simulator: httpx.AsyncClient
    ) -> None:
        await chaos(simulator, "badjwt")

        first, second = await order(simulator), await order(simulator)

        assert first.status_code == second.status_code == 200
        assert first.json()["jwt"] == second.json()["jwt"] == BAD_JWT
        assert first.json()["reportUrl"].startswith("https://")
        # The real factory's string: three segments, but not even a JSON header.
        assert BAD_JWT.count(".") == 2
        jwks = (await simulator.get("/.well-known/jwks.json")).json()
        only_key = jwt.PyJWKSet.from_dict(jwks).keys[0]
        with pytest.raises(jwt.PyJWTError):
            jwt.decode(BAD_JWT, only_key, algorithms=["RS256"])
        verdict = await simulator.post("/api/order/verify", json={"jwt": BAD_JWT})
        assert verdict.status_code == 403

    async def test_notjson_answers_an_html_page(self, simulator: httpx.AsyncClient) -> None:
        await chaos(simulator, "notjson")

        answer = await order(simulator)

        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        with pytest.raises(json.JSONDecodeError):
            answer.json()

    async def test_hang_never_answers(self, simulator: httpx.AsyncClient) -> None:
        await chaos(simulator, "hang")

        with pytest.raises(httpx.ReadTimeout):
            await simulator.post("/api/order", json=new_order(), headers=AUTH, timeout=0.3)

    @pytest.mark.parametrize("kind", ["none", "meteor"])
    async def test_there_is_no_chaos_none_nor_an_unknown_type(
        self, simulator: httpx.AsyncClient, kind: str
    ) -> None:
        await chaos(simulator, "fail")

        answer = await simulator.put(f"/api/vendor/chaos/{kind}", headers=AUTH)

        assert (answer.status_code, answer.json()) == (400, {"message": "Invalid chaos type"})
        assert (await order(simulator)).status_code == 500

    async def test_the_admin_removes_a_chaos(self, simulator: httpx.AsyncClient) -> None:
        await chaos(simulator, "fail")

        answer = await simulator.request(
            "DELETE", "/api/admin/vendor", json=REMOVAL, headers=admin()
        )

        assert (answer.status_code, answer.content) == (204, b"")
        assert "chaos" not in (await simulator.get("/api/vendor", headers=AUTH)).json()
        assert (await order(simulator)).status_code == 200

    @pytest.mark.parametrize(
        ("headers", "body", "expected"),
        [
            (AUTH, REMOVAL, (401, BAD_KEY)),
            (admin(), {"id": VENDOR_ID}, (400, {"message": "Missing required parameter"})),
            (admin(), {"deleteType": "chaos"}, (400, {"message": "Missing required parameter"})),
        ],
        ids=["vendor key", "no delete type", "no id"],
    )
    async def test_only_the_admin_removes_a_chaos_and_says_which(
        self,
        simulator: httpx.AsyncClient,
        headers: dict[str, str],
        body: dict[str, str],
        expected: tuple[int, dict[str, str]],
    ) -> None:
        await chaos(simulator, "fail")

        answer = await simulator.request("DELETE", "/api/admin/vendor", json=body, headers=headers)

        assert (answer.status_code, answer.json()) == expected
        assert (await order(simulator)).status_code == 500

    async def test_a_wrong_key_cannot_start_chaos(self, simulator: httpx.AsyncClient) -> None:
        answer = await simulator.put(
            "/api/vendor/chaos/fail", headers={"Authorization": "Bearer x"}
        )

        assert (answer.status_code, answer.json()) == (401, BAD_KEY)
        assert (await order(simulator)).status_code == 200

    async def test_scheduled_chaos_starts_at_its_time(
        self, simulator: httpx.AsyncClient, simulator_clock: FakeClock
    ) -> None:
        await chaos(simulator, "fail", start_delay_s=60)

        assert (await order(simulator)).status_code == 200
        simulator_clock.advance(59.9)
        assert (await order(simulator)).status_code == 200
        simulator_clock.advance(0.1)
        assert (await order(simulator)).status_code == 500


class TestRemediationLink:
    async def test_the_path_link_names_the_requested_host_in_https_without_a_port(
        self, simulator: httpx.AsyncClient
    ) -> None:
        await chaos(simulator, "fail")

        link = (await order(simulator)).json()["reportUrl"]

        assert re.fullmatch(rf"https://127\.0\.0\.1/api/support/{KEY}/report/\w+", link)

    async def test_the_link_follows_the_host_header(self, simulator: httpx.AsyncClient) -> None:
        await chaos(simulator, "fail")

        answer = await simulator.post(
            "/api/order",
            json=new_order(),
            headers={**AUTH, "Host": "pizza-factory.example:8443"},
        )

        assert answer.json()["reportUrl"].startswith(
            f"https://pizza-factory.example/api/support/{KEY}/report/"
        )

    @pytest.mark.parametrize(
        ("style", "shape"),
        [
            ("path", rf"https://127\.0\.0\.1/api/support/{KEY}/report/\w+"),
            ("mangled", rf"https//127\.0\.0\.1/api/support/{KEY}/report/\w+"),
            ("query", rf"https://127\.0\.0\.1/api/support/resolve\?apiKey={KEY}&fixCode=\w+"),
        ],
    )
    async def test_following_the_link_ends_the_chaos(
        self, simulator: httpx.AsyncClient, simulator_url: str, style: str, shape: str
    ) -> None:
        await chaos(simulator, "fail", link_style=style)
        link = (await order(simulator)).json()["reportUrl"]
        assert re.fullmatch(shape, link)

        answer = await simulator.get(at(simulator_url, link))

        assert (answer.status_code, answer.json()) == (200, RESOLVED)
        assert (await order(simulator)).status_code == 200
        again = await simulator.get(at(simulator_url, link))
        assert (again.status_code, again.json()) == (200, NO_CHAOS)
        # The record keeps the chaos, fixed: type none, with its fix date.
        record = (await simulator.get("/api/vendor", headers=AUTH)).json()["chaos"]
        assert set(record) == {"type", "initiatedDate", "startDate", "fixDate"}
        assert record["type"] == "none"

    @pytest.mark.parametrize("style", ["path", "query"])
    async def test_a_wrong_fix_code_leaves_the_chaos_running(
        self, simulator: httpx.AsyncClient, simulator_url: str, style: str
    ) -> None:
        await chaos(simulator, "fail", link_style=style)
        link = (await order(simulator)).json()["reportUrl"]

        answer = await simulator.get(at(simulator_url, link).replace(fix_code(link), "0000"))

        assert (answer.status_code, answer.json()) == (400, UNRESOLVED)
        assert (await order(simulator)).status_code == 500

    @pytest.mark.parametrize("style", ["path", "query"])
    async def test_a_wrong_key_in_the_link_fixes_nothing(
        self, simulator: httpx.AsyncClient, simulator_url: str, style: str
    ) -> None:
        await chaos(simulator, "fail", link_style=style)
        link = (await order(simulator)).json()["reportUrl"]

        answer = await simulator.get(at(simulator_url, link).replace(KEY, "stolen-key"))

        # As the real factory: no chaos for a key it does not know.
        assert (answer.status_code, answer.json()) == (200, NO_CHAOS)
        assert (await order(simulator)).status_code == 500

    async def test_each_activation_has_a_new_fix_code(
        self, simulator: httpx.AsyncClient, simulator_url: str
    ) -> None:
        await chaos(simulator, "fail")
        old_link = (await order(simulator)).json()["reportUrl"]
        await chaos(simulator, "fail")
        new_link = (await order(simulator)).json()["reportUrl"]

        assert fix_code(old_link) != fix_code(new_link)
        stale = await simulator.get(at(simulator_url, old_link))
        assert (stale.status_code, stale.json()) == (400, UNRESOLVED)

    async def test_without_chaos_the_link_says_so(self, simulator: httpx.AsyncClient) -> None:
        answer = await simulator.get(f"/api/support/{KEY}/report/anything")

        assert (answer.status_code, answer.json()) == (200, NO_CHAOS)


@pytest.fixture(scope="module")
def query_factory_url() -> Iterator[str]:
    config = SimulatorConfig(
        api_key=KEY, link_style="query", resolve_url="https://ops.example/pizza/resolve"
    )
    with serve_in_thread(create_simulator_app(config)) as url:
        yield url


class TestConfiguredLinks:
    async def test_the_configured_resolve_url_is_the_link_base(
        self, query_factory_url: str
    ) -> None:
        async with httpx.AsyncClient(base_url=query_factory_url) as client:
            await chaos(client, "badjwt")
            link = (await order(client)).json()["reportUrl"]

        assert re.fullmatch(rf"https://ops\.example/pizza/resolve\?apiKey={KEY}&fixCode=\w+", link)


class TestVendor:
    async def test_the_record_without_chaos_has_the_real_factory_s_fields(
        self, simulator: httpx.AsyncClient
    ) -> None:
        answer = await simulator.get("/api/vendor", headers=AUTH)

        record = answer.json()
        assert answer.status_code == 200
        assert list(record) == ["id", "name", "email", "apiKey", "created", "roles", "connections"]
        assert {k: record[k] for k in ("id", "name", "apiKey")} == {**VENDOR, "apiKey": KEY}
        assert (record["roles"], record["connections"]) == (["vendor"], {})

    async def test_scheduled_chaos_shows_its_type_and_start_before_it_runs(
        self, simulator: httpx.AsyncClient, simulator_clock: FakeClock
    ) -> None:
        await chaos(simulator, "fail", start_delay_s=3600)

        answer = await simulator.get("/api/vendor", headers=AUTH)

        record = answer.json()["chaos"]
        assert set(record) == {"type", "initiatedDate", "startDate"}
        assert record["type"] == "fail"
        expected = datetime.fromtimestamp(simulator_clock() + 3600, UTC)
        assert abs(datetime.fromisoformat(record["startDate"]) - expected) < timedelta(seconds=1)
        assert (await order(simulator)).status_code == 200  # scheduled, not yet running

    async def test_running_chaos_hides_its_fix_code(self, simulator: httpx.AsyncClient) -> None:
        await chaos(simulator, "badjwt")
        link = (await order(simulator)).json()["reportUrl"]

        answer = await simulator.get("/api/vendor", headers=AUTH)

        assert answer.json()["chaos"]["type"] == "badjwt"
        assert fix_code(link) not in answer.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/order"),
        ("GET", "/api/vendor"),
        ("PUT", "/api/vendor/chaos/fail"),
        ("GET", "/api/sim/stats"),
        ("DELETE", "/api/admin/vendor"),
    ],
)
async def test_a_wrong_key_is_refused_everywhere(
    simulator: httpx.AsyncClient, method: str, path: str
) -> None:
    answer = await simulator.request(method, path, headers={"Authorization": "Bearer wrong-key"})

    assert (answer.status_code, answer.json()) == (401, BAD_KEY)
    assert answer.headers["content-type"] == JSON_UTF8


class TestEveryAnswerIsJson:
    async def test_an_unknown_path(self, simulator: httpx.AsyncClient) -> None:
        answer = await simulator.get("/api/nothing-here")

        assert (answer.status_code, answer.json()) == (404, {"message": "unknown endpoint"})
        assert answer.headers["content-type"] == JSON_UTF8

    async def test_a_malformed_parameter_is_a_400_not_a_422(
        self, simulator: httpx.AsyncClient
    ) -> None:
        answer = await simulator.put(
            "/api/vendor/chaos/fail", params={"start_delay_s": "soon"}, headers=AUTH
        )

        assert answer.status_code == 400
        assert answer.headers["content-type"] == JSON_UTF8
        assert "start_delay_s" in answer.json()["message"]
        assert (await order(simulator)).status_code == 200


class TestCors:
    PREFLIGHT = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization",
    }

    async def test_the_front_end_may_call_verify_from_the_browser(
        self, simulator: httpx.AsyncClient
    ) -> None:
        answer = await simulator.options(
            "/api/order/verify", headers={"Origin": FRONT_END, **self.PREFLIGHT}
        )

        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == FRONT_END
        assert answer.headers["access-control-allow-credentials"] == "true"
        methods = answer.headers["access-control-allow-methods"].split(", ")
        assert {"GET", "POST", "PUT", "DELETE"} <= set(methods)
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert {"content-type", "authorization"} <= set(allowed.split(", "))

    async def test_any_origin_is_allowed_as_by_the_real_factory(
        self, simulator: httpx.AsyncClient
    ) -> None:
        answer = await simulator.options(
            "/api/order/verify", headers={"Origin": "https://elsewhere.example", **self.PREFLIGHT}
        )

        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://elsewhere.example"

    async def test_an_error_answer_still_carries_the_cors_headers(
        self, simulator: httpx.AsyncClient
    ) -> None:
        answer = await simulator.post(
            "/api/order/verify", json={"jwt": "x"}, headers={"Origin": FRONT_END}
        )

        assert answer.status_code == 403
        assert answer.headers["access-control-allow-origin"] == FRONT_END
        assert answer.headers["access-control-allow-credentials"] == "true"


class TestStats:
    async def test_stats_count_pizzas_per_order_and_every_order_call(
        self, simulator: httpx.AsyncClient
    ) -> None:
        before = (await simulator.get("/api/sim/stats", headers=AUTH)).json()
        twice, once = new_order(), new_order()

        await order(simulator, twice)
        await order(simulator, twice)
        await order(simulator, once)
        await simulator.post("/api/order", json=new_order())  # no key: a call, no pizza
        await chaos(simulator, "fail")
        await order(simulator, once)  # chaos: a call, no pizza

        after = (await simulator.get("/api/sim/stats", headers=AUTH)).json()
        assert after["calls"] - before["calls"] == 5
        assert after["pizzas"][str(twice["order"]["id"])] == 2
        assert after["pizzas"][str(once["order"]["id"])] == 1


async def test_the_docs_list_every_endpoint(simulator: httpx.AsyncClient) -> None:
    answer = await simulator.get("/api/docs")

    listed = {(e["method"], e["path"]) for e in answer.json()["endpoints"]}
    assert answer.json()["version"]
    assert listed == {
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/api/order"),
        ("POST", "/api/order/verify"),
        ("GET", "/api/vendor"),
        ("PUT", "/api/vendor/chaos/{chaos_type}"),
        ("DELETE", "/api/admin/vendor"),
        ("GET", "/api/support/{api_key}/report/{fix_code}"),
        ("GET", "/api/support/resolve"),
        ("GET", "/api/sim/stats"),
        ("GET", "/api/docs"),
    }
    assert all(e["description"] for e in answer.json()["endpoints"])
