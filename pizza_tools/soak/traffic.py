"""Steady signed-in traffic through nginx: orders with and without Idempotency-Key, menu
reads, order history. Every answer is kept (when, what, status) for the fault windows."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import httpx

from pizza_tools.bench.shop import Shop

CALLERS = 4
PAUSE_S = 0.25  # between one caller's requests: ~16 requests/s in all
KEY_RESENDS = 3  # a client with an Idempotency-Key resends after a 502/504 or no answer
TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Answer:
    at: float  # time.monotonic()
    kind: str  # order, order_keyed, menu, history
    status: int  # 0: no answer (connection failed, timed out)


@dataclass
class Traffic:
    shop: Shop
    base_url: str
    seed: int
    answers: list[Answer] = field(default_factory=list)
    accepted: set[int] = field(default_factory=set)  # order ids answered 200 or pending
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _placed: int = 0

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT_S) as client:
            await asyncio.gather(*(self._caller(client, n) for n in range(CALLERS)))

    def stop(self) -> None:
        self._stop.set()

    async def _caller(self, client: httpx.AsyncClient, n: int) -> None:
        rand = random.Random(self.seed * 100 + n)  # noqa: S311 - reproducible
        diner = self.shop.diners[n % len(self.shop.diners)]
        while not self._stop.is_set():
            roll = rand.random()
            if roll < 0.25:
                await self._order(client, diner, keyed=False)
            elif roll < 0.5:
                await self._order(client, diner, keyed=True)
            elif roll < 0.8:
                await self._get(client, "menu", "/api/order/menu", diner)
            else:
                await self._get(client, "history", "/api/order", diner)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PAUSE_S)

    async def _send(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs: object
    ) -> httpx.Response | None:
        try:
            answer = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError:
            self.answers.append(Answer(time.monotonic(), kind, 0))
            return None
        self.answers.append(Answer(time.monotonic(), kind, answer.status_code))
        return answer

    async def _get(
        self, client: httpx.AsyncClient, kind: str, url: str, diner: dict[str, str]
    ) -> None:
        await self._send(client, kind, "GET", url, headers=diner)

    async def _order(
        self, client: httpx.AsyncClient, diner: dict[str, str], *, keyed: bool
    ) -> None:
        self._placed += 1
        body = self.shop.order_body(self._placed)
        headers = dict(diner)
        if keyed:
            headers["Idempotency-Key"] = f"soak-{self.seed}-{self._placed}"
        kind = "order_keyed" if keyed else "order"
        for _ in range(KEY_RESENDS if keyed else 1):
            answer = await self._send(
                client, kind, "POST", "/api/order", headers=headers, json=body
            )
            if answer is not None and answer.status_code not in (502, 504):
                self._note(answer)
                return

    def _note(self, answer: httpx.Response) -> None:
        """An order answered made (200) or pending (503/202 with the order) is accepted."""
        if answer.status_code not in (200, 202, 503):
            return
        with contextlib.suppress(ValueError, KeyError, TypeError):
            order = answer.json()["order"]
            if order and order.get("id") is not None:
                self.accepted.add(int(order["id"]))
