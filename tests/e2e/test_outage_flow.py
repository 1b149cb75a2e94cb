"""An outage as the JWT Pizza front end and the operators really see it.

`pizza factory-sim` and `pizza serve` run as processes; every customer call goes as the
front end makes it (preflight, Origin, Content-Type, bearer token; no `Prefer`), via
`FrontEnd` of test_frontend_flow. Auto-remediation is off: an operator remediates.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pizza_tools.bench.procs import isolated_env
from tests.e2e.conftest import Processes, wait_until
from tests.e2e.test_frontend_flow import PASSWORD, FrontEnd
from tests.utils.servers import free_port
from tests.utils.simulator import end_chaos

VENDOR_KEY = "vendor-key-outage-5ecr3t"
ADMIN_EMAIL = "ada@jwt.com"
SETTLE_S = 20.0


@dataclass
class Outage:
    url: str
    factory_url: str


def start(processes: Processes, tmp_path: Path, *, throttle_delay_s: float) -> Outage:
    chosen: dict[str, str] = {}

    def build_factory() -> tuple[list[str], dict[str, str], list[str]]:
        port = free_port()
        chosen["factory"] = f"http://127.0.0.1:{port}"
        args = ["factory-sim", "--port", str(port), "--api-key", VENDOR_KEY]
        return (
            [*args, "--throttle-delay-s", str(throttle_delay_s)],
            isolated_env(),
            [f"{chosen['factory']}/.well-known/jwks.json"],
        )

    processes.start_on_free_ports("factory-sim", build_factory)
    env = isolated_env(
        DATABASE_URL=f"sqlite:///{tmp_path}/pizza.db",
        FACTORY_URL=chosen["factory"],
        FACTORY_API_KEY=VENDOR_KEY,
        FACTORY_AUTO_REMEDIATE="false",
        BREAKER_FAIL_MAX="2",
        BREAKER_RESET_S="300",
        RETRY_BASE_S="0.2",
        RETRY_MAX_S="1",
        WORKER_POLL_S="0.1",
    )
    processes.run(
        "admin", "create", "--name", "Ada Admin", "--email", ADMIN_EMAIL,
        "--password", PASSWORD, env=env,
    )  # fmt: skip

    def build_service() -> tuple[list[str], dict[str, str], list[str]]:
        port = free_port()
        chosen["url"] = f"http://127.0.0.1:{port}"
        return ["serve", "--port", str(port)], env, [f"{chosen['url']}/healthz"]

    processes.start_on_free_ports("pizza-serve", build_service)
    return Outage(chosen["url"], chosen["factory"])


@pytest.fixture
def outage(processes: Processes, tmp_path: Path) -> Iterator[Outage]:
    yield start(processes, tmp_path, throttle_delay_s=1)


@pytest.fixture
def vendor(outage: Outage) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=outage.factory_url, headers={"Authorization": f"Bearer {VENDOR_KEY}"}
    ) as client:
        yield client


def open_shop(http: httpx.Client, base: str) -> tuple[FrontEnd, FrontEnd, dict[str, Any]]:
    """The admin, a signed-in diner, and the body the front end's "Pay" sends."""
    admin = FrontEnd(http)
    admin.sign_in(base, ADMIN_EMAIL)
    menu = admin.ok(
        "PUT",
        f"{base}/api/order/menu",
        {"title": "Veggie", "description": "A garden", "image": "p.png", "price": 0.0038},
    )
    franchise = admin.ok("POST", f"{base}/api/franchise", {"name": "pizzaPocket", "admins": []})
    store = admin.ok("POST", f"{base}/api/franchise/{franchise['id']}/store", {"name": "SLC"})
    diner = FrontEnd(http)
    diner.ok(
        "POST", f"{base}/api/auth", {"name": "Dee", "email": "dee@jwt.com", "password": PASSWORD}
    )
    diner.sign_in(base, "dee@jwt.com")
    body = {
        "franchiseId": franchise["id"],
        "storeId": str(store["id"]),
        "items": [{"menuId": menu[0]["id"], "description": "Veggie", "price": 0.0038}],
    }
    return admin, diner, body


def remediate(admin: FrontEnd, base: str) -> None:
    """The operator, once the factory's link is recorded, has the server follow it."""
    wait_until(
        lambda: admin.ok("GET", f"{base}/factory/status")["remediation"]["link"] is not None,
        timeout=10,
        what="the remediation link recorded",
    )
    answer = admin.ok("POST", f"{base}/factory/remediate")
    assert answer["attempt"]["resolved"], answer


def fulfilled(diner: FrontEnd, base: str, order_id: int) -> bool:
    order = diner.ok("GET", f"{base}/api/order/{order_id}")
    assert order["status"] != "failed", order
    return bool(order["status"] == "fulfilled")


@pytest.mark.slow
def test_the_front_end_during_chaos_and_pay_pressed_again(
    outage: Outage, vendor: httpx.Client
) -> None:
    base = outage.url
    with httpx.Client(timeout=15.0) as http:
        admin, diner, body = open_shop(http, base)
        vendor.put("/api/vendor/chaos/fail").raise_for_status()

        # "Pay": not a 2xx (the front end would show a broken pizza), but the banner text.
        first = diner.call("POST", f"{base}/api/order", body)
        assert first.status_code == 503, first.text
        assert int(first.headers["retry-after"]) >= 1
        order_id = first.json()["order"]["id"]
        message = first.json()["message"]
        assert str(order_id) in message and "not be charged twice" in message
        assert first.json()["jwt"] is None

        # "Pay" pressed again, the banner still up: the same order, not a second one.
        again = diner.call("POST", f"{base}/api/order", body)
        assert again.status_code == 503, again.text
        assert again.json()["order"]["id"] == order_id

        remediate(admin, base)
        wait_until(lambda: fulfilled(diner, base, order_id), timeout=SETTLE_S, what="the pizza")

        history = diner.ok("GET", f"{base}/api/order")["orders"]
        assert [(o["id"], o["status"]) for o in history] == [(order_id, "fulfilled")]
        stats = vendor.get("/api/sim/stats").json()
        assert stats["pizzas"] == {str(order_id): 1}, stats


@pytest.mark.slow
def test_a_client_that_prefers_respond_async_follows_its_order(
    outage: Outage, vendor: httpx.Client
) -> None:
    base = outage.url
    with httpx.Client(timeout=15.0) as http:
        admin, diner, body = open_shop(http, base)
        vendor.put("/api/vendor/chaos/fail").raise_for_status()

        placed = diner.call("POST", f"{base}/api/order", body, headers={"Prefer": "respond-async"})
        assert placed.status_code == 202, placed.text
        assert placed.headers["preference-applied"] == "respond-async"
        order_id = placed.json()["order"]["id"]
        location = placed.headers["location"]
        assert location == f"/api/order/{order_id}"
        # The browser may read where to follow it (CORS exposes the header).
        assert "location" in placed.headers.get("access-control-expose-headers", "").lower()

        remediate(admin, base)
        wait_until(
            lambda: diner.ok("GET", f"{base}{location}")["status"] == "fulfilled",
            timeout=SETTLE_S,
            what="the order followed to fulfilled",
        )
        assert diner.ok("GET", f"{base}{location}")["jwt"]
        assert vendor.get("/api/sim/stats").json()["pizzas"] == {str(order_id): 1}


@pytest.mark.slow
def test_a_throttle_chaos_is_known_long_before_its_first_late_answer(
    processes: Processes, tmp_path: Path
) -> None:
    """The throttle drill with the real factory's 32 s delay: chaos known within 10 s."""
    stack = start(processes, tmp_path, throttle_delay_s=32)
    base = stack.url
    with (
        httpx.Client(timeout=15.0) as http,
        httpx.Client(
            base_url=stack.factory_url, headers={"Authorization": f"Bearer {VENDOR_KEY}"}
        ) as vendor,
    ):
        admin, diner, body = open_shop(http, base)
        vendor.put("/api/vendor/chaos/throttle").raise_for_status()
        chaos_at = time.monotonic()

        # The customer's wait ends (FACTORY_TIMEOUT_S, 5 s): a timed-out call, no link yet.
        assert diner.call("POST", f"{base}/api/order", body).status_code == 503

        def status() -> dict[str, Any]:
            result: dict[str, Any] = admin.ok("GET", f"{base}/factory/status")
            return result

        wait_until(
            lambda: (status()["chaos"] or {}).get("type") == "throttle",
            timeout=max(0.1, 10 - (time.monotonic() - chaos_at)),
            what="the throttle chaos on /factory/status",
        )
        now = status()
        assert now["chaos"]["phase"] == "running"
        assert now["remediation"]["link"] is None  # the late answer has not come
        # The history is written beside the status, a moment after it.
        wait_until(
            lambda: any(e["kind"] == "chaos_reported" for e in status()["history"]),
            timeout=max(0.1, 10 - (time.monotonic() - chaos_at)),
            what="the chaos in /factory/status's history",
        )

        def timeline() -> list[dict[str, Any]]:
            incidents = admin.ok("GET", f"{base}/factory/incidents")["incidents"]
            if not incidents:
                return []
            [incident] = incidents
            events: list[dict[str, Any]] = admin.ok(
                "GET", f"{base}/factory/incidents/{incident['id']}"
            )["timeline"]
            return events

        # The incident is written beside the status, a moment after it.
        wait_until(
            lambda: any("chaos throttle" in e["detail"] for e in timeline()),
            timeout=max(0.1, 10 - (time.monotonic() - chaos_at)),
            what="the throttle chaos in the incident's timeline",
        )
        metrics = http.get(f"{base}/metrics").text.splitlines()
        reported = [
            line
            for line in metrics
            if line.startswith("pizza_factory_chaos{")
            and 'phase="running"' in line
            and 'type="throttle"' in line
        ]
        assert [line.rsplit(" ", 1)[1] for line in reported] == ["1.0"], metrics
        assert time.monotonic() - chaos_at < 10, "chaos known later than 10 s after its start"

        end_chaos(vendor)
