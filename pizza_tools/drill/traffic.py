"""The drill's customers: a shop made through the API, steady signed-in orders, and the
check that every accepted order ended fulfilled or failed (none lost)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from pizza_tools.bench.shop import Shop

SETTLE_POLL_S = 0.5
SETTLE_READS_AT_ONCE = 8
# Final states: an order that is neither (nor pending) is lost.
FINAL = ("fulfilled", "failed")
# Answers that accepted the order: made (200), or kept pending: 202 to the drill, which
# asks for async answers, 503 to a client that does not (docs/http-api.md#post-apiorder, RFC 7240).
ACCEPTED = (200, 202, 503)
PENDING = (202, 503)


class DrillError(Exception):
    """The drill cannot go on (a process would not start, the API refused a step)."""


@dataclass(frozen=True)
class Answer:
    """One order as its customer saw it."""

    sent_at: datetime
    answered_at: datetime
    status: int  # HTTP status; 0 when no answer came at all
    order_id: int | None


@dataclass
class Traffic:
    """Orders at a steady rate, whatever the answers take (customers do not wait for each
    other), at most ``max_inflight`` at once and ``max_orders`` in all."""

    client: httpx.AsyncClient
    shop: Shop
    rate_per_s: float
    max_inflight: int
    max_orders: int
    answers: list[Answer] = field(default_factory=list)
    skipped: int = 0  # ticks with max_inflight orders already waiting

    async def run(self, stop: asyncio.Event) -> None:
        """Place orders until ``stop`` is set; return when every one has its answer."""
        tasks: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        for n in itertools.count():
            if stop.is_set() or n >= self.max_orders:
                break
            if len(tasks) >= self.max_inflight:
                self.skipped += 1
            else:
                task = asyncio.create_task(self._order(n))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            delay = began + (n + 1) / self.rate_per_s - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        if tasks:
            await asyncio.gather(*tasks)

    async def _order(self, n: int) -> None:
        # Distinct customers' orders (an Idempotency-Key each: never "Pay" pressed again),
        # followed by id afterwards: an async client.
        headers = {
            **self.shop.diners[n % len(self.shop.diners)],
            "Prefer": "respond-async",
            "Idempotency-Key": f"drill-{id(self)}-{n}",
        }
        sent_at = datetime.now(UTC)
        try:
            answer = await self.client.post(
                "/api/order", headers=headers, json=self.shop.order_body(n)
            )
            status = answer.status_code
            order_id = answer.json().get("order", {}).get("id") if answer.content else None
        except (httpx.HTTPError, ValueError, AttributeError):
            status, order_id = 0, None
        self.answers.append(Answer(sent_at, datetime.now(UTC), status, order_id))

    def accepted(self) -> list[int]:
        return [a.order_id for a in self.answers if a.status in ACCEPTED and a.order_id]


@dataclass
class OrderCounts:
    accepted: int = 0
    fulfilled: int = 0
    pending: int = 0
    failed: int = 0
    lost: int = 0
    errors: int = 0  # answers that accepted no order (or none at all)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.pending == 0 and self.errors == 0


async def settle(
    client: httpx.AsyncClient, admin: dict[str, str], traffic: Traffic, timeout_s: float
) -> OrderCounts:
    """Read every accepted order back through the API until none is pending (bounded).

    Lost: an accepted order the API does not know, or in a state that is neither final
    nor pending, or "fulfilled" without its pizza.
    """
    states: dict[int, str] = {}
    waiting = traffic.accepted()
    deadline = time.monotonic() + timeout_s
    reads = asyncio.Semaphore(SETTLE_READS_AT_ONCE)

    async def read(order_id: int) -> None:
        async with reads:
            answer = await client.get(f"/api/order/{order_id}", headers=admin)
        if answer.status_code == 404:
            states[order_id] = "lost"
            return
        if answer.status_code != 200:
            raise DrillError(f"GET /api/order/{order_id}: HTTP {answer.status_code}")
        order = answer.json()
        status = str(order.get("status"))
        if status == "fulfilled" and not order.get("jwt"):
            status = "lost"
        states[order_id] = status if status in (*FINAL, "pending") else "lost"

    while True:
        await asyncio.gather(*(read(order_id) for order_id in waiting))
        waiting = [i for i, s in states.items() if s == "pending"]
        if not waiting or time.monotonic() > deadline:
            break
        await asyncio.sleep(SETTLE_POLL_S)
    tally = Counter(states.values())
    return OrderCounts(
        accepted=len(states),
        fulfilled=tally["fulfilled"],
        pending=tally["pending"],
        failed=tally["failed"],
        lost=tally["lost"],
        errors=sum(1 for a in traffic.answers if a.status not in ACCEPTED),
    )
