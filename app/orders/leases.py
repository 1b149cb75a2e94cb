"""Claim leases kept alive while their factory call runs (docs/resilience.md#claim-leases).

An order being attempted is leased to this process (`claimed_until`) so that no other
replica calls the factory for it at the same time. The lease is short (CLAIM_LEASE_S) and
renewed every third of it while the attempt, or its late answer, is still running here:
a replica that dies leaves its orders to the others within CLAIM_LEASE_S, instead of
after the longest call (FACTORY_CALL_MAX_S + a margin) the lease once had to cover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from app.sql import OrderStore
from app.sql.rows import StoreError
from clients.clock import Clock

log = logging.getLogger("app.orders.leases")

RETRY_S = 0.5  # while the database is away


class LeaseKeeper:
    """Renews the leases of the orders this process is attempting; supervised."""

    def __init__(
        self, *, store: OrderStore, held: Callable[[], set[int]], lease_s: float, clock: Clock
    ) -> None:
        self._store = store
        self._clock = clock
        self._held = held  # the ids this process is attempting or awaiting an answer for
        self._lease = timedelta(seconds=lease_s)
        self.period_s = lease_s / 3

    def until(self, now: datetime) -> datetime:
        """The end of a lease taken or renewed at ``now``."""
        return now + self._lease

    async def renew_once(self) -> int:
        """Extend every lease still held here; how many orders were renewed."""
        ids = sorted(self._held())
        if not ids:
            return 0
        return await self._store.renew(ids, self.until(self._clock.now()))

    async def run_forever(self) -> None:
        delay = self.period_s
        while True:
            await asyncio.sleep(delay)
            delay = self.period_s
            try:
                await self.renew_once()
            except StoreError as exc:
                # Renew as soon as the database is back: before another replica's worker
                # (which waits a lease's third after an outage) could take these orders.
                delay = min(RETRY_S, self.period_s)
                # The database is away: the leases run on; if it stays away longer than
                # the lease another replica may retry an order (one pizza per order holds:
                # the first answer recorded wins; a rare second factory call is accepted).
                log.error("could not renew the claim leases: %s", exc)
