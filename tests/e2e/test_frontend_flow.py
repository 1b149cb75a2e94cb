"""The customer journey over real HTTP, exactly as the browser front end talks
(docs/http-api.md#conventions).

`pizza serve` runs as a process on its embedded defaults (SQLite file, bundled
simulator); the first admin comes from `pizza admin create`. Every call is
preflighted, carries the Origin, `Content-Type: application/json` and (once
signed in) the bearer token, and every answer must carry the CORS headers the
browser needs to read it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from pizza_tools.bench.procs import isolated_env
from tests.e2e.conftest import ORIGIN, Proc, Processes, pizza_command, wait_until
from tests.utils.servers import free_port

PASSWORD = "correct horse battery staple"
MENU = [("Veggie", "0.0038"), ("Pepperoni", "0.0042"), ("Charred Leopard", "0.0099")]


def assert_cors(answer: httpx.Response) -> None:
    """What the browser needs to let the page read an answer, errors included."""
    where = f"{answer.request.method} {answer.request.url} -> {answer.status_code}"
    assert answer.headers.get("access-control-allow-origin") == ORIGIN, where
    assert answer.headers.get("access-control-allow-credentials") == "true", where


def header_set(answer: httpx.Response, name: str) -> set[str]:
    return {part.strip().lower() for part in answer.headers.get(name, "").split(",") if part}


@dataclass
class FrontEnd:
    """One browser tab of the front end: a token in memory and `fetch` as it calls it."""

    http: httpx.Client
    token: str | None = None

    def call(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        asked = ["content-type", "authorization"] if self.token else ["content-type"]
        asked += [name.lower() for name in headers or {}]
        preflight = self.http.options(
            url,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": ",".join(asked),
            },
        )
        where = f"preflight of {method} {url}"
        assert 200 <= preflight.status_code < 300, f"{where}: {preflight.status_code}"
        assert_cors(preflight)
        assert method.lower() in header_set(preflight, "access-control-allow-methods"), where
        assert set(asked) <= header_set(preflight, "access-control-allow-headers"), where

        sent = {"Origin": ORIGIN, "Content-Type": "application/json", **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        content = None if body is None else json.dumps(body)
        answer = self.http.request(method, url, headers=sent, content=content)
        assert_cors(answer)
        assert answer.headers.get("content-type", "").startswith("application/json"), answer.text
        if answer.status_code >= 400:
            # The front end shows `message` as a banner: an error without one shows nothing.
            assert isinstance(answer.json().get("message"), str), answer.text
        return answer

    def ok(self, method: str, url: str, body: Any = None) -> Any:
        answer = self.call(method, url, body)
        assert answer.status_code == 200, f"{method} {url}: {answer.status_code} {answer.text}"
        return answer.json()

    def sign_in(self, base: str, email: str, password: str = PASSWORD) -> dict[str, Any]:
        auth = self.ok("PUT", f"{base}/api/auth", {"email": email, "password": password})
        self.token = auth["token"]
        user: dict[str, Any] = auth["user"]
        return user


@dataclass
class Deployment:
    service: Proc
    url: str
    factory_url: str


@pytest.fixture
def deployment(processes: Processes, tmp_path: Path) -> Iterator[Deployment]:
    """`pizza serve` on its defaults, with only ports, database and directory isolated."""
    database = f"sqlite:///{tmp_path}/pizza.db"
    env = isolated_env(DATABASE_URL=database)
    processes.run(
        "admin", "create", "--name", "Ada Admin", "--email", "ada@jwt.com",
        "--password", PASSWORD, env=env,
    )  # fmt: skip
    chosen: dict[str, str] = {}

    def build() -> tuple[list[str], dict[str, str], list[str]]:
        port, sim_port = free_port(), free_port()
        chosen["url"] = f"http://127.0.0.1:{port}"
        chosen["factory"] = f"http://127.0.0.1:{sim_port}"
        ready = [f"{chosen['url']}/healthz", f"{chosen['factory']}/.well-known/jwks.json"]
        return (
            ["serve", "--port", str(port)],
            {**env, "FACTORY_SIM_PORT": str(sim_port)},
            ready,
        )

    service = processes.start_on_free_ports("pizza-serve", build)
    assert "bundled factory simulator" in service.log(), "the first log lines must say so"
    yield Deployment(service, chosen["url"], chosen["factory"])


@pytest.mark.slow
def test_the_front_end_journey(deployment: Deployment, processes: Processes) -> None:
    base, factory = deployment.url, deployment.factory_url
    with httpx.Client(timeout=15.0) as http:
        # The admin (made by `pizza admin create`) signs in and fills the menu.
        admin = FrontEnd(http)
        assert admin.sign_in(base, "ada@jwt.com")["roles"] == [{"role": "admin"}]
        for title, price in MENU:
            menu = admin.ok(
                "PUT",
                f"{base}/api/order/menu",
                {"title": title, "description": f"{title} pizza", "image": "pizza.png",
                 "price": float(price)},
            )  # fmt: skip
        assert [m["title"] for m in menu] == [title for title, _ in MENU]

        # A would-be franchisee registers; the admin makes a franchise naming them.
        franchisee = FrontEnd(http)
        franchisee.ok(
            "POST",
            f"{base}/api/auth",
            {"name": "Fran Chisee", "email": "fran@jwt.com", "password": PASSWORD},
        )
        franchise = admin.ok(
            "POST",
            f"{base}/api/franchise",
            {"name": "pizzaPocket", "admins": [{"email": "fran@jwt.com"}]},
        )
        assert [a["email"] for a in franchise["admins"]] == ["fran@jwt.com"]

        # The franchisee signs in, sees the role, and opens a store.
        fran = franchisee.sign_in(base, "fran@jwt.com")
        assert {"role": "franchisee", "objectId": franchise["id"]} in fran["roles"]
        store = franchisee.ok(
            "POST", f"{base}/api/franchise/{franchise['id']}/store", {"name": "SLC"}
        )
        assert store["name"] == "SLC"

        # A diner registers, then signs in (a second session).
        diner = FrontEnd(http)
        registered = diner.ok(
            "POST",
            f"{base}/api/auth",
            {"name": "Dee Diner", "email": "dee@jwt.com", "password": PASSWORD},
        )
        assert registered["user"]["roles"] == [{"role": "diner"}]
        assert "password" not in registered["user"]
        me = diner.sign_in(base, "dee@jwt.com")
        assert me["id"] == registered["user"]["id"]

        # The menu and the store list, public calls made with the token as the front end does.
        menu = diner.ok("GET", f"{base}/api/order/menu")
        listing = diner.ok("GET", f"{base}/api/franchise?page=0&limit=10&name=*")
        assert [s["id"] for f in listing["franchises"] for s in f["stores"]] == [store["id"]]

        # Pay: the store id arrives as a string, as the front end has it from a <select>.
        chosen = [menu[0], menu[1]]
        placed = diner.ok(
            "POST",
            f"{base}/api/order",
            {
                "franchiseId": franchise["id"],
                "storeId": str(store["id"]),
                "items": [
                    {"menuId": m["id"], "description": m["title"], "price": m["price"]}
                    for m in chosen
                ],
            },
        )
        order = placed["order"]
        assert isinstance(order["id"], int)
        assert order["status"] == "fulfilled"
        assert [i["menuId"] for i in order["items"]] == [m["id"] for m in chosen]
        # The delivery page shows the items' count and total: it sums the prices.
        total = sum(Decimal(str(i["price"])) for i in order["items"])
        assert total == Decimal(MENU[0][1]) + Decimal(MENU[1][1])
        assert isinstance(placed["jwt"], str) and placed["jwt"]
        assert "followLinkToEndChaos" not in placed and "reportUrl" not in json.dumps(placed)

        # The delivery page verifies the pizza at the factory directly (same Origin).
        verified = diner.ok("POST", f"{factory}/api/order/verify", {"jwt": placed["jwt"]})
        assert verified["message"] == "valid"

        # The order is in the diner's history, newest first.
        history = diner.ok("GET", f"{base}/api/order")
        assert history["dinerId"] == me["id"]
        assert history["orders"][0]["id"] == order["id"]
        assert history["orders"][0]["jwt"] == placed["jwt"]

        # The franchisee's dashboard: the store's revenue is the order's total, exactly.
        mine = franchisee.ok("GET", f"{base}/api/franchise/{fran['id']}")
        [dashboard] = [f for f in mine if f["id"] == franchise["id"]]
        [revenue] = [s["totalRevenue"] for s in dashboard["stores"] if s["id"] == store["id"]]
        assert Decimal(str(revenue)) == total

        # An error as the browser sees it: status, message and CORS headers all readable.
        stranger = FrontEnd(http)
        wrong = stranger.call(
            "PUT", f"{base}/api/auth", {"email": "dee@jwt.com", "password": "not it"}
        )
        assert wrong.status_code == 404
        assert wrong.json()["message"] == "unknown user"

        # Logout: the token stops working at once.
        assert diner.ok("DELETE", f"{base}/api/auth") == {"message": "logout successful"}
        refused = diner.call("GET", f"{base}/api/user/me")
        assert refused.status_code == 401
        # A stale token left in the browser must not break the public pages.
        assert diner.ok("GET", f"{base}/api/order/menu") == menu

    # A clean stop: SIGINT ends the service and its bundled simulator, both gracefully.
    code = processes.stop(deployment.service, signal.SIGINT)
    assert code == 0, f"pizza serve exited {code} on SIGINT"
    assert deployment.service.log().count("Application shutdown complete") == 2


@pytest.mark.slow
def test_serve_names_a_taken_port(processes: Processes, tmp_path: Path) -> None:
    """A port already in use is a configuration error: one line naming it, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = isolated_env(
            DATABASE_URL=f"sqlite:///{tmp_path}/pizza.db", FACTORY_SIM_PORT=str(free_port())
        )
        done = subprocess.run(
            [*pizza_command(), "serve", "--port", str(port)],
            cwd=processes.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"--port: cannot listen on 127.0.0.1:{port}: already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_pay_again_after_the_pending_order_was_made_shows_its_pizza(
    deployment: Deployment,
) -> None:
    """The 503 banner says order N is saved and will not be charged twice; the factory is
    fixed (auto-remediation) and order N made while the banner still shows; "Pay" pressed
    again is order N with its pizza, not a second pizza and a second charge."""
    base, factory = deployment.url, deployment.factory_url
    with httpx.Client(timeout=15.0) as http:
        admin = FrontEnd(http)
        admin.sign_in(base, "ada@jwt.com")
        title, price = MENU[0]
        [pizza] = admin.ok(
            "PUT",
            f"{base}/api/order/menu",
            {"title": title, "description": "p", "image": "p.png", "price": float(price)},
        )
        franchise = admin.ok("POST", f"{base}/api/franchise", {"name": "pocket", "admins": []})
        store = admin.ok("POST", f"{base}/api/franchise/{franchise['id']}/store", {"name": "S"})
        diner = FrontEnd(http)
        diner.ok(
            "POST",
            f"{base}/api/auth",
            {"name": "Dee Diner", "email": "dee@jwt.com", "password": PASSWORD},
        )
        diner.sign_in(base, "dee@jwt.com")
        # The cart as the front end sends it, both times.
        cart = {
            "franchiseId": franchise["id"],
            "storeId": str(store["id"]),
            "items": [{"menuId": pizza["id"], "description": title, "price": pizza["price"]}],
        }

        # The bundled simulator's documented development key.
        http.put(
            f"{factory}/api/vendor/chaos/fail", headers={"Authorization": "Bearer dev-factory-key"}
        ).raise_for_status()
        paid = diner.call("POST", f"{base}/api/order", cart)
        assert paid.status_code == 503, paid.text
        order_id = paid.json()["order"]["id"]
        assert f"Your order {order_id} is saved" in paid.json()["message"]  # the banner

        # The service follows the factory's link itself and makes the order; watched as an
        # operator does, so the diner has not been shown the pizza.
        def made() -> bool:
            answer = admin.call("GET", f"{base}/api/order/{order_id}")
            return bool(answer.json()["status"] == "fulfilled")

        wait_until(made, timeout=30, what=f"order {order_id} to be made")

        again = diner.call("POST", f"{base}/api/order", cart)
        assert again.status_code == 200, again.text
        placed = again.json()
        assert placed["order"]["id"] == order_id
        assert placed["order"]["status"] == "fulfilled"
        verified = diner.ok("POST", f"{factory}/api/order/verify", {"jwt": placed["jwt"]})
        assert verified["message"] == "valid"
        verified_order = verified["payload"]["order"]
        assert verified_order["id"] == order_id

        history = diner.ok("GET", f"{base}/api/order")
        assert [o["id"] for o in history["orders"]] == [order_id]
