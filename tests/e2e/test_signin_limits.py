"""An account a stranger cannot lock, over real sockets from two addresses
(docs/http-api.md#sign-in-limits).

`pizza serve` listens on 127.0.0.1; the attacker's connections leave from 127.0.0.2 and
the owner's from 127.0.0.3 (every 127/8 address is the loopback's), so the service tells
them apart by the socket alone. The owner is the admin. The passwords the service really
checked are read from its `/metrics` (`pizza_auth_attempts_total`: every check, by result).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.conftest import Processes
from tests.e2e.test_recovery import ADMIN, service_env, start_factory, start_service
from tests.telemetry.conftest import value

pytestmark = pytest.mark.slow

ATTACKER = "127.0.0.2"
OWNER = "127.0.0.3"
GUESSES = 100
PER_ACCOUNT = 5  # LOGIN_MAX_PER_ACCOUNT's default: attempts for one account from one address


def checked(base: str) -> float:
    """Passwords the service has checked so far (right or wrong)."""
    page = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(value(page, "pizza_auth_attempts_total", result=r) for r in ("success", "failure"))


async def guess_at_once(base: str, email: str, count: int) -> list[httpx.Response]:
    transport = httpx.AsyncHTTPTransport(
        local_address=ATTACKER, limits=httpx.Limits(max_connections=count)
    )
    async with httpx.AsyncClient(transport=transport, base_url=base, timeout=60) as attacker:
        return await asyncio.gather(
            *(
                attacker.put("/api/auth", json={"email": email, "password": f"guess {n}"})
                for n in range(count)
            )
        )


def sign_in_from(address: str, base: str, password: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, base_url=base, timeout=30) as client:
        return client.put("/api/auth", json={"email": ADMIN["email"], "password": password})


def test_the_owner_signs_in_while_an_address_guessing_is_refused(
    processes: Processes, database_url: str
) -> None:
    factory = start_factory(processes)
    base = start_service(processes, "service", service_env(database_url, factory))
    assert sign_in_from(OWNER, base, ADMIN["password"]).status_code == 200
    before = checked(base)

    guesses = asyncio.run(guess_at_once(base, ADMIN["email"], GUESSES))
    after_guesses = checked(base)
    attacker = sign_in_from(ATTACKER, base, ADMIN["password"])
    owner = sign_in_from(OWNER, base, ADMIN["password"])

    statuses = [g.status_code for g in guesses]
    assert set(statuses) == {404, 429}, statuses
    # At most the limit's worth of passwords was checked, however many came at once.
    assert after_guesses - before == statuses.count(404) == PER_ACCOUNT
    assert attacker.status_code == 429, attacker.text
    assert 1 <= int(attacker.headers["retry-after"]) <= 300
    assert owner.status_code == 200, owner.text
    assert {"role": "admin"} in owner.json()["user"]["roles"]
