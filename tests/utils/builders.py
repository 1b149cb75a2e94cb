"""Builders: make users, admins, franchises and orders the way a client would."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from app.services import Services
from app.users import passwords
from app.users.accounts import create_admin

_counter = itertools.count(1)
PASSWORD = "correct horse battery"

# argon2 at its production cost takes about 0.3 s a hash on a small CI runner, and the
# API tests sign in hundreds of times. Same algorithm, same hash format, same checks.
_FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for one test; a module opts in with
    `pytestmark = pytest.mark.usefixtures("fast_password_hashing")` and the import."""
    monkeypatch.setattr(passwords, "_hasher", _FAST_HASHER)
    monkeypatch.setattr(passwords, "_DUMMY_HASH", _FAST_HASHER.hash("not a password"))


@dataclass
class Account:
    id: int
    name: str
    email: str
    password: str
    token: str
    roles: list[dict[str, Any]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def register(
        self, name: str | None = None, email: str | None = None, password: str = PASSWORD
    ) -> Account:
        n = next(_counter)
        name = name or f"diner {n}"
        email = email or f"diner{n}@jwt.com"
        answer = await self.client.post(
            "/api/auth", json={"name": name, "email": email, "password": password}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        user = body["user"]
        return Account(user["id"], name, email, password, body["token"], user["roles"])

    async def login(self, email: str, password: str = PASSWORD) -> Account:
        answer = await self.client.put("/api/auth", json={"email": email, "password": password})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        user = body["user"]
        return Account(user["id"], user["name"], email, password, body["token"], user["roles"])

    async def admin(self) -> Account:
        n = next(_counter)
        email = f"admin{n}@jwt.com"
        await create_admin(
            self.services.sessions, name=f"admin {n}", email=email, password=PASSWORD
        )
        return await self.login(email)

    async def menu_item(
        self, admin: Account, title: str = "Veggie", price: float = 0.0038
    ) -> dict[str, Any]:
        answer = await self.client.put(
            "/api/order/menu",
            headers=admin.headers,
            json={
                "title": title,
                "description": f"{title} pizza",
                "image": "p.png",
                "price": price,
            },
        )
        assert answer.status_code == 200, answer.text
        return next(m for m in reversed(answer.json()) if m["title"] == title)

    async def franchise(
        self, admin: Account, name: str | None = None, admins: list[str] = ()
    ) -> dict[str, Any]:  # type: ignore[assignment]
        answer = await self.client.post(
            "/api/franchise",
            headers=admin.headers,
            json={
                "name": name or f"franchise {next(_counter)}",
                "admins": [{"email": e} for e in admins],
            },
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def store(
        self, account: Account, franchise_id: int, name: str | None = None
    ) -> dict[str, Any]:
        answer = await self.client.post(
            f"/api/franchise/{franchise_id}/store",
            headers=account.headers,
            json={"name": name or f"store {next(_counter)}"},
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def shop(self) -> Shop:
        """An admin, a menu of two pizzas, a franchise with one store, and a diner."""
        admin = await self.admin()
        veggie = await self.menu_item(admin, "Veggie", 0.0038)
        pepperoni = await self.menu_item(admin, "Pepperoni", 0.0042)
        franchise = await self.franchise(admin)
        store = await self.store(admin, franchise["id"])
        diner = await self.register()
        return Shop(admin, diner, franchise, store, [veggie, pepperoni])

    async def order(
        self,
        shop: Shop,
        *,
        diner: Account | None = None,
        menu_ids: list[int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        diner = diner or shop.diner
        ids = menu_ids or [shop.menu[0]["id"]]
        return await self.client.post(
            "/api/order",
            headers={**diner.headers, **(headers or {})},
            json={
                "franchiseId": shop.franchise["id"],
                "storeId": shop.store["id"],
                "items": [{"menuId": i, "description": "x", "price": 0} for i in ids],
            },
        )


@dataclass
class Shop:
    admin: Account
    diner: Account
    franchise: dict[str, Any]
    store: dict[str, Any]
    menu: list[dict[str, Any]]
