"""A shop made through the API, as a client would: what the bench and the drill order from."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from factory_sim import VENDOR_ID
from pizza_tools.bench.procs import BenchError

MENU = (("Veggie", 0.0038), ("Pepperoni", 0.0042))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def call(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    answer = await client.request(method, url, **kwargs)
    if not answer.is_success:
        raise BenchError(f"{method} {url}: HTTP {answer.status_code} {answer.text[:300]}")
    return answer


async def end_chaos(factory: httpx.AsyncClient, admin_key: str) -> None:
    """End the simulator's chaos as the real factory's admin would: remove it."""
    removal = {"id": VENDOR_ID, "deleteType": "chaos"}
    await call(factory, "DELETE", "/api/admin/vendor", json=removal, headers=bearer(admin_key))


@dataclass
class Shop:
    admin: dict[str, str]
    diners: list[dict[str, str]]
    franchise_id: int
    store_id: int
    menu: list[dict[str, Any]]

    def order_body(self, n: int) -> dict[str, Any]:
        """One or two pizzas, alternately."""
        items = self.menu[: 1 + n % 2]
        return {
            "franchiseId": self.franchise_id,
            "storeId": self.store_id,
            "items": [
                {"menuId": m["id"], "description": m["title"], "price": m["price"]} for m in items
            ],
        }


async def open_shop(
    client: httpx.AsyncClient,
    *,
    admin_email: str,
    admin_password: str,
    diners: int,
    name: str,
    menu: tuple[tuple[str, float], ...] = MENU,
) -> Shop:
    """Menu, franchise and store made by the admin; diners registered (and so signed in)."""
    login = await call(
        client, "PUT", "/api/auth", json={"email": admin_email, "password": admin_password}
    )
    admin = bearer(login.json()["token"])
    items: list[dict[str, Any]] = []
    for title, price in menu:
        body = {"title": title, "description": f"{title} pizza", "image": "p.png", "price": price}
        items = (await call(client, "PUT", "/api/order/menu", headers=admin, json=body)).json()
    franchise = await call(
        client, "POST", "/api/franchise", headers=admin, json={"name": name, "admins": []}
    )
    franchise_id = franchise.json()["id"]
    store = await call(
        client,
        "POST",
        f"/api/franchise/{franchise_id}/store",
        headers=admin,
        json={"name": f"{name} store"},
    )
    tokens = []
    for n in range(diners):
        account = {
            "name": f"diner {n}",
            "email": f"diner{n}@{name}.jwt.com",
            "password": secrets.token_urlsafe(12),
        }
        registered = await call(client, "POST", "/api/auth", json=account)
        tokens.append(bearer(registered.json()["token"]))
    return Shop(admin, tokens, franchise_id, store.json()["id"], items)
