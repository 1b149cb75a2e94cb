"""The simulator cannot drift: the same requests go to the simulator and to the real factory,
and their answers (status, content type, body) and vendor records must be the same once
what differs by nature is normalized: keys, ids, names, dates, fix codes, and the pizza
JWT's signature and times (each pizza must verify against its own factory's key set).

The one difference in how they are driven: the real factory schedules a chaos for a
random time the next morning, so its start is pulled to now in its database (as its own
tests do); the simulator starts it at once. A chaos meant to stay scheduled is asked of
the simulator with `start_delay_s` (simulator only; the real factory ignores the query),
and its start is then pulled to now where the simulator keeps it.
The simulator's throttle is short; the real one waits 32 s (this test's one long wait).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest

from factory_sim import BAD_JWT, VENDOR_ID, SimulatorConfig, create_simulator_app
from tests.utils.real_factory import RealFactory, Vendor
from tests.utils.servers import serve_in_thread

# The real factory runs as node on MariaDB: a process of its own, started per module.
pytestmark = pytest.mark.slow

DINER = {"id": 719, "name": "j", "email": "j@jwt.com"}
ORDER = {"id": 278, "franchiseId": 4, "storeId": 5, "items": [{"menuId": 1, "price": 0.0038}]}
TOMORROW_S = 16 * 3600
ORIGIN = "http://localhost:5173"
DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LINK = re.compile(r"https://([^/]+)/api/support/([^/]+)/report/([a-z0-9]+)")


@dataclass
class Target:
    """One factory as the scenario drives it."""

    name: str
    http: httpx.Client
    vendor: Vendor
    admin_key: str
    pull_start_to_now: Callable[[], None]
    seen: list[tuple[str, Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def call(self, step: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; record its answer, normalized, under ``step``."""
        answer = self.http.request(method, path, **kwargs)
        self.seen.append((step, self.normalize(answer)))
        return answer

    def as_vendor(self) -> dict[str, str]:
        return self.vendor.headers

    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    # -- normalizing ------------------------------------------------------------------------

    def normalize(self, answer: httpx.Response) -> dict[str, Any]:
        seen: dict[str, Any] = {"status": answer.status_code}
        if answer.request.method == "OPTIONS":
            # Express answers a preflight with its own small text; what counts is the CORS.
            seen["allow-origin"] = answer.headers.get("access-control-allow-origin")
            return seen
        seen["type"] = answer.headers.get("content-type")
        if answer.content:
            seen["body"] = self.value(answer.json())
        return seen

    def value(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: self.value(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, str):
            return value
        if key == "jwt":
            return self.pizza(value)
        if key in ("n", "kid", "email"):  # the signing key's own numbers, the vendor's address
            return f"<{key}>"
        if key == "name" and value in ("Pizza vendor", "JWT Pizza Simulator"):
            return "<vendor name>"
        if LINK.fullmatch(value):
            self.links.append(value)
            host, api_key, _ = LINK.fullmatch(value).groups()  # type: ignore[union-attr]
            return f"https://{host}/api/support/{self.key(api_key)}/report/<fix code>"
        if DATE.fullmatch(value):
            ahead = datetime.fromisoformat(value.replace("Z", "+00:00")) > datetime.now(UTC)
            return "<date ahead>" if ahead else "<date>"
        return self.key(value)

    def key(self, text: str) -> str:
        replaced = {self.vendor.api_key: "<vendor key>", self.vendor.id: "<vendor id>"}
        return replaced.get(text, text.replace(self.vendor.id, "<vendor id>"))

    def pizza(self, token: str) -> Any:
        """A pizza JWT as what must hold of it: the real badjwt string, or a pizza that
        verifies against this factory's key set, with its claims where the real ones are."""
        if token == BAD_JWT:
            return "<the real factory's badjwt string>"
        keys = jwt.PyJWKSet.from_dict(self.http.get("/.well-known/jwks.json").json())
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(token, keys[header["kid"]], algorithms=["RS256"])
        return {
            "header": sorted(header),
            "alg": header["alg"],
            "iss": header["iss"],
            "lifetime_s": header["exp"] - header["iat"],
            "payload": self.value(payload),
        }


def scenario(factory: Target) -> None:
    """Every request the suite's use of the factory depends on, in one sequence."""
    vendor, admin, nobody = factory.as_vendor(), factory.as_admin(), {"Authorization": "Bearer x"}
    order = {"json": {"diner": DINER, "order": ORDER}}

    # The factory at rest.
    factory.call("key set", "GET", "/.well-known/jwks.json")
    factory.call("unknown endpoint", "GET", "/api/nothing-here")
    factory.call("vendor record", "GET", "/api/vendor", headers=vendor)
    made = factory.call("order", "POST", "/api/order", headers=vendor, **order)
    factory.call("verify a pizza", "POST", "/api/order/verify", json={"jwt": made.json()["jwt"]})
    factory.call("verify garbage", "POST", "/api/order/verify", json={"jwt": "a.b.c"})
    factory.call("preflight", "OPTIONS", "/api/order/verify", headers={"Origin": ORIGIN})
    for step, headers in (("no key", {}), ("unknown key", nobody)):
        factory.call(f"order, {step}", "POST", "/api/order", headers=headers, **order)
        factory.call(f"vendor record, {step}", "GET", "/api/vendor", headers=headers)
        factory.call(f"chaos, {step}", "PUT", "/api/vendor/chaos/fail", headers=headers)
    factory.call("link, no chaos", "GET", f"/api/support/{factory.vendor.api_key}/report/abc")
    factory.call("link, unknown key", "GET", "/api/support/stolen/report/abc")
    factory.call("chaos none", "PUT", "/api/vendor/chaos/none", headers=vendor)
    factory.call("chaos meteor", "PUT", "/api/vendor/chaos/meteor", headers=vendor)

    # fail: scheduled, then running, then fixed by its link.
    later = {"start_delay_s": TOMORROW_S}
    factory.call("schedule fail", "PUT", "/api/vendor/chaos/fail", headers=vendor, params=later)
    factory.call("record, fail scheduled", "GET", "/api/vendor", headers=vendor)
    factory.call("order, fail scheduled", "POST", "/api/order", headers=vendor, **order)
    factory.pull_start_to_now()
    link = factory.call("order, fail", "POST", "/api/order", headers=vendor, **order)
    path = httpx.URL(link.json()["reportUrl"]).path
    factory.call("record, fail running", "GET", "/api/vendor", headers=vendor)
    factory.call("link, wrong fix code", "GET", path.rsplit("/", 1)[0] + "/wrongcode")
    factory.call("link, wrong key", "GET", path.replace(factory.vendor.api_key, "stolen"))
    factory.call("order, still fail", "POST", "/api/order", headers=vendor, **order)
    factory.call("link", "GET", path)
    factory.call("record, fail fixed", "GET", "/api/vendor", headers=vendor)
    factory.call("link again", "GET", path)
    factory.call("order, fail fixed", "POST", "/api/order", headers=vendor, **order)

    # badjwt: running, then removed by the factory's admin.
    factory.call("start badjwt", "PUT", "/api/vendor/chaos/badjwt", headers=vendor)
    factory.pull_start_to_now()
    bad = factory.call("order, badjwt", "POST", "/api/order", headers=vendor, **order)
    factory.call("verify badjwt", "POST", "/api/order/verify", json={"jwt": bad.json()["jwt"]})
    removal = {"id": factory.vendor.id, "deleteType": "chaos"}
    delete = ("DELETE", "/api/admin/vendor")
    factory.call("remove, vendor key", *delete, headers=vendor, json=removal)
    factory.call("remove, no type", *delete, headers=admin, json={"id": factory.vendor.id})
    factory.call("order, badjwt kept", "POST", "/api/order", headers=vendor, **order)
    factory.call("remove", *delete, headers=admin, json=removal)
    factory.call("record, badjwt removed", "GET", "/api/vendor", headers=vendor)
    factory.call("order, badjwt removed", "POST", "/api/order", headers=vendor, **order)
    old = httpx.URL(bad.json()["reportUrl"]).path
    factory.call("link, badjwt removed", "GET", old)

    # throttle: running, fixed by its link, and the fixed chaos removed by the admin.
    factory.call("start throttle", "PUT", "/api/vendor/chaos/throttle", headers=vendor)
    factory.pull_start_to_now()
    factory.call("record, throttle running", "GET", "/api/vendor", headers=vendor)
    slow = factory.call("order, throttle", "POST", "/api/order", headers=vendor, **order)
    factory.call("link, throttle", "GET", httpx.URL(slow.json()["reportUrl"]).path)
    factory.call("record, throttle fixed", "GET", "/api/vendor", headers=vendor)
    factory.call("remove the fixed chaos", *delete, headers=admin, json=removal)
    factory.call("record, fixed chaos removed", "GET", "/api/vendor", headers=vendor)


@pytest.fixture
def real(real_factory: RealFactory) -> Iterator[Target]:
    vendor = real_factory.new_vendor()

    def pull_start_to_now() -> None:
        real_factory.move_chaos_start(vendor, datetime.now(UTC))

    with real_factory.client() as http:
        yield Target("real factory", http, vendor, real_factory.admin_key, pull_start_to_now)


@pytest.fixture
def simulated() -> Iterator[Target]:
    key, admin_key = secrets.token_hex(16), secrets.token_hex(6)
    config = SimulatorConfig(api_key=key, admin_key=admin_key, throttle_delay_s=0.2)
    app = create_simulator_app(config)

    def pull_start_to_now() -> None:
        # Where the simulator keeps the chaos, as the real factory's is moved in its database.
        chaos = app.state.simulator.vendor.chaos
        chaos.starts_at = min(chaos.starts_at, time.time())

    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield Target("simulator", http, Vendor(VENDOR_ID, key), admin_key, pull_start_to_now)


def test_the_simulator_answers_as_the_real_factory(real: Target, simulated: Target) -> None:
    scenario(simulated)
    scenario(real)

    assert [step for step, _ in simulated.seen] == [step for step, _ in real.seen]
    for (step, mine), (_, theirs) in zip(simulated.seen, real.seen, strict=True):
        assert mine == theirs, f"{step}: the simulator answers {mine}, the real factory {theirs}"
    # Both sides were really exercised: links seen, pizzas verified, a chaos fixed.
    assert len(real.links) == len(simulated.links) >= 3
